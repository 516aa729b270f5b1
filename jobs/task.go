package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/herd-io/herd/jobs/model"
)

// Task is what one host executes for one run. The leader signs one per
// host, so a task is valid only on the node it names as Executor: the host
// itself, or for an SSH target the agent chosen to reach it.
type Task struct {
	RunID    string           `json:"run_id"`
	IDC      string           `json:"idc"`
	Host     string           `json:"host"`
	Executor string           `json:"executor"`
	Kind     model.TargetKind `json:"kind"`
	Script   model.ScriptSpec `json:"script"`
	OSUser   string           `json:"os_user,omitempty"` // "" = the agent's own user
	SSH      *model.SSHHost   `json:"ssh,omitempty"`     // Kind ssh: how to reach the host
	Push     *model.PushSpec  `json:"push,omitempty"`    // a file push instead of a script
	Issued   time.Time        `json:"issued"`
	Expires  time.Time        `json:"expires"` // an agent refuses to start it later
}

// Envelope carries a signed task. Sig is the signer's ed25519 signature of
// taskSigningPrefix + Task; Signer is its libp2p peer ID, from which the
// public key is extracted.
type Envelope struct {
	Task   json.RawMessage `json:"task"`
	Sig    []byte          `json:"sig"`
	Signer string          `json:"signer"`
}

// taskSigningPrefix separates task signatures from anything else the node
// key signs (libp2p signs its own handshakes with it).
const taskSigningPrefix = "herd task v1\x00"

// SignTask encodes and signs t with key (a control member's node key).
func SignTask(key crypto.PrivKey, t Task) (Envelope, error) {
	raw, err := json.Marshal(t)
	if err != nil {
		return Envelope{}, fmt.Errorf("encode task: %w", err)
	}
	sig, err := key.Sign(append([]byte(taskSigningPrefix), raw...))
	if err != nil {
		return Envelope{}, fmt.Errorf("sign task: %w", err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return Envelope{}, fmt.Errorf("sign task: %w", err)
	}
	return Envelope{Task: raw, Sig: sig, Signer: id.String()}, nil
}

// ErrForged is wrapped by every signature failure of VerifyTask.
var ErrForged = errors.New("task refused")

// VerifyTask checks e and returns its task. The signature must verify
// under the signer's key, the signer must be a control member now
// (authorized), the task must name self as its executor and must not have
// expired.
func VerifyTask(e Envelope, self string, now time.Time, authorized func(peerID string) bool) (Task, error) {
	if len(e.Task) == 0 || len(e.Sig) == 0 || e.Signer == "" {
		return Task{}, fmt.Errorf("%w: unsigned (task, signature and signer are required)", ErrForged)
	}
	id, err := peer.Decode(e.Signer)
	if err != nil {
		return Task{}, fmt.Errorf("%w: signer %q is not a peer id: %v", ErrForged, e.Signer, err)
	}
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return Task{}, fmt.Errorf("%w: signer %s: no public key in its id: %v", ErrForged, e.Signer, err)
	}
	ok, err := pub.Verify(append([]byte(taskSigningPrefix), e.Task...), e.Sig)
	if err != nil || !ok {
		return Task{}, fmt.Errorf("%w: bad signature from %s", ErrForged, e.Signer)
	}
	if !authorized(e.Signer) {
		return Task{}, fmt.Errorf("%w: signer %s is not a control member of this IDC", ErrForged, e.Signer)
	}
	var t Task
	if err := json.Unmarshal(e.Task, &t); err != nil {
		return Task{}, fmt.Errorf("%w: undecodable task: %v", ErrForged, err)
	}
	if t.Executor != self {
		return Task{}, fmt.Errorf("%w: task is for node %q, not %q", ErrForged, t.Executor, self)
	}
	if now.After(t.Expires) {
		return Task{}, fmt.Errorf("%w: task of run %s expired at %s", ErrForged, t.RunID, t.Expires.Format(time.RFC3339))
	}
	if err := model.ValidateRunID(t.RunID); err != nil {
		return Task{}, fmt.Errorf("%w: %v", ErrForged, err)
	}
	return t, nil
}
