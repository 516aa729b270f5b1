package consensus

import (
	"context"
	"encoding/json"

	"github.com/hashicorp/go-memdb"

	"github.com/herd-io/herd/consensus/state"
	"github.com/herd-io/herd/mesh/p2p"
)

// KV endpoints: versioned config objects with compare-and-set, scoped
// global (owned by the primary IDC, replicated to the others) or to one IDC.

type kvGetArgs struct {
	Scope string `json:"scope"`
	Key   string `json:"key"`
}

type kvListArgs struct {
	Scope  string `json:"scope"`
	Prefix string `json:"prefix"`
}

func init() {
	queries["kv.get"] = func(ws memdb.WatchSet, store *state.Store, raw json.RawMessage) (uint64, any, error) {
		var a kvGetArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return 0, nil, p2p.Errorf(p2p.CodeBadRequest, "kv.get: %v", err)
		}
		return store.KVGet(ws, a.Scope, a.Key)
	}
	queries["kv.list"] = func(ws memdb.WatchSet, store *state.Store, raw json.RawMessage) (uint64, any, error) {
		var a kvListArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return 0, nil, p2p.Errorf(p2p.CodeBadRequest, "kv.list: %v", err)
		}
		idx, entries, err := store.KVList(ws, a.Scope, a.Prefix)
		if entries == nil {
			entries = []*state.KVEntry{}
		}
		return idx, entries, err
	}
}

// writeIDC is the IDC whose control group owns writes to scope.
func (s *Server) writeIDC(scope string) string {
	if scope == state.ScopeGlobal {
		return s.cfg.PrimaryIDC
	}
	return scope
}

// readIDC is the IDC that answers reads of scope: global objects are read
// from this IDC's replica, except strongly consistent reads, which only the
// primary can give.
func (s *Server) readIDC(scope string, c Consistency) string {
	if scope == state.ScopeGlobal {
		if c == ConsistencyStrong {
			return s.cfg.PrimaryIDC
		}
		return s.cfg.IDC
	}
	return scope
}

func validateKV(scope, key string) error {
	if err := state.ValidateScope(scope); err != nil {
		return p2p.Errorf(p2p.CodeBadRequest, "%v", err)
	}
	if err := state.ValidateKey(key); err != nil {
		return p2p.Errorf(p2p.CodeBadRequest, "%v", err)
	}
	return nil
}

// KVPut writes key in scope. cas nil writes unconditionally; 0 creates only;
// N updates only version N. A conflict returns a *CommandError with code
// cas_conflict.
func (s *Server) KVPut(ctx context.Context, scope, key string, value []byte, cas *uint64) (*state.KVEntry, error) {
	if err := validateKV(scope, key); err != nil {
		return nil, err
	}
	if err := state.ValidateValue(value); err != nil {
		return nil, p2p.Errorf(p2p.CodeBadRequest, "%v", err)
	}
	res, err := s.Apply(ctx, s.writeIDC(scope), KVSetType, KVSetRequest{Scope: scope, Key: key, Value: value, CAS: cas})
	if err != nil {
		return nil, err
	}
	return res.Entry, nil
}

// KVDelete removes key from scope, optionally only at version cas.
func (s *Server) KVDelete(ctx context.Context, scope, key string, cas *uint64) error {
	if err := validateKV(scope, key); err != nil {
		return err
	}
	_, err := s.Apply(ctx, s.writeIDC(scope), KVDeleteType, KVDeleteRequest{Scope: scope, Key: key, CAS: cas})
	return err
}

// KVGet reads key from scope; a nil entry means absent.
func (s *Server) KVGet(ctx context.Context, scope, key string, opts QueryOptions) (*state.KVEntry, QueryMeta, error) {
	if err := validateKV(scope, key); err != nil {
		return nil, QueryMeta{}, err
	}
	var e *state.KVEntry
	meta, err := s.Query(ctx, s.readIDC(scope, opts.Consistency), "kv.get", kvGetArgs{Scope: scope, Key: key}, opts, &e)
	return e, meta, err
}

// KVList lists the keys of scope under prefix, sorted.
func (s *Server) KVList(ctx context.Context, scope, prefix string, opts QueryOptions) ([]*state.KVEntry, QueryMeta, error) {
	if err := state.ValidateScope(scope); err != nil {
		return nil, QueryMeta{}, p2p.Errorf(p2p.CodeBadRequest, "%v", err)
	}
	var out []*state.KVEntry
	meta, err := s.Query(ctx, s.readIDC(scope, opts.Consistency), "kv.list", kvListArgs{Scope: scope, Prefix: prefix}, opts, &out)
	return out, meta, err
}
