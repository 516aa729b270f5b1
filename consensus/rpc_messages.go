package consensus

import (
	"encoding/json"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"
)

// Node-stream protocols of the control plane. Raft itself runs on
// "/herd/raft/1" (transport.go); these carry forwarded requests.
const (
	// protoApply carries an encoded command to the IDC's leader.
	protoApply protocol.ID = "/herd/control/apply/1"
	// protoQuery runs a read on a control member, blocking if asked.
	protoQuery protocol.ID = "/herd/control/query/1"
	// protoIDC hands a request for another IDC to a WAN member, which
	// forwards it once across the WAN to that IDC.
	protoIDC protocol.ID = "/herd/control/idc/1"
	// protoStatus asks a control member for its view of the group.
	protoStatus protocol.ID = "/herd/control/status/1"
)

// Consistency selects how fresh a read must be.
type Consistency string

const (
	// ConsistencyDefault reads on the leader without a quorum check (Consul's
	// default mode): fresh unless the leader was just deposed.
	ConsistencyDefault Consistency = ""
	// ConsistencyStrong reads on the leader after it confirms leadership with
	// a quorum: linearizable.
	ConsistencyStrong Consistency = "consistent"
	// ConsistencyStale reads on any control member, possibly behind.
	ConsistencyStale Consistency = "stale"
)

// QueryOptions shape a read: freshness and blocking.
type QueryOptions struct {
	Consistency Consistency `json:"consistency,omitempty"`
	// MinIndex > 0 blocks until the result's index passes it or MaxWait ends.
	MinIndex uint64        `json:"min_index,omitempty"`
	MaxWait  time.Duration `json:"max_wait,omitempty"`
}

// QueryMeta describes the answer to a read.
type QueryMeta struct {
	// Index is the state index the answer reflects; pass it as MinIndex to
	// block for the next change.
	Index uint64 `json:"index"`
	// ServedBy is the control member that answered.
	ServedBy string `json:"served_by"`
	// KnownLeader is false when the answering member had no leader.
	KnownLeader bool `json:"known_leader"`
	// LastContact is how long ago the answering member heard from the
	// leader (zero on the leader).
	LastContact time.Duration `json:"last_contact"`
}

type applyRequest struct {
	Command []byte `json:"command"`
	// Relayed is set by a member that passed the request on to the leader
	// it knows; it is not passed on again.
	Relayed bool `json:"relayed,omitempty"`
}

type queryRequest struct {
	Kind    string          `json:"kind"`
	Args    json.RawMessage `json:"args"`
	Options QueryOptions    `json:"options"`
}

type queryResponse struct {
	Meta   QueryMeta       `json:"meta"`
	Result json.RawMessage `json:"result"`
}

// relayRequest is a node-API stream call to be served by any node of
// another IDC (e.g. its member list).
type relayRequest struct {
	Proto protocol.ID `json:"proto"`
	Body  []byte      `json:"body"`
}

// idcRequest is one of apply, query, status or relay aimed at another IDC.
type idcRequest struct {
	IDC    string        `json:"idc"`
	Apply  *applyRequest `json:"apply,omitempty"`
	Query  *queryRequest `json:"query,omitempty"`
	Status bool          `json:"status,omitempty"`
	Relay  *relayRequest `json:"relay,omitempty"`
	// Hops guards against forwarding loops: a request crosses the WAN once.
	Hops int `json:"hops"`
}

type idcResponse struct {
	Relay  []byte         `json:"relay,omitempty"`
	Apply  *ApplyResult   `json:"apply,omitempty"`
	Query  *queryResponse `json:"query,omitempty"`
	Status *ControlStatus `json:"status,omitempty"`
}
