package jobs

import (
	"context"
	"errors"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/consensus/state"
	"github.com/herd-io/herd/jobs/sshexec"
)

var _ sshexec.HostKeys = (*controlHostKeys)(nil)

// controlHostKeys keeps SSH host keys trusted on first use in the control
// group's global scope, so every executor of every IDC checks a host
// against the same key.
type controlHostKeys struct{ srv *consensus.Server }

func (k *controlHostKeys) Lookup(ctx context.Context, addr string) ([]byte, bool, error) {
	e, _, err := k.srv.KVGet(ctx, state.ScopeGlobal, sshHostKeyKey(addr), consensus.QueryOptions{})
	if err != nil {
		return nil, false, err
	}
	if e == nil {
		return nil, false, nil
	}
	return e.Value, true, nil
}

func (k *controlHostKeys) Record(ctx context.Context, addr string, key []byte) ([]byte, error) {
	zero := uint64(0)
	_, err := k.srv.KVPut(ctx, state.ScopeGlobal, sshHostKeyKey(addr), key, &zero)
	var ce *consensus.CommandError
	if errors.As(err, &ce) && ce.Code == consensus.CodeCASConflict {
		stored, _, lerr := k.Lookup(ctx, addr)
		return stored, lerr
	}
	if err != nil {
		return nil, err
	}
	return key, nil
}
