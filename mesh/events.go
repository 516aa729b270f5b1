package mesh

import (
	"fmt"
	"sync"

	"github.com/hashicorp/memberlist"
)

// EventType says what happened to a member, or that a user event arrived.
type EventType int

// Event types. The zero value is deliberately not a valid event.
const (
	EventJoin   EventType = iota + 1 // a member became alive (first seen, or back after failing/leaving)
	EventUpdate                      // a member's meta, address or labels changed
	EventLeave                       // a member left gracefully (Leave)
	EventFail                        // a member stopped answering and was declared dead
	EventUser                        // a user event (Event.User) arrived
)

// String returns the lower-case name of t ("join", "update", ...).
func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventUpdate:
		return "update"
	case EventLeave:
		return "leave"
	case EventFail:
		return "fail"
	case EventUser:
		return "user"
	}
	return fmt.Sprintf("event-%d", int(t))
}

// Event is delivered to subscribers. Member is the member's state right after
// the change; for EventUser it is the sender if known. User is set only for
// EventUser.
type Event struct {
	Type   EventType
	Member Member
	User   *UserEvent
}

// UserEvent is an application event spread to every member of the pool, at
// most once per member (see Mesh.UserEvent).
type UserEvent struct {
	LTime   uint64 `json:"ltime"`   // Lamport time the sender stamped
	Name    string `json:"name"`    // event name
	Payload []byte `json:"payload"` // opaque; never mutate
	Origin  string `json:"origin"`  // name of the sending node
}

// eventDelegate adapts memberlist's membership callbacks to the member
// table. memberlist calls these while holding its node lock, so they must
// not call back into the memberlist and must not block.
type eventDelegate struct{ m *Mesh }

var _ memberlist.EventDelegate = (*eventDelegate)(nil)

func (d *eventDelegate) NotifyJoin(n *memberlist.Node) {
	d.m.table.nodeJoined(n.Name, n.Address(), n.Meta)
}

// NotifyLeave cannot use n.State to tell "left" from "failed": memberlist
// v0.7.0 keeps the state in a field of its own node record that shadows
// Node.State, which stays StateAlive. The table decides from the node's
// Leaving flag instead (see Mesh.Leave).
func (d *eventDelegate) NotifyLeave(n *memberlist.Node) {
	d.m.table.nodeGone(n.Name)
}

func (d *eventDelegate) NotifyUpdate(n *memberlist.Node) {
	d.m.table.nodeUpdated(n.Name, n.Address(), n.Meta)
}

// eventHub fans events out to subscriptions without ever blocking the
// publisher, which may be inside a memberlist callback.
type eventHub struct {
	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool
}

func newEventHub() *eventHub {
	return &eventHub{subs: make(map[*Subscription]struct{})}
}

func (h *eventHub) publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.enqueue(ev)
	}
}

func (h *eventHub) subscribe() *Subscription {
	out := make(chan Event)
	s := &Subscription{
		C:    out,
		out:  out,
		hub:  h,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	h.mu.Lock()
	closed := h.closed
	if !closed {
		h.subs[s] = struct{}{}
	}
	h.mu.Unlock()
	go s.run()
	if closed {
		s.Close()
	}
	return s
}

func (h *eventHub) remove(s *Subscription) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// close ends every subscription and refuses new ones.
func (h *eventHub) close() {
	h.mu.Lock()
	h.closed = true
	subs := make([]*Subscription, 0, len(h.subs))
	for s := range h.subs {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	for _, s := range subs {
		s.Close()
	}
}

// Subscription receives mesh events on C, in the order they happened. Its
// queue is unbounded: no event is ever dropped, however slow the reader, so
// a subscriber that stops reading should Close. C is closed after Close and
// after the Mesh shuts down.
type Subscription struct {
	C <-chan Event

	out  chan Event
	hub  *eventHub
	wake chan struct{} // cap 1: "the queue grew"
	stop chan struct{} // closed by Close
	done chan struct{} // closed when run returns

	mu    sync.Mutex
	queue []Event

	closeOnce sync.Once
}

func (s *Subscription) enqueue(ev Event) {
	s.mu.Lock()
	s.queue = append(s.queue, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run moves events from the queue to C; it is the subscription's only
// goroutine and Close stops it.
func (s *Subscription) run() {
	defer close(s.done)
	defer close(s.out)
	for {
		s.mu.Lock()
		var next Event
		have := len(s.queue) > 0
		if have {
			next = s.queue[0]
		}
		s.mu.Unlock()
		if !have {
			select {
			case <-s.wake:
				continue
			case <-s.stop:
				return
			}
		}
		select {
		case s.out <- next:
			s.mu.Lock()
			s.queue[0] = Event{}
			s.queue = s.queue[1:]
			if len(s.queue) == 0 {
				s.queue = nil // let the backing array go
			}
			s.mu.Unlock()
		case <-s.stop:
			return
		}
	}
}

// Close unsubscribes, discards undelivered events and closes C. It is
// idempotent and returns once the subscription's goroutine has exited.
func (s *Subscription) Close() {
	s.closeOnce.Do(func() {
		s.hub.remove(s)
		close(s.stop)
	})
	<-s.done
}
