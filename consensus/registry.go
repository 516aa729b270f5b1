package consensus

import (
	"encoding/json"
	"fmt"

	"github.com/hashicorp/go-memdb"

	"github.com/herd-io/herd/consensus/state"
)

// Packages above consensus (jobs, transfer) keep their objects in the KV
// and define their own raft commands and reads through this registry, so
// that consensus never imports them (DESIGN: "the FSM applies typed commands
// that jobs defines through a small registry"). Registration happens in
// init functions: every server of a cluster runs the same binary, so every
// FSM knows the same commands.

// FirstRegisteredType is the lowest type number a package may register;
// the numbers below it belong to consensus's own commands.
const FirstRegisteredType MessageType = 32

// CommandFunc applies one registered command inside one KV transaction at
// w.Index(). It must be deterministic (no clock, randomness or map order):
// every server runs it on the same state and must reach the same result.
// The returned value is JSON-encoded into ApplyResult.Data; keep it small,
// it is also kept in the request-dedupe window. A returned *CommandError,
// *state.ValidationError or *state.CASConflictError becomes the result's
// Err and no change of the transaction lands.
type CommandFunc func(w *state.KVWriter, body json.RawMessage) (any, error)

// QueryFunc answers a registered read from the store, adding what it read
// to ws, and returns the index its answer reflects (for blocking queries).
type QueryFunc func(ws memdb.WatchSet, store *state.Store, args json.RawMessage) (uint64, any, error)

type registeredCommand struct {
	name string
	fn   CommandFunc
}

var commands = map[MessageType]registeredCommand{}

// RegisterCommand makes t a command that every FSM applies with fn. Call it
// from an init function. It panics on a number below FirstRegisteredType,
// with the ignore flag, or already taken: those are programming errors that
// must not reach a running cluster.
func RegisterCommand(t MessageType, name string, fn CommandFunc) {
	switch {
	case t < FirstRegisteredType || t&IgnoreUnknownTypeFlag != 0:
		panic(fmt.Sprintf("consensus: command type %d (%s) outside the registrable range %d..127", uint8(t), name, FirstRegisteredType))
	case fn == nil:
		panic("consensus: nil CommandFunc for " + name)
	}
	if c, dup := commands[t]; dup {
		panic(fmt.Sprintf("consensus: command type %d registered twice (%s, %s)", uint8(t), c.name, name))
	}
	commands[t] = registeredCommand{name: name, fn: fn}
}

// RegisterQuery makes kind a read that Server.Query serves with fn. Call it
// from an init function; it panics when kind is taken.
func RegisterQuery(kind string, fn QueryFunc) {
	if _, dup := queries[kind]; dup {
		panic("consensus: query " + kind + " registered twice")
	}
	queries[kind] = queryFunc(fn)
}

// CommandErrorf returns a *CommandError for a CommandFunc to refuse a
// command with: code is one of the Code constants or a package's own
// ("conflict", "not_found", ...).
func CommandErrorf(code, format string, args ...any) *CommandError {
	return &CommandError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// applyRegistered runs a registered command; ok is false when t is not one.
func (f *FSM) applyRegistered(idx uint64, t MessageType, body json.RawMessage) (*ApplyResult, bool) {
	c, ok := commands[t]
	if !ok {
		return nil, false
	}
	var out any
	err := f.store.KVWrite(idx, func(w *state.KVWriter) error {
		var err error
		out, err = c.fn(w, body)
		return err
	})
	if err != nil {
		return f.storeFailed(idx, t, err), true
	}
	res := &ApplyResult{Index: idx}
	if out != nil {
		data, err := json.Marshal(out)
		if err != nil {
			f.logger.Error("cannot encode command result", "index", idx, "command", c.name, "error", err)
			return failed(idx, CodeInternal, fmt.Sprintf("%s: encode result: %v", c.name, err)), true
		}
		res.Data = data
	}
	return res, true
}
