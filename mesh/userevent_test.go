package mesh

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestUserEventsExactlyOnce(t *testing.T) {
	slow := func(_ int, cfg *Config) {
		cfg.HealthInterval = time.Hour // keep broadcast queues quiet
		// Epidemic spread is probabilistic: in a pool of 5, memberlist
		// sends each broadcast 4 times per holder (RetransmitMult 4 ×
		// log10 of the pool), so a node misses a given event with p ≈
		// (3/4)^20 and one of this test's 40 deliveries failed about once
		// in 15 runs. This test is about exactly-once delivery, not the
		// epidemic's reach: more retransmits make a miss negligible.
		tune := cfg.Memberlist
		cfg.Memberlist = func(c *memberlist.Config) {
			tune(c)
			c.RetransmitMult = 12
		}
	}
	nodes := startCluster(t, 5, slow)
	cols := make([]*collector, len(nodes))
	for i, m := range nodes {
		cols[i] = collect(t, m.Subscribe())
	}

	// Every node sends one event; every node must deliver all five once.
	var want []string
	for i, m := range nodes {
		if err := m.UserEvent("deploy", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("deploy:%d", i))
	}
	waitUserEvents(t, nodes, cols, want)
	// Rebroadcasts keep arriving for a while; once every queue is empty,
	// nothing new can come and the counts must still be exact.
	waitQueuesDrained(t, nodes)
	for i, c := range cols {
		if got := c.userEvents(); !slices.Equal(got, want) {
			t.Errorf("node%d delivered %v, want each of %v once", i, got, want)
		}
	}
	for _, ev := range cols[3].snapshot() {
		if ev.Type == EventUser && ev.User.Payload[0] == '1' && (ev.User.Origin != "node1" || ev.Member.Name != "node1") {
			t.Errorf("event from node1 has origin %q, member %q", ev.User.Origin, ev.Member.Name)
		}
	}

	// A replayed message is a duplicate.
	raw, err := encodeMessage(msgUserEvent, &userEventMsg{LTime: nodes[0].clock.Time(), Name: "replay", Origin: "x"})
	if err != nil {
		t.Fatal(err)
	}
	d := &delegate{nodes[0]}
	d.NotifyMsg(raw)
	d.NotifyMsg(raw)
	waitFor(t, 5*time.Second, func() (bool, string) {
		got := cols[0].userEvents()
		return slices.Contains(got, "replay:"), fmt.Sprintf("node0 delivered %v", got)
	})

	// Old events, seen by everyone, still echoing in gossip queues...
	old := []string{"replay:"}
	for i := range 3 {
		if err := nodes[i].UserEvent("old", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		old = append(old, fmt.Sprintf("old:%d", i))
	}
	want = append(want, old...)
	slices.Sort(want)
	waitUserEvents(t, nodes, cols, want)

	// ...must not reach a node that joins now.
	late := startMesh(t, testConfig(t, "late"))
	lateEvents := collect(t, late.Subscribe())
	if _, err := late.Join([]string{nodes[0].LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	all := append(slices.Clone(nodes), late)
	waitConverged(t, all, 6)
	if err := nodes[2].UserEvent("fresh", []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		got := lateEvents.userEvents()
		return slices.Contains(got, "fresh:x"), fmt.Sprintf("late node delivered %v", got)
	})
	waitQueuesDrained(t, all)
	if got := lateEvents.userEvents(); !slices.Equal(got, []string{"fresh:x"}) {
		t.Errorf("late joiner delivered %v, want only fresh:x", got)
	}
	for i, c := range cols {
		if got := c.userEvents(); len(got) != len(want)+1 {
			t.Errorf("node%d delivered %d events, want %d", i, len(got), len(want)+1)
		}
	}
}

func waitUserEvents(t *testing.T, nodes []*Mesh, cols []*collector, want []string) {
	t.Helper()
	waitFor(t, 10*time.Second, func() (bool, string) {
		for i, c := range cols {
			if got := c.userEvents(); !slices.Equal(got, want) {
				return false, fmt.Sprintf("node%d delivered %v, want %v", i, got, want)
			}
		}
		return true, ""
	})
}

func waitQueuesDrained(t *testing.T, nodes []*Mesh) {
	t.Helper()
	waitFor(t, 10*time.Second, func() (bool, string) {
		for _, m := range nodes {
			if n := m.broadcasts.NumQueued(); n > 0 {
				return false, fmt.Sprintf("%s still has %d broadcasts queued", m.cfg.Name, n)
			}
		}
		return true, ""
	})
}

func TestUserEventLimits(t *testing.T) {
	m := startMesh(t, testConfig(t, "solo"))
	if err := m.UserEvent("", nil); err == nil {
		t.Error("an unnamed event was accepted")
	}
	err := m.UserEvent("big", make([]byte, UserEventSizeLimit))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(UserEventSizeLimit)) {
		t.Errorf("oversized event: %v", err)
	}
	if err := m.UserEvent("ok", make([]byte, UserEventSizeLimit-2)); err != nil {
		t.Errorf("event at the limit: %v", err)
	}
	_ = m.Shutdown()
	if err := m.UserEvent("late", nil); err == nil {
		t.Error("UserEvent after Shutdown succeeded")
	}
}

func TestUserEventLog(t *testing.T) {
	ev := func(lt uint64, name, payload string) *userEventMsg {
		return &userEventMsg{LTime: lt, Name: name, Payload: []byte(payload)}
	}
	var l userEventLog
	steps := []struct {
		ev    *userEventMsg
		clock uint64
		want  bool
		why   string
	}{
		{ev(5, "a", "1"), 6, true, "new"},
		{ev(5, "a", "1"), 6, false, "duplicate"},
		{ev(5, "a", "2"), 6, true, "same time, other payload"},
		{ev(5, "ab", ""), 6, true, "name/payload boundary differs"},
		{ev(5, "a", "b"), 6, true, "..."},
		{ev(5+eventBufferSize, "a", "1"), 5 + eventBufferSize + 1, true, "same slot, newer time"},
		{ev(5, "a", "1"), 5 + eventBufferSize + 1, false, "too old for the ring"},
		{ev(3, "z", ""), 5 + eventBufferSize + 1, false, "older than the ring"},
	}
	for _, s := range steps {
		if got := l.accept(s.ev, s.clock); got != s.want {
			t.Errorf("accept(%d %s %s) = %v, want %v (%s)", s.ev.LTime, s.ev.Name, s.ev.Payload, got, s.want, s.why)
		}
	}

	// During a first join, events wait for the pool's clock.
	var j userEventLog
	j.beginJoin()
	if !j.hold(ev(3, "old", ""), nil) || !j.hold(ev(10, "new", ""), nil) {
		t.Fatal("events not held during a join")
	}
	j.joinedAt(7)
	held := j.endJoin()
	if len(held) != 2 {
		t.Fatalf("endJoin returned %d events", len(held))
	}
	if j.accept(held[0].msg, 11) || !j.accept(held[1].msg, 11) {
		t.Error("minTime from the join not applied")
	}
	if j.hold(ev(12, "after", ""), nil) {
		t.Error("held an event outside a join")
	}
	j.joinedAt(100) // a push/pull outside our join changes nothing
	if !j.accept(ev(50, "x", ""), 51) {
		t.Error("minTime moved outside a join")
	}
}

func TestLamportClock(t *testing.T) {
	var c lamportClock
	if c.Time() != 0 || c.Increment() != 1 || c.Time() != 1 {
		t.Fatal("increment")
	}
	c.Witness(41)
	if c.Time() != 42 {
		t.Errorf("after Witness(41) time = %d, want 42", c.Time())
	}
	c.Witness(10)
	if c.Time() != 42 {
		t.Errorf("Witness of the past moved the clock to %d", c.Time())
	}
}
