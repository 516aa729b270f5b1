package mesh

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// User events follow Serf: every event carries the sender's Lamport time;
// each node delivers an event once, re-gossips it the first time it sees it,
// and remembers what it delivered in a ring of recent Lamport times. A
// joining node takes the mesh's clock from its first push/pull and ignores
// anything older, so it does not replay history.

// UserEventSizeLimit is the largest name plus payload, in bytes, that
// Mesh.UserEvent accepts. Events travel in UDP gossip packets.
const UserEventSizeLimit = 512

// eventBufferSize is how many Lamport times the dedupe ring covers. An
// event older than the clock minus this is dropped as too old to tell
// apart from a duplicate.
const eventBufferSize = 512

// maxHeldEvents bounds the events held back during a join (see
// userEventLog.beginJoin).
const maxHeldEvents = 1024

// lamportClock is a thread-safe Lamport clock.
type lamportClock struct{ counter atomic.Uint64 }

// Time returns the current time.
func (c *lamportClock) Time() uint64 { return c.counter.Load() }

// Increment advances the clock and returns the new time.
func (c *lamportClock) Increment() uint64 { return c.counter.Add(1) }

// Witness moves the clock past v, so that anything we send afterwards is
// ordered after what we have seen.
func (c *lamportClock) Witness(v uint64) {
	for {
		cur := c.counter.Load()
		if v < cur {
			return
		}
		if c.counter.CompareAndSwap(cur, v+1) {
			return
		}
	}
}

// eventID identifies an event within its Lamport time.
type eventID [16]byte

func userEventID(name string, payload []byte) eventID {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(name))) // "ab"+"c" != "a"+"bc"
	h.Write(n[:])
	h.Write([]byte(name))
	h.Write(payload)
	var id eventID
	copy(id[:], h.Sum(nil))
	return id
}

type eventSlot struct {
	ltime uint64
	ids   []eventID
}

// userEventLog decides which user events are new.
type userEventLog struct {
	mu      sync.Mutex
	minTime uint64 // events before this were sent before we joined
	ring    [eventBufferSize]eventSlot

	// While a first join is in flight, events are held back until the
	// join's push/pull has told us the mesh's clock: gossip can reach us
	// a moment before that, and would otherwise replay old events.
	joining int
	held    []heldEvent
}

// heldEvent is an event received during a join, with its wire form for
// re-gossip.
type heldEvent struct {
	msg *userEventMsg
	raw []byte
}

// accept records ev and reports whether it is new: not older than our
// join, not too old for the ring, and not seen before. now is the clock.
func (l *userEventLog) accept(ev *userEventMsg, now uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acceptLocked(ev, now)
}

func (l *userEventLog) acceptLocked(ev *userEventMsg, now uint64) bool {
	if ev.LTime < l.minTime {
		return false
	}
	if now > eventBufferSize && ev.LTime < now-eventBufferSize {
		return false
	}
	slot := &l.ring[ev.LTime%eventBufferSize]
	if slot.ltime != ev.LTime {
		slot.ltime = ev.LTime
		slot.ids = slot.ids[:0]
	}
	id := userEventID(ev.Name, ev.Payload)
	for _, seen := range slot.ids {
		if seen == id {
			return false
		}
	}
	slot.ids = append(slot.ids, id)
	return true
}

// hold keeps ev back if a join is in flight and reports whether it did.
func (l *userEventLog) hold(ev *userEventMsg, raw []byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.joining == 0 || len(l.held) >= maxHeldEvents {
		return false
	}
	l.held = append(l.held, heldEvent{ev, raw})
	return true
}

// beginJoin starts holding events back (see held).
func (l *userEventLog) beginJoin() {
	l.mu.Lock()
	l.joining++
	l.mu.Unlock()
}

// joinedAt raises the minimum event time to the clock a join's push/pull
// reported, if a join is in flight.
func (l *userEventLog) joinedAt(remoteClock uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.joining > 0 && remoteClock > l.minTime {
		l.minTime = remoteClock
	}
}

// endJoin stops holding events and returns those held, for the caller to
// run through accept now that minTime is known.
func (l *userEventLog) endJoin() []heldEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.joining--
	if l.joining > 0 {
		return nil
	}
	held := l.held
	l.held = nil
	return held
}

// UserEvent sends an event to every member of the pool, this node
// included. Each member delivers it once (EventUser) and re-gossips it the
// first time it sees it. Two events with the same name and payload stamped
// with the same Lamport time are one event. name must not be empty, and
// name plus payload may not exceed UserEventSizeLimit bytes. Delivery is
// best effort: a member that is down or partitioned for the whole spread
// misses the event, and a member that joins later never sees it.
func (m *Mesh) UserEvent(name string, payload []byte) error {
	if m.closed.Load() {
		return errShutdown
	}
	if name == "" {
		return errors.New("mesh: user event needs a name")
	}
	if n := len(name) + len(payload); n > UserEventSizeLimit {
		return fmt.Errorf("mesh: user event %q is %d bytes (name + payload), more than the limit of %d", name, n, UserEventSizeLimit)
	}
	ev := &userEventMsg{
		LTime:   m.clock.Increment() - 1,
		Name:    name,
		Payload: bytes.Clone(payload),
		Origin:  m.cfg.Name,
	}
	raw, err := encodeMessage(msgUserEvent, ev)
	if err != nil {
		return err
	}
	if len(raw) > maxBroadcastSize {
		return fmt.Errorf("mesh: user event %q encodes to %d bytes, more than the gossip limit of %d: shorten the name or payload", name, len(raw), maxBroadcastSize)
	}
	m.deliverUserEvent(ev, raw)
	return nil
}

// handleUserEvent takes a user event from gossip.
func (m *Mesh) handleUserEvent(ev *userEventMsg, raw []byte) {
	m.clock.Witness(ev.LTime)
	if m.userLog.hold(ev, raw) {
		return
	}
	m.deliverUserEvent(ev, raw)
}

// deliverUserEvent publishes and re-gossips ev if it is new.
func (m *Mesh) deliverUserEvent(ev *userEventMsg, raw []byte) {
	if !m.userLog.accept(ev, m.clock.Time()) {
		return
	}
	origin, _ := m.table.member(ev.Origin)
	m.events.publish(Event{
		Type:   EventUser,
		Member: origin,
		User:   &UserEvent{LTime: ev.LTime, Name: ev.Name, Payload: ev.Payload, Origin: ev.Origin},
	})
	m.broadcasts.QueueBroadcast(&userEventBroadcast{msg: raw})
}
