package mesh

import (
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Status is a member's liveness as this node sees it.
type Status string

// Member statuses. memberlist v0.7.0 reports no event when it suspects a
// node, so the mesh never reports StatusSuspect today; the status exists so
// callers already treat a suspect member as alive (IsAlivePeer does).
const (
	StatusAlive   Status = "alive"
	StatusSuspect Status = "suspect"
	StatusFailed  Status = "failed"
	StatusLeft    Status = "left"
)

// Member is one node of the pool as this node sees it. A Member is a value:
// the maps and slices inside are shared and must not be mutated.
type Member struct {
	Name   string            `json:"name"`
	Addr   string            `json:"addr"` // gossip ip:port
	Meta   Meta              `json:"meta"`
	Status Status            `json:"status"`
	Labels map[string]string `json:"labels,omitempty"` // never mutate a returned map
	Health Health            `json:"health"`
	Since  time.Time         `json:"since"` // when Status last changed, as observed locally
}

// Attributes returns what selectors match: the member's labels plus the
// built-ins name, idc, zone, status and version (zone and version only when
// set). The result is a fresh map the caller may keep.
func (m Member) Attributes() map[string]string {
	out := make(map[string]string, len(m.Labels)+5)
	maps.Copy(out, m.Labels)
	out["name"] = m.Name
	out["idc"] = m.Meta.IDC
	out["status"] = string(m.Status)
	if m.Meta.Zone != "" {
		out["zone"] = m.Meta.Zone
	}
	if m.Meta.Version != "" {
		out["version"] = m.Meta.Version
	}
	return out
}

// entry is the table's record of one node.
type entry struct {
	m Member
	// present: memberlist has reported the node (a join). Node states can
	// arrive by gossip before that; such entries are kept but not listed.
	present  bool
	version  uint64 // highest node-state version applied
	hasState bool
	leaving  bool      // the node announced Leave
	touched  time.Time // last change, for forgetting entries never listed
}

// memberTable is the node's view of the pool: memberlist's membership
// merged with the gossiped node states. Every change that callers can see
// publishes its event while the lock is held, so subscribers see events in
// the order the table changed.
type memberTable struct {
	self   string
	events *eventHub
	log    *slog.Logger
	now    func() time.Time

	mu      sync.RWMutex
	entries map[string]*entry
	// sorted holds the entries in name order, so that listing the members
	// (Members, several times a second by several parts of a node) copies
	// them without sorting a thousand large structs each time.
	sorted []*entry
	// byID indexes entries by Meta.ID: the connection gater looks a peer
	// up on every connection and every inbound stream. Usually one entry
	// per ID; a renamed node's old record shares it until pruned.
	byID map[string][]*entry
	// roled holds, in name order, the entries whose meta carries a role:
	// a handful in any pool. A node that only needs to know who holds a
	// role (every node of an IDC, looking for its control group) ranges
	// over these instead of the whole pool.
	roled  []*entry
	frozen bool // after Shutdown: late memberlist callbacks are ignored

	live atomic.Int64 // present members that are alive or suspect
}

func newMemberTable(self string, events *eventHub, log *slog.Logger) *memberTable {
	return &memberTable{
		self:    self,
		events:  events,
		log:     log,
		now:     time.Now,
		entries: make(map[string]*entry),
		byID:    make(map[string][]*entry),
	}
}

// numLive is memberlist's NumNodes for our broadcast queue. It must not
// take the table lock: memberlist calls it with its queue locked.
func (t *memberTable) numLive() int {
	if n := int(t.live.Load()); n > 0 {
		return n
	}
	return 1
}

func isLive(s Status) bool { return s == StatusAlive || s == StatusSuspect }

func (e *entry) counts() bool { return e.present && isLive(e.m.Status) }

// changeLocked applies fn to e and keeps the live count in step; a recount
// on every event would cost O(N) per event, O(N²) while a pool forms.
func (t *memberTable) changeLocked(e *entry, fn func()) {
	before := e.counts()
	fn()
	switch after := e.counts(); {
	case after && !before:
		t.live.Add(1)
	case before && !after:
		t.live.Add(-1)
	}
}

func (t *memberTable) getLocked(name string) *entry {
	e, ok := t.entries[name]
	if !ok {
		e = &entry{m: Member{Name: name}}
		t.entries[name] = e
		i, _ := slices.BinarySearchFunc(t.sorted, name, byName)
		t.sorted = slices.Insert(t.sorted, i, e)
	}
	return e
}

func (t *memberTable) setStatusLocked(e *entry, s Status) {
	if e.m.Status != s {
		e.m.Status = s
		e.m.Since = t.now()
	}
}

func (t *memberTable) decodeMetaLocked(e *entry, raw []byte) {
	meta, err := DecodeMeta(raw)
	if err != nil {
		t.log.Warn("ignoring unreadable node meta", "node", e.m.Name, "err", err)
		return
	}
	if meta.ID != e.m.Meta.ID {
		t.unindexLocked(e)
		if meta.ID != "" {
			t.byID[meta.ID] = append(t.byID[meta.ID], e)
		}
	}
	if had, has := len(e.m.Meta.Roles) > 0, len(meta.Roles) > 0; had != has {
		i, found := slices.BinarySearchFunc(t.roled, e.m.Name, byName)
		switch {
		case has && !found:
			t.roled = slices.Insert(t.roled, i, e)
		case !has && found:
			t.roled = slices.Delete(t.roled, i, i+1)
		}
	}
	e.m.Meta = meta
}

func byName(x *entry, name string) int { return strings.Compare(x.m.Name, name) }

// unindexLocked removes e from byID under its current Meta.ID.
func (t *memberTable) unindexLocked(e *entry) {
	id := e.m.Meta.ID
	if id == "" {
		return
	}
	if rest := slices.DeleteFunc(t.byID[id], func(x *entry) bool { return x == e }); len(rest) > 0 {
		t.byID[id] = rest
	} else {
		delete(t.byID, id)
	}
}

// nodeJoined records memberlist's NotifyJoin.
func (t *memberTable) nodeJoined(name, addr string, meta []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.frozen {
		return
	}
	e := t.getLocked(name)
	e.m.Addr = addr
	t.decodeMetaLocked(e, meta)
	e.leaving = false // a node that is back is not leaving any more
	e.touched = t.now()
	t.changeLocked(e, func() {
		e.present = true
		t.setStatusLocked(e, StatusAlive)
	})
	t.events.publish(Event{Type: EventJoin, Member: e.m})
}

// nodeUpdated records memberlist's NotifyUpdate (meta or address change).
func (t *memberTable) nodeUpdated(name, addr string, meta []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.frozen {
		return
	}
	e := t.getLocked(name)
	e.m.Addr = addr
	t.decodeMetaLocked(e, meta)
	e.touched = t.now()
	if !e.present {
		// memberlist only updates nodes it knows; treat it as a join.
		t.changeLocked(e, func() {
			e.present = true
			t.setStatusLocked(e, StatusAlive)
		})
		t.events.publish(Event{Type: EventJoin, Member: e.m})
		return
	}
	t.events.publish(Event{Type: EventUpdate, Member: e.m})
}

// nodeGone records memberlist's NotifyLeave: the node left if it announced
// so in its node state, and failed otherwise.
func (t *memberTable) nodeGone(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.frozen {
		return
	}
	e, ok := t.entries[name]
	if !ok || !e.present {
		return
	}
	e.touched = t.now()
	ev := EventFail
	st := StatusFailed
	if e.leaving {
		ev, st = EventLeave, StatusLeft
	}
	t.changeLocked(e, func() { t.setStatusLocked(e, st) })
	t.events.publish(Event{Type: ev, Member: e.m})
}

// applyResult tells the caller what to do after applyState.
type applyResult struct {
	accepted bool // newer than what we had
	spread   bool // worth re-gossiping: first state, new labels or leaving news
	refute   bool // a state about us newer than ours: re-announce our own
}

// applyState merges a remote node state, keeping the highest version.
func (t *memberTable) applyState(st *nodeStateMsg) applyResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.frozen {
		return applyResult{}
	}
	e := t.getLocked(st.Name)
	if st.Version <= e.version {
		return applyResult{}
	}
	if st.Name == t.self {
		// Gossip from our previous run, or a forgery: our own state is
		// authoritative, so jump past it and re-announce.
		e.version = st.Version
		return applyResult{refute: true}
	}
	first := !e.hasState
	labelsChanged := !maps.Equal(e.m.Labels, st.Labels)
	leavingChanged := e.leaving != st.Leaving
	e.version = st.Version
	e.hasState = true
	e.m.Labels = st.Labels
	e.m.Health = st.Health
	e.leaving = st.Leaving
	e.touched = t.now()
	if e.present {
		if st.Leaving && e.m.Status == StatusFailed {
			// The leave intent lost the race with memberlist's dead
			// message: correct the record.
			t.setStatusLocked(e, StatusLeft)
			t.events.publish(Event{Type: EventLeave, Member: e.m})
		} else if labelsChanged {
			t.events.publish(Event{Type: EventUpdate, Member: e.m})
		}
	}
	return applyResult{accepted: true, spread: first || labelsChanged || leavingChanged}
}

