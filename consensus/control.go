package consensus

import (
	"errors"

	"github.com/libp2p/go-libp2p/core/protocol"
)

// The control group's RPCs. They travel over the node-stream host
// (p2p.CallJSON/HandleJSON): authenticated by peer ID, admitted only for
// mesh members by the host's gater. Refusals are *p2p.Error values whose
// Code says what to do: CodeForbidden (the request is understood and
// refused: do not retry the same request soon), CodeUnavailable (not now:
// not the leader, shutting down; retry, possibly elsewhere), CodeBadRequest.
const (
	// BootstrapProtocol confirms a bootstrap candidate set: the caller asks
	// "do you, too, see exactly this set, and will you bootstrap nothing
	// else?" The callee promises the set for a while if it agrees.
	BootstrapProtocol protocol.ID = "/herd/control/bootstrap/1"
	// JoinProtocol invites a node into the group: the callee opens its
	// raft (without bootstrapping) so that the leader can add it.
	JoinProtocol protocol.ID = "/herd/control/join/1"
	// RemoveProtocol asks the leader to remove the calling server from the
	// configuration (graceful leave).
	RemoveProtocol protocol.ID = "/herd/control/remove/1"
	// StatsProtocol asks a server for its raft progress; the leader's
	// autopilot uses it to judge health.
	StatsProtocol protocol.ID = "/herd/control/stats/1"
)

// Errors of the control group. RPC callers see them as the message of a
// *p2p.Error; local callers can match them with errors.Is.
var (
	// ErrNotLeader means the operation must run on the leader.
	ErrNotLeader = errors.New("consensus: not the leader")
	// ErrNotMember means this node has no open raft.
	ErrNotMember = errors.New("consensus: not a member of the control group")
	// ErrStopped means the group was shut down or left.
	ErrStopped = errors.New("consensus: control group stopped")
)

// bootstrapServer is one member of a proposed bootstrap configuration.
type bootstrapServer struct {
	Name   string `json:"name"`
	PeerID string `json:"peer_id"`
	Zone   string `json:"zone,omitempty"`
}

// bootstrapRequest proposes the candidate set; Servers is sorted by name.
type bootstrapRequest struct {
	IDC         string            `json:"idc"`
	ControlSize int               `json:"control_size"`
	Servers     []bootstrapServer `json:"servers"`
}

// bootstrapResponse confirms the set; refusals are errors.
type bootstrapResponse struct {
	Confirmed bool `json:"confirmed"`
}

// joinRequest invites the callee. Leader and Term are informational.
type joinRequest struct {
	IDC    string `json:"idc"`
	Leader string `json:"leader"`
	Term   uint64 `json:"term"`
}

// joinResponse tells the leader what to add: raft ID and address.
type joinResponse struct {
	Name   string `json:"name"`
	PeerID string `json:"peer_id"`
}

// removeRequest asks the leader to remove the server Name, which must be
// the caller itself.
type removeRequest struct {
	Name string `json:"name"`
}

// removeResponse reports the raft index of the configuration change.
type removeResponse struct {
	Index uint64 `json:"index"`
}

// statsRequest has no fields; it exists so the protocol can grow.
type statsRequest struct{}

// statsResponse is a server's raft progress as it sees it.
type statsResponse struct {
	Name         string `json:"name"`
	Open         bool   `json:"open"` // raft is running
	Term         uint64 `json:"term"`
	LastIndex    uint64 `json:"last_index"`
	AppliedIndex uint64 `json:"applied_index"`
	// LastContactMS is the time since the leader was last heard from, in
	// milliseconds; -1 when never.
	LastContactMS int64 `json:"last_contact_ms"`
}
