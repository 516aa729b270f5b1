package consensus

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/hashicorp/raft"

	"github.com/herd-io/herd/consensus/state"
)

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.FSMSnapshot = (*fsmSnapshot)(nil)
)

// FSM applies committed raft commands to the state store. It implements
// raft.FSM and is deterministic: the result of every entry depends only on
// the log and the state (no clock, no randomness, no map order), so every
// server computes the same state and the same ApplyResult.
//
// Commands carrying a request id apply at most once within
// state.RequestWindow log entries: the result is recorded in the store in
// the same Apply, and a later entry with the same id gets the recorded
// result back without touching the state. Leaders may therefore retry a
// write whose outcome they did not learn.
type FSM struct {
	store  *state.Store
	logger *slog.Logger
}

// NewFSM returns an FSM writing to store. A nil logger means slog.Default.
func NewFSM(store *state.Store, logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.Default()
	}
	return &FSM{store: store, logger: logger.With("component", "fsm")}
}

// Store returns the state store the FSM writes to.
func (f *FSM) Store() *state.Store { return f.store }

// Apply applies one committed log entry and returns its *ApplyResult.
// Malformed or refused commands yield an ApplyResult with Err set; Apply
// never panics on command content.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		// Only a BatchingFSM sees other entry types; nothing to apply.
		return &ApplyResult{Index: l.Index}
	}
	t, id, body, err := DecodeCommand(l.Data)
	if err != nil {
		f.logger.Error("cannot decode raft command", "index", l.Index, "error", err)
		return failed(l.Index, CodeBadRequest, err.Error())
	}
	if id != "" {
		if err := state.ValidateRequestID(id); err != nil {
			return failed(l.Index, CodeBadRequest, err.Error())
		}
		if rec, ok := f.store.RequestSeen(id); ok {
			return f.replay(l.Index, t, id, rec, body)
		}
	}
	res, ignored := f.dispatch(l.Index, t, body)
	if id != "" && !ignored {
		f.record(l.Index, id, res)
	}
	return res
}

// dispatch runs the command's applyX. ignored reports an unknown command
// that carried IgnoreUnknownTypeFlag.
func (f *FSM) dispatch(idx uint64, t MessageType, body json.RawMessage) (res *ApplyResult, ignored bool) {
	ignoreUnknown := t&IgnoreUnknownTypeFlag != 0
	switch t &^ IgnoreUnknownTypeFlag {
	case KVSetType:
		return f.applyKVSet(idx, body), false
	case KVDeleteType:
		return f.applyKVDelete(idx, body), false
	case KVReplicateType:
		return f.applyKVReplicate(idx, body), false
	}
	if res, ok := f.applyRegistered(idx, t&^IgnoreUnknownTypeFlag, body); ok {
		return res, false
	}
	if ignoreUnknown {
		f.logger.Warn("ignoring unknown raft command type; upgrade this server", "index", idx, "type", uint8(t&^IgnoreUnknownTypeFlag))
		return &ApplyResult{Index: idx}, true
	}
	f.logger.Error("unknown raft command type; upgrade this server", "index", idx, "type", uint8(t))
	return failed(idx, CodeUnknownCommand, fmt.Sprintf("unknown command type %d (is this server older than the leader?)", uint8(t))), false
}

func (f *FSM) applyKVSet(idx uint64, body json.RawMessage) *ApplyResult {
	var req KVSetRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return failed(idx, CodeBadRequest, "decode kv-set body: "+err.Error())
	}
	e, err := f.store.KVSet(idx, req.Scope, req.Key, req.Value, req.CAS)
	if err != nil {
		return f.storeFailed(idx, KVSetType, err)
	}
	return &ApplyResult{Index: idx, Entry: e}
}

func (f *FSM) applyKVDelete(idx uint64, body json.RawMessage) *ApplyResult {
	var req KVDeleteRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return failed(idx, CodeBadRequest, "decode kv-delete body: "+err.Error())
	}
	if err := f.store.KVDelete(idx, req.Scope, req.Key, req.CAS); err != nil {
		return f.storeFailed(idx, KVDeleteType, err)
	}
	return &ApplyResult{Index: idx}
}