// updateLocal changes our own node state with fn, stamps a new version and
// returns the state to gossip.
func (t *memberTable) updateLocal(fn func(*nodeStateMsg)) nodeStateMsg {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.getLocked(t.self)
	st := nodeStateMsg{Name: t.self, Labels: e.m.Labels, Health: e.m.Health, Leaving: e.leaving}
	fn(&st)
	st.Version = max(e.version+1, uint64(t.now().UnixNano()))
	labelsChanged := !maps.Equal(e.m.Labels, st.Labels)
	e.version = st.Version
	e.hasState = true
	e.m.Labels = st.Labels
	e.m.Health = st.Health
	e.leaving = st.Leaving
	if e.present && labelsChanged && !t.frozen {
		t.events.publish(Event{Type: EventUpdate, Member: e.m})
	}
	return st
}

// liveStates returns the states of every live member we know, for
// push/pull. Failed and left members are left out: a joiner never learns
// about them from memberlist either, and they would only come back to life
// in tables that already forgot them.
func (t *memberTable) liveStates() []nodeStateMsg {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]nodeStateMsg, 0, len(t.entries))
	for _, e := range t.entries {
		if e.hasState && e.present && isLive(e.m.Status) {
			out = append(out, nodeStateMsg{Name: e.m.Name, Version: e.version, Labels: e.m.Labels, Health: e.m.Health, Leaving: e.leaving})
		}
	}
	return out
}

