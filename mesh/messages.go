package mesh

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Every mesh message is one type byte followed by a JSON body. JSON because
// the messages are small, the stdlib decoder cannot be made to panic, and a
// captured packet stays readable; the size budget of a gossip packet is
// enforced by maxBroadcastSize instead.

// messageType is the first byte of every mesh message.
type messageType uint8

// The numbers are on the wire: append new types at the end, never renumber
// or reuse one. Receivers ignore types they do not know, so a newer node
// can add messages without breaking older ones.
const (
	msgNodeState messageType = 1 // nodeStateMsg, gossiped
	msgUserEvent messageType = 2 // userEventMsg, gossiped
	msgPushPull  messageType = 3 // pushPullMsg, carried in memberlist's push/pull
)

func (t messageType) String() string {
	switch t {
	case msgNodeState:
		return "node-state"
	case msgUserEvent:
		return "user-event"
	case msgPushPull:
		return "push-pull"
	}
	return fmt.Sprintf("message-type-%d", uint8(t))
}

// maxBroadcastSize bounds every gossiped message. memberlist's queue never
// sends a broadcast larger than the space left in a packet (1,400 bytes
// minus label, encryption and framing overhead, ~1,250 at worst here) and
// never drops it either, so an oversized message would sit in the queue
// forever. 1,024 leaves room for memberlist's own messages.
const maxBroadcastSize = 1024

// errUnknownMessage marks a type byte this build does not know.
var errUnknownMessage = errors.New("unknown mesh message type")

// nodeStateMsg carries what does not fit in memberlist's 512-byte meta:
// labels and health. Each node versions its own state with
// max(previous+1, unix nanoseconds), so a restarted node supersedes what the
// mesh remembers of its previous run; everyone keeps the highest version.
type nodeStateMsg struct {
	Name    string            `json:"name"`
	Version uint64            `json:"ver"`
	Labels  map[string]string `json:"labels,omitempty"`
	Health  Health            `json:"health"`
	// Leaving is set by Leave before memberlist's own leave goes out: the
	// memberlist event API does not say whether a node left or failed.
	Leaving bool `json:"leaving,omitempty"`
}

func (m *nodeStateMsg) validate() error {
	if m.Name == "" {
		return errors.New("node state without a node name")
	}
	if m.Version == 0 {
		return fmt.Errorf("node state of %q has version 0", m.Name)
	}
	if err := ValidateLabels(m.Labels); err != nil {
		return fmt.Errorf("node state of %q: %w", m.Name, err)
	}
	return nil
}

// userEventMsg is a Serf-style user event. LTime is the sender's Lamport
// time; receivers deduplicate on (LTime, hash of Name and Payload).
type userEventMsg struct {
	LTime   uint64 `json:"ltime"`
	Name    string `json:"name"`
	Payload []byte `json:"payload,omitempty"`
	Origin  string `json:"origin,omitempty"`
}

func (m *userEventMsg) validate() error {
	if m.Name == "" {
		return errors.New("user event without a name")
	}
	return nil
}

// pushPullMsg is our part of memberlist's periodic full-state exchange: the
// states of every live member we know, and the user-event clock so that a
// joiner starts after the events the mesh has already seen.
type pushPullMsg struct {
	EventLTime uint64         `json:"event_ltime"`
	States     []nodeStateMsg `json:"states,omitempty"`
}

// encodeMessage frames v, which must be the struct for t, as a message.
func encodeMessage(t messageType, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("mesh: encode %s message: %w", t, err)
	}
	out := make([]byte, 0, 1+len(body))
	out = append(out, byte(t))
	return append(out, body...), nil
}

// decodeMessage parses a message of any known type and returns a pointer to
// its struct. It never panics. An unknown type yields errUnknownMessage,
// which receivers should ignore quietly.
func decodeMessage(b []byte) (messageType, any, error) {
	if len(b) == 0 {
		return 0, nil, errors.New("mesh: empty message")
	}
	t := messageType(b[0])
	var (
		v     any
		check func() error
	)
	switch t {
	case msgNodeState:
		m := new(nodeStateMsg)
		v, check = m, m.validate
	case msgUserEvent:
		m := new(userEventMsg)
		v, check = m, m.validate
	case msgPushPull:
		v, check = new(pushPullMsg), func() error { return nil }
	default:
		return t, nil, fmt.Errorf("mesh: %w %d", errUnknownMessage, uint8(t))
	}
	if err := json.Unmarshal(b[1:], v); err != nil {
		return t, nil, fmt.Errorf("mesh: decode %s message: %w", t, err)
	}
	if err := check(); err != nil {
		return t, nil, fmt.Errorf("mesh: invalid %s message: %w", t, err)
	}
	return t, v, nil
}