func (f *FSM) applyKVReplicate(idx uint64, body json.RawMessage) *ApplyResult {
	var req KVReplicateRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return failed(idx, CodeBadRequest, "decode kv-replicate body: "+err.Error())
	}
	if err := f.store.KVReplaceScope(idx, req.Scope, req.Entries, req.SourceIndex); err != nil {
		return f.storeFailed(idx, KVReplicateType, err)
	}
	return &ApplyResult{Index: idx}
}

// storeFailed maps a store error to a result: CAS conflicts and validation
// failures are the request's doing; anything else is a bug worth a log line.
func (f *FSM) storeFailed(idx uint64, t MessageType, err error) *ApplyResult {
	var (
		cas *state.CASConflictError
		inv *state.ValidationError
		cmd *CommandError
	)
	switch {
	case errors.As(err, &cmd):
		return failed(idx, cmd.Code, cmd.Message)
	case errors.As(err, &cas):
		return failed(idx, CodeCASConflict, err.Error())
	case errors.As(err, &inv):
		return failed(idx, CodeBadRequest, err.Error())
	}
	f.logger.Error("state store refused a raft command", "index", idx, "type", t.String(), "error", err)
	return failed(idx, CodeInternal, err.Error())
}

func failed(idx uint64, code, msg string) *ApplyResult {
	return &ApplyResult{Index: idx, Err: &CommandError{Code: code, Message: msg}}
}

// record stores res under id. The entry's value is left out: the window
// holds up to state.RequestWindow results, and with values of up to
// state.MaxValueSize that could be tens of GiB. A duplicate KVSet gets the
// value back from its own body (see replay).
func (f *FSM) record(idx uint64, id string, res *ApplyResult) {
	stored := *res
	if res.Entry != nil {
		e := *res.Entry // a copy: the store's entry is shared and immutable
		e.Value = nil
		stored.Entry = &e
	}
	b, err := json.Marshal(&stored)
	if err == nil {
		err = f.store.RecordRequest(idx, state.RequestRecord{ID: id, Result: b})
	}
	if err != nil {
		// The command itself applied; only the dedupe record is missing,
		// identically on every server.
		f.logger.Error("cannot record request result", "index", idx, "request_id", id, "error", err)
	}
}

// replay answers a request id seen before with the recorded result.
func (f *FSM) replay(idx uint64, t MessageType, id string, rec *state.RequestRecord, body json.RawMessage) *ApplyResult {
	var res ApplyResult
	if err := json.Unmarshal(rec.Result, &res); err != nil {
		f.logger.Error("cannot decode recorded request result", "index", idx, "request_id", id, "error", err)
		return failed(idx, CodeInternal, fmt.Sprintf("request %s: recorded result unreadable: %v", id, err))
	}
	if res.Entry != nil && t&^IgnoreUnknownTypeFlag == KVSetType {
		var req KVSetRequest
		if json.Unmarshal(body, &req) == nil {
			res.Entry.Value = req.Value
		}
	}
	f.logger.Debug("duplicate request answered from its first result", "index", idx, "request_id", id, "first_index", rec.Index)
	return &res
}

// Snapshot captures the state at this point of the log. It is cheap (a
// memdb snapshot); the encoding happens in Persist while applies go on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{snap: f.store.Snapshot()}, nil
}

// Restore replaces the whole state with a snapshot. On error the previous
// state stays (raft then refuses to start from the snapshot).
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.store.Restore(rc); err != nil {
		return fmt.Errorf("fsm restore: %w", err)
	}
	f.logger.Info("restored state from snapshot", "latest_index", f.store.LatestIndex())
	return nil
}

// fsmSnapshot streams a state snapshot into a raft snapshot sink.
type fsmSnapshot struct {
	snap *state.Snapshot
}

// Persist writes the snapshot and closes the sink, or cancels it on error.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.snap.Persist(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist fsm snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close fsm snapshot sink: %w", err)
	}
	return nil
}

// Release is a no-op: the memdb snapshot is garbage collected.
func (s *fsmSnapshot) Release() {}
