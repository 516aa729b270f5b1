package consensus

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/herd-io/herd/consensus/state"
)

// MessageType identifies a raft command. The numbers are part of the log
// format: never renumber or reuse one, only append new types at the end.
type MessageType uint8

// Raft command types.
const (
	KVSetType       MessageType = 0
	KVDeleteType    MessageType = 1
	KVReplicateType MessageType = 2
	// Add new types here, at the end.
)

// IgnoreUnknownTypeFlag marks a command that servers which do not know its
// type may skip. A new command that old servers can safely miss sets it, so
// a rolling upgrade does not stop the old servers' FSMs; a command without
// it yields an unknown_command result there instead.
const IgnoreUnknownTypeFlag MessageType = 128

// String returns the type's name, with "+ignore" when the flag is set.
func (t MessageType) String() string {
	var name string
	switch t &^ IgnoreUnknownTypeFlag {
	case KVSetType:
		name = "kv-set"
	case KVDeleteType:
		name = "kv-delete"
	case KVReplicateType:
		name = "kv-replicate"
	default:
		if c, ok := commands[t&^IgnoreUnknownTypeFlag]; ok {
			name = c.name
			break
		}
		name = fmt.Sprintf("type-%d", uint8(t&^IgnoreUnknownTypeFlag))
	}
	if t&IgnoreUnknownTypeFlag != 0 {
		name += "+ignore"
	}
	return name
}

// KVSetRequest writes Value to Key in Scope. CAS: nil = unconditional,
// 0 = create only, N = only if the key is at version N.
type KVSetRequest struct {
	Scope string  `json:"scope"`
	Key   string  `json:"key"`
	Value []byte  `json:"value"`
	CAS   *uint64 `json:"cas,omitempty"`
}

// KVDeleteRequest removes Key from Scope. CAS as in KVSetRequest.
type KVDeleteRequest struct {
	Scope string  `json:"scope"`
	Key   string  `json:"key"`
	CAS   *uint64 `json:"cas,omitempty"`
}

// KVReplicateRequest makes Scope hold exactly Entries, as read from the
// source IDC at SourceIndex.
type KVReplicateRequest struct {
	Scope       string           `json:"scope"`
	Entries     []*state.KVEntry `json:"entries"`
	SourceIndex uint64           `json:"source_index"`
}

// Error codes of CommandError.
const (
	CodeCASConflict    = "cas_conflict"
	CodeBadRequest     = "bad_request"
	CodeUnknownCommand = "unknown_command"
	// CodeInternal reports a state store failure that is not the request's
	// fault; it indicates a bug.
	CodeInternal = "internal"
)

// ApplyResult is the FSM's response to every log entry: Apply returns a
// *ApplyResult, so raft's ApplyFuture.Response() holds one. A failed command
// is still an applied log entry: the failure is in Err, not in raft's error.
// A retried request id gets its first result back, Index included.
type ApplyResult struct {
	Index uint64          `json:"index"`           // raft index the command applied at
	Entry *state.KVEntry  `json:"entry,omitempty"` // KVSet: the entry written (shared with the store: do not modify)
	Data  json.RawMessage `json:"data,omitempty"`  // a registered command's result (see RegisterCommand)
	Err   *CommandError   `json:"error,omitempty"`
}

// CommandError is a command's failure as every server computed it.
type CommandError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *CommandError) Error() string { return e.Code + ": " + e.Message }

// envelope is the JSON half of an encoded command.
type envelope struct {
	ID   string          `json:"id,omitempty"`
	Body json.RawMessage `json:"body"`
}

// EncodeCommand encodes a raft command: one type byte, then JSON
// {"id": requestID, "body": body}. requestID may be empty (no dedupe);
// otherwise it must pass state.ValidateRequestID.
func EncodeCommand(t MessageType, requestID string, body any) ([]byte, error) {
	if requestID != "" {
		if err := state.ValidateRequestID(requestID); err != nil {
			return nil, fmt.Errorf("encode %s command: %w", t, err)
		}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s command body: %w", t, err)
	}
	env, err := json.Marshal(envelope{ID: requestID, Body: raw})
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", t, err)
	}
	return append([]byte{byte(t)}, env...), nil
}

// DecodeCommand splits an encoded command into its type (flag included),
// request id and raw body. It never panics; malformed input returns an
// error. The id is returned as sent; the FSM validates it.
func DecodeCommand(b []byte) (MessageType, string, json.RawMessage, error) {
	if len(b) == 0 {
		return 0, "", nil, errors.New("decode command: empty")
	}
	t := MessageType(b[0])
	var env envelope
	if err := json.Unmarshal(b[1:], &env); err != nil {
		return t, "", nil, fmt.Errorf("decode %s command: %w", t, err)
	}
	if len(env.Body) == 0 {
		return t, "", nil, fmt.Errorf("decode %s command: no body", t)
	}
	return t, env.ID, env.Body, nil
}
