package mesh

import (
	"strings"
	"testing"
	"time"
)

func newTestTable(t *testing.T) (*memberTable, *collector, *time.Time) {
	hub := newEventHub()
	tbl := newMemberTable("me", hub, newRecorder().logger())
	now := time.Unix(1000, 0)
	tbl.now = func() time.Time { return now }
	col := collect(t, hub.subscribe())
	return tbl, col, &now
}

func meta(t *testing.T, m Meta) []byte {
	b, err := EncodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTableVersions(t *testing.T) {
	tbl, col, _ := newTestTable(t)
	tbl.nodeJoined("a", "1.1.1.1:1", meta(t, Meta{ID: "pa", IDC: "dc1"}))

	steps := []struct {
		st     nodeStateMsg
		want   applyResult
		labels string
	}{
		{nodeStateMsg{Name: "a", Version: 10, Labels: map[string]string{"r": "1"}}, applyResult{accepted: true, spread: true}, "r=1"},
		{nodeStateMsg{Name: "a", Version: 10, Labels: map[string]string{"r": "x"}}, applyResult{}, "r=1"},                                         // same version: ignored
		{nodeStateMsg{Name: "a", Version: 9, Labels: map[string]string{"r": "x"}}, applyResult{}, "r=1"},                                          // older: ignored
		{nodeStateMsg{Name: "a", Version: 11, Labels: map[string]string{"r": "1"}, Health: Health{Load1: 2}}, applyResult{accepted: true}, "r=1"}, // health only: not re-gossiped
		{nodeStateMsg{Name: "a", Version: 12, Labels: map[string]string{"r": "2"}}, applyResult{accepted: true, spread: true}, "r=2"},
		{nodeStateMsg{Name: "a", Version: 13, Labels: map[string]string{"r": "2"}, Leaving: true}, applyResult{accepted: true, spread: true}, "r=2"},
	}
	for i, s := range steps {
		if got := tbl.applyState(&s.st); got != s.want {
			t.Errorf("step %d: applyState = %+v, want %+v", i, got, s.want)
		}
		m, _ := tbl.member("a")
		if got := formatLabels(m.Labels); got != s.labels {
			t.Errorf("step %d: labels %q, want %q", i, got, s.labels)
		}
	}
	updates := 0
	for _, ev := range col.snapshot() {
		if ev.Type == EventUpdate {
			updates++
		}
	}
	// Subscription delivery is asynchronous; wait for both label changes.
	waitFor(t, time.Second, func() (bool, string) {
		updates = 0
		for _, ev := range col.snapshot() {
			if ev.Type == EventUpdate {
				updates++
			}
		}
		return updates == 2, "want 2 update events (label changes only)"
	})

	// A state about us that is newer than ours is refuted, not applied.
	tbl.nodeJoined("me", "1.1.1.1:2", meta(t, Meta{IDC: "dc1"}))
	local := tbl.updateLocal(func(st *nodeStateMsg) { st.Labels = map[string]string{"mine": "1"} })
	if got := tbl.applyState(&nodeStateMsg{Name: "me", Version: local.Version + 100, Labels: map[string]string{"theirs": "1"}}); !got.refute {
		t.Errorf("newer state about us: %+v, want refute", got)
	}
	next := tbl.updateLocal(func(*nodeStateMsg) {})
	if next.Version <= local.Version+100 || next.Labels["mine"] != "1" {
		t.Errorf("after refute our state is %+v", next)
	}
}

func TestTableLeftVersusFailed(t *testing.T) {
	tbl, col, now := newTestTable(t)
	for _, n := range []string{"me", "crash", "quit", "late"} {
		tbl.nodeJoined(n, "addr", meta(t, Meta{ID: "p" + n, IDC: "dc1"}))
	}
	tbl.applyState(&nodeStateMsg{Name: "quit", Version: 1, Leaving: true})
	*now = now.Add(time.Second)
	tbl.nodeGone("crash")
	tbl.nodeGone("quit")
	tbl.nodeGone("late")
	// The leave intent of "late" arrives after memberlist declared it dead.
	tbl.applyState(&nodeStateMsg{Name: "late", Version: 1, Leaving: true})

	want := map[string]Status{"me": StatusAlive, "crash": StatusFailed, "quit": StatusLeft, "late": StatusLeft}
	for n, s := range want {
		m, ok := tbl.member(n)
		if !ok || m.Status != s {
			t.Errorf("%s: status %s, want %s", n, m.Status, s)
		}
	}
	if m, _ := tbl.member("crash"); !m.Since.Equal(*now) {
		t.Errorf("Since = %v, want %v", m.Since, *now)
	}
	if tbl.numLive() != 1 || tbl.othersLive() {
		t.Errorf("numLive = %d, othersLive = %v", tbl.numLive(), tbl.othersLive())
	}
	waitFor(t, time.Second, func() (bool, string) {
		return col.has(EventFail, "crash") && col.has(EventLeave, "quit") && col.has(EventFail, "late") && col.has(EventLeave, "late"),
			"missing events"
	})

	// Coming back clears the leaving flag: the next failure is a failure.
	tbl.nodeJoined("quit", "addr", meta(t, Meta{ID: "pquit", IDC: "dc1"}))
	tbl.nodeGone("quit")
	if m, _ := tbl.member("quit"); m.Status != StatusFailed {
		t.Errorf("rejoined node that crashed: %s", m.Status)
	}

	// Dead members are listed until the tombstone expires.
	if len(tbl.members()) != 4 {
		t.Fatalf("members() = %d", len(tbl.members()))
	}
	tbl.applyState(&nodeStateMsg{Name: "stray", Version: 1}) // never reported by memberlist
	if len(tbl.members()) != 4 {
		t.Error("a node memberlist never reported is listed")
	}
	*now = now.Add(time.Hour)
	tbl.prune(30 * time.Minute)
	if got := tbl.members(); len(got) != 1 || got[0].Name != "me" {
		t.Errorf("after prune: %v", got)
	}
	if _, ok := tbl.entries["stray"]; ok {
		t.Error("stray state not pruned")
	}
}

func TestTablePeerIDPrefersLive(t *testing.T) {
	tbl, _, now := newTestTable(t)
	tbl.nodeJoined("old-name", "a", meta(t, Meta{ID: "p1", IDC: "dc1"}))
	tbl.nodeGone("old-name")
	*now = now.Add(time.Second)
	tbl.nodeJoined("new-name", "a", meta(t, Meta{ID: "p1", IDC: "dc1"}))
	if m, ok := tbl.memberByPeerID("p1"); !ok || m.Name != "new-name" {
		t.Errorf("memberByPeerID = %s, %v", m.Name, ok)
	}
	tbl.nodeJoined("x", "a", []byte("garbage"))
	if m, ok := tbl.member("x"); !ok || m.Meta.ID != "" {
		t.Errorf("garbage meta: %+v %v", m, ok)
	}
	if _, ok := tbl.memberByPeerID(""); ok {
		t.Error("empty peer ID matched")
	}
}

func TestTablePeerIDIndex(t *testing.T) {
	tbl, _, now := newTestTable(t)
	tbl.nodeJoined("a", "1", meta(t, Meta{ID: "p1", IDC: "dc1"}))
	tbl.nodeJoined("b", "2", meta(t, Meta{ID: "p2", IDC: "dc1"}))
	// a restarts with a new identity: p1 no longer names anyone.
	tbl.nodeUpdated("a", "1", meta(t, Meta{ID: "p3", IDC: "dc1"}))
	if m, ok := tbl.memberByPeerID("p1"); ok {
		t.Errorf("p1 still names %s", m.Name)
	}
	if m, ok := tbl.memberByPeerID("p3"); !ok || m.Name != "a" {
		t.Errorf("memberByPeerID(p3) = %s, %v", m.Name, ok)
	}
	// A pruned member is gone from the index too.
	tbl.nodeGone("b")
	*now = now.Add(time.Hour)
	tbl.prune(time.Minute)
	if m, ok := tbl.memberByPeerID("p2"); ok {
		t.Errorf("pruned p2 still names %s", m.Name)
	}
	if len(tbl.byID) != 1 || len(tbl.sorted) != 1 {
		t.Errorf("after prune: %d peer IDs and %d entries indexed, want 1 and 1", len(tbl.byID), len(tbl.sorted))
	}
	if got := names(tbl.members()); got != "a" {
		t.Errorf("members after prune = %s, want a", got)
	}
}

// The role index follows role changes both ways and prunes.
func TestTableRoledIndex(t *testing.T) {
	tbl, _, now := newTestTable(t)
	roled := func() string {
		var out []string
		tbl.rangeRoled(func(m *Member) bool {
			out = append(out, m.Name+"="+strings.Join(m.Meta.Roles, "+"))
			return true
		})
		return strings.Join(out, ",")
	}
	tbl.nodeJoined("c", "3", meta(t, Meta{ID: "p3", IDC: "dc1", Roles: []string{"voter"}}))
	tbl.nodeJoined("b", "2", meta(t, Meta{ID: "p2", IDC: "dc1"}))
	tbl.nodeJoined("a", "1", meta(t, Meta{ID: "p1", IDC: "dc1", Roles: []string{"leader"}}))
	steps := []struct {
		name string
		do   func()
		want string
	}{
		{"joined", func() {}, "a=leader,c=voter"},
		{"role gained", func() { tbl.nodeUpdated("b", "2", meta(t, Meta{ID: "p2", IDC: "dc1", Roles: []string{"nonvoter"}})) }, "a=leader,b=nonvoter,c=voter"},
		{"role changed", func() { tbl.nodeUpdated("b", "2", meta(t, Meta{ID: "p2", IDC: "dc1", Roles: []string{"voter"}})) }, "a=leader,b=voter,c=voter"},
		{"role dropped", func() { tbl.nodeUpdated("a", "1", meta(t, Meta{ID: "p1", IDC: "dc1"})) }, "b=voter,c=voter"},
		{"pruned", func() {
			tbl.nodeGone("c")
			*now = now.Add(time.Hour)
			tbl.prune(time.Minute)
		}, "b=voter"},
	}
	for _, st := range steps {
		st.do()
		if got := roled(); got != st.want {
			t.Errorf("%s: roled = %s, want %s", st.name, got, st.want)
		}
	}
}

func names(ms []Member) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return strings.Join(out, ",")
}

func TestTableFrozen(t *testing.T) {
	tbl, _, _ := newTestTable(t)
	tbl.nodeJoined("a", "addr", nil)
	tbl.freeze()
	tbl.nodeGone("a")
	if m, _ := tbl.member("a"); m.Status != StatusAlive {
		t.Error("a frozen table changed")
	}
}

func TestSubscriptionNeverDrops(t *testing.T) {
	hub := newEventHub()
	s := hub.subscribe()
	const n = 10000
	for i := range n {
		hub.publish(Event{Type: EventUser, User: &UserEvent{LTime: uint64(i)}})
	}
	for i := range n {
		ev := <-s.C
		if ev.User.LTime != uint64(i) {
			t.Fatalf("event %d has ltime %d: out of order or lost", i, ev.User.LTime)
		}
	}
	s.Close()
	s.Close() // idempotent
	if _, ok := <-s.C; ok {
		t.Error("C not closed after Close")
	}
	hub.publish(Event{Type: EventJoin}) // to nobody; must not block
	hub.close()
	if _, ok := <-hub.subscribe().C; ok {
		t.Error("subscription on a closed hub delivered")
	}
}