// othersLive reports whether any member besides us is alive or suspect.
func (t *memberTable) othersLive() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for name, e := range t.entries {
		if name != t.self && e.present && isLive(e.m.Status) {
			return true
		}
	}
	return false
}

func (t *memberTable) members() []Member {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Member, 0, len(t.sorted))
	for _, e := range t.sorted {
		if e.present {
			out = append(out, e.m)
		}
	}
	return out
}

// rangeMembers calls fn for each listed member in name order, under the
// read lock, until fn returns false.
func (t *memberTable) rangeMembers(fn func(*Member) bool) { t.rangeIn(&t.sorted, fn) }

// rangeRoled is rangeMembers over the members whose meta carries a role.
func (t *memberTable) rangeRoled(fn func(*Member) bool) { t.rangeIn(&t.roled, fn) }

// rangeIn walks *list (read under the lock: the table replaces its slices).
func (t *memberTable) rangeIn(list *[]*entry, fn func(*Member) bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, e := range *list {
		if e.present && !fn(&e.m) {
			return
		}
	}
}

func (t *memberTable) member(name string) (Member, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.entries[name]
	if !ok || !e.present {
		return Member{}, false
	}
	return e.m, true
}

// memberByPeerID prefers a live member: after a rename, a failed record
// with the same peer ID may linger until its tombstone expires.
func (t *memberTable) memberByPeerID(id string) (Member, bool) {
	if id == "" {
		return Member{}, false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	var found *entry
	for _, e := range t.byID[id] {
		if !e.present {
			continue
		}
		if found == nil || isLive(e.m.Status) && !isLive(found.m.Status) ||
			isLive(e.m.Status) == isLive(found.m.Status) && e.m.Since.After(found.m.Since) {
			found = e
		}
	}
	if found == nil {
		return Member{}, false
	}
	return found.m, true
}

// prune forgets failed and left members, and states of nodes memberlist
// never reported, once they are older than ttl. It never forgets us.
func (t *memberTable) prune(ttl time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cutoff := t.now().Add(-ttl)
	for name, e := range t.entries {
		if name == t.self {
			continue
		}
		gone := e.present && !isLive(e.m.Status) && e.m.Since.Before(cutoff)
		stray := !e.present && e.touched.Before(cutoff)
		if gone || stray {
			delete(t.entries, name)
			t.unindexLocked(e)
		}
	}
	t.sorted = slices.DeleteFunc(t.sorted, func(e *entry) bool { return t.entries[e.m.Name] != e })
	t.roled = slices.DeleteFunc(t.roled, func(e *entry) bool { return t.entries[e.m.Name] != e })
}

// freeze makes the table ignore memberlist callbacks that fire after
// Shutdown (memberlist's suspicion timers outlive it).
func (t *memberTable) freeze() {
	t.mu.Lock()
	t.frozen = true
	t.mu.Unlock()
}
