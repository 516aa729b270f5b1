package jobs

import (
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/transfer"
)

// Node-stream protocols of jobs. Requests and answers are JSON
// (p2p.CallJSON); every one travels on an authenticated, encrypted stream
// between current members.
const (
	// protoDeliver: leader → executor. An Envelope; the answer is the
	// acknowledgement that the task is accepted (running or done).
	protoDeliver protocol.ID = "/herd/jobs/deliver/1"
	// protoCancel: leader → executor. Stop a running task.
	protoCancel protocol.ID = "/herd/jobs/cancel/1"
	// protoReport: executor → leader. A host's final result.
	protoReport protocol.ID = "/herd/jobs/report/1"
	// protoPull: executor → leader. The tasks waiting for this node.
	protoPull protocol.ID = "/herd/jobs/pull/1"
	// protoCreate: API node → (another IDC, via consensus.RelayIDC) → leader.
	// Under /herd/api/ so that RelayIDC may carry it.
	protoCreate protocol.ID = "/herd/api/jobs-create/1"
	// protoPeers: pushing host → leader. Where to fetch a file from.
	protoPeers protocol.ID = "/herd/jobs/peers/1"
	// protoProgress: API node → (another IDC) → leader. A push's live bytes.
	protoProgress protocol.ID = "/herd/api/jobs-progress/1"
	// protoLogs: API node → executor. A range of a host's full output.
	protoLogs protocol.ID = "/herd/api/jobs-logs/1"
)

// DeliverAck acknowledges a task.
type DeliverAck struct {
	Accepted time.Time `json:"accepted"`       // when the executor first accepted it
	Done     bool      `json:"done,omitempty"` // already finished (its report follows or was sent)
}

// CancelRequest asks an executor to stop a task.
type CancelRequest struct {
	RunID string `json:"run_id"`
	Host  string `json:"host"`
}

// Report carries a host's final result to the leader.
type Report struct {
	IDC    string           `json:"idc"`
	RunID  string           `json:"run_id"`
	Result model.HostResult `json:"result"`
}

// PullRequest asks the leader for the tasks pending on a node.
type PullRequest struct {
	Node string `json:"node"`
}

// PullResponse lists them, signed.
type PullResponse struct {
	Tasks []Envelope `json:"tasks"`
}

// CreateRequest asks a leader to create a run.
type CreateRequest struct {
	Request   model.RunRequest `json:"request"`
	ID        string           `json:"id"` // chosen by the entry node, so a retried create is one run
	CreatedBy string           `json:"created_by"`
	IDC       string           `json:"idc"`
}

// CreateResponse is the created run, or the dry run's targets.
type CreateResponse struct {
	Run    *model.Run    `json:"run,omitempty"`
	DryRun *model.DryRun `json:"dry_run,omitempty"`
}

// LogsRequest asks an executor for part of a host's output.
type LogsRequest struct {
	RunID  string `json:"run_id"`
	Host   string `json:"host"`
	Offset int64  `json:"offset"`
	Max    int    `json:"max"`
}

// PeersRequest asks the leader for the holders a pushing host should fetch
// from. Swarm, when set, announces the asking node as a holder in progress
// at that swarm address.
type PeersRequest struct {
	IDC   string `json:"idc"`
	RunID string `json:"run_id"`
	Node  string `json:"node"`
	Host  string `json:"host"`
	Swarm string `json:"swarm,omitempty"`
	// Done is how many verified bytes the host has (live progress).
	Done int64 `json:"done,omitempty"`
}

// ProgressRequest asks the leader for a push's live progress.
type ProgressRequest struct {
	IDC   string `json:"idc"`
	RunID string `json:"run_id"`
}

// PeersResponse lists swarm peers (same IDC first, a few cross-IDC ones
// for gateways), the IDC of every named holder, and the same-IDC nodes that
// hold the whole file (for fetches over node streams).
type PeersResponse struct {
	Peers []transfer.Peer   `json:"peers"`
	IDCOf map[string]string `json:"idc_of"`
	// NameOf maps every holder's swarm address to its node name: a peer
	// that connected to the asker is known to the swarm only by address.
	NameOf map[string]string `json:"name_of"`
	Full   []string          `json:"full"`
}
