// Package api holds the HTTP API's wire types and a client for it. The CLI
// and any other program talk to a herd node through this package.
package api

import "time"

// Health is what GET /v1/health returns. It needs no token: load balancers
// and supervisors poll it.
type Health struct {
	Status  string        `json:"status"`
	Name    string        `json:"name"`
	IDC     string        `json:"idc"`
	Version string        `json:"version"`
	Uptime  time.Duration `json:"uptime_ns"`
}

// Self describes the node serving the request (GET /v1/self).
type Self struct {
	Member      Member    `json:"member"`
	DataDir     string    `json:"data_dir"`
	Gossip      string    `json:"gossip"`
	Encrypted   bool      `json:"encrypted"`
	Dev         bool      `json:"dev"`
	FSRoot      string    `json:"fs_root,omitempty"`
	ControlSize int       `json:"control_size"`
	Started     time.Time `json:"started"`
}

// Member is one node as the mesh sees it.
type Member struct {
	Name    string            `json:"name"`
	Addr    string            `json:"addr"`
	IDC     string            `json:"idc"`
	Zone    string            `json:"zone,omitempty"`
	Status  string            `json:"status"`
	Since   time.Time         `json:"since"`
	PeerID  string            `json:"peer_id"`
	API     string            `json:"api,omitempty"`
	P2P     string            `json:"p2p,omitempty"`
	Version string            `json:"version,omitempty"`
	Roles   []string          `json:"roles,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	Health  NodeHealth        `json:"health"`
}

// NodeHealth is a node's last gossiped health sample.
type NodeHealth struct {
	Load1        float64         `json:"load1"`
	Load5        float64         `json:"load5"`
	Load15       float64         `json:"load15"`
	CPUPercent   float64         `json:"cpu_percent"`
	MemTotal     uint64          `json:"mem_total"`
	MemAvailable uint64          `json:"mem_available"`
	DiskTotal    uint64          `json:"disk_total"`
	DiskFree     uint64          `json:"disk_free"`
	HostUptime   time.Duration   `json:"host_uptime_ns"`
	AgentUptime  time.Duration   `json:"agent_uptime_ns"`
	Services     []ServiceHealth `json:"services"`
	Collected    time.Time       `json:"collected"`
}

// ServiceHealth is the state of one declared service on a node.
type ServiceHealth struct {
	Name  string `json:"name"`
	State string `json:"state"`
}

// Members is what GET /v1/members returns.
type Members struct {
	// IDC is the pool the answering node belongs to.
	IDC     string   `json:"idc"`
	Members []Member `json:"members"`
}

// MembersQuery filters GET /v1/members.
type MembersQuery struct {
	IDC      string // only this IDC
	Status   string // alive, suspect, failed or left
	Selector string // label/attribute selector, e.g. "role=web,env in (prod,staging)"
}

// Ping is what GET /v1/members/{name}/ping returns: the round trip of a
// node-stream ping from the answering node to the named one.
type Ping struct {
	From string        `json:"from"`
	To   string        `json:"to"`
	RTT  time.Duration `json:"rtt_ns"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes. They are stable: scripts may match on them.
const (
	CodeBadRequest   = "bad_request"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeNotFound     = "not_found"
	CodeUnavailable  = "unavailable"
	CodeInternal     = "internal"
)

// ErrorBody wraps Error on the wire.
type ErrorBody struct {
	Error Error `json:"error"`
}

// KVEntry is one versioned config object.
type KVEntry struct {
	Key         string `json:"key"`
	Scope       string `json:"scope"`
	Value       []byte `json:"value"`
	Version     uint64 `json:"version"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
}

// KVList is what GET /v1/kv returns.
type KVList struct {
	Index   uint64    `json:"index"`
	Entries []KVEntry `json:"entries"`
}

// KVQuery shapes KV reads.
type KVQuery struct {
	Scope      string        // "global" (default) or an IDC
	Consistent bool          // linearizable read on the leader
	Stale      bool          // any control member may answer
	Index      uint64        // block until the index passes this
	Wait       time.Duration // for at most this long
}

// CodeCASConflict is returned when a --cas version does not match.
const CodeCASConflict = "cas_conflict"

// ControlStatus is an IDC's control group as GET /v1/control/status shows it.
type ControlStatus struct {
	IDC          string          `json:"idc"`
	Member       bool            `json:"member"`
	Role         string          `json:"role"`
	Leader       string          `json:"leader"`
	Term         uint64          `json:"term"`
	CommitIndex  uint64          `json:"commit_index"`
	AppliedIndex uint64          `json:"applied_index"`
	LastIndex    uint64          `json:"last_index"`
	LastContact  time.Duration   `json:"last_contact"`
	Servers      []ControlServer `json:"servers"`
	Waiting      string          `json:"waiting,omitempty"`
	ControlSize  int             `json:"control_size"`
	PrimaryIDC   string          `json:"primary_idc"`
	WANMembers   []WANMember     `json:"wan_members,omitempty"`
	Replication  *Replication    `json:"replication,omitempty"`
}

// ControlServer is one raft server of a control group.
type ControlServer struct {
	Name     string `json:"name"`
	PeerID   string `json:"peer_id"`
	Suffrage string `json:"suffrage"`
	Healthy  bool   `json:"healthy"`
	Zone     string `json:"zone,omitempty"`
}

// WANMember is a control member of any IDC in the WAN pool.
type WANMember struct {
	Name   string   `json:"name"`
	IDC    string   `json:"idc"`
	Status string   `json:"status"`
	Roles  []string `json:"roles,omitempty"`
}

// Replication is how far an IDC's copy of global objects trails the primary.
type Replication struct {
	Running     bool      `json:"running"`
	SourceIndex uint64    `json:"source_index"`
	LastSuccess time.Time `json:"last_success"`
	LastError   string    `json:"last_error,omitempty"`
}
