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
