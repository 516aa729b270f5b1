package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/herd-io/herd/mesh"
)

// Timing of raft configuration changes and of the group's own chores.
const (
	// changeTimeout bounds enqueueing a raft configuration change; once
	// enqueued, a change waits for its commit or for leadership to end.
	changeTimeout = 10 * time.Second
	// minTick is the shortest reconcile period.
	minTick = 20 * time.Millisecond
)

// Group is this node's part in its IDC's self-organizing control group.
// The nodes of an IDC bootstrap one raft cluster among themselves (see
// bootstrap.go); afterwards the leader's autopilot keeps ControlSize voters
// (autopilot.go); and every node advertises its current role in gossip.
// All methods are safe for concurrent use.
type Group struct {
	cfg     GroupConfig
	log     *slog.Logger
	raftDir string
	boot    bootstrapper

	ctx    context.Context // cancelled by stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // run loop and bootstrap rounds
	kickCh chan struct{}  // cap 1: "reconcile now"

	// lifeMu serialises opening and closing raft with Start, Leave and
	// Shutdown, so that at most one raft instance (and one raft protocol
	// handler) exists at a time.
	lifeMu sync.Mutex

	mu       sync.RWMutex
	started  bool
	stopping bool
	cur      *member         // open raft; nil while not a member
	hasState bool            // raft state on disk (a restart must not bootstrap)
	waiting  string          // Status().Waiting
	health   map[string]bool // the autopilot's verdicts, while leader

	leaving atomic.Bool

	adv advertiser // puts the role into gossip
}

// member is one open raft instance and the goroutine watching it. A node
// removed and later re-invited gets a new member.
type member struct {
	r        *Raft
	openedAt time.Time
	sawSelf  atomic.Bool // this node has been in the configuration since opening
	closing  atomic.Bool

	obsCh    chan raft.Observation
	observer *raft.Observer
	stop     chan struct{} // closed to end monitor
	done     chan struct{} // closed when monitor has returned

	sessMu sync.Mutex
	sess   *routines // leader-only routines of the current term
}

// NewGroup validates cfg. Nothing runs until Start.
func NewGroup(cfg GroupConfig) (*Group, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	g := &Group{
		cfg:     c,
		log:     c.Logger,
		raftDir: filepath.Join(c.DataDir, "raft"),
		kickCh:  make(chan struct{}, 1),
	}
	g.adv.init()
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g, nil
}

// Start registers the control RPCs and starts the group. With raft state on
// disk (a restart) raft opens at once and rejoins its cluster; otherwise the
// node watches the mesh to bootstrap or to be invited.
func (g *Group) Start() error {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	g.mu.Lock()
	if g.started || g.stopping {
		g.mu.Unlock()
		return errors.New("consensus: group already started")
	}
	g.started = true
	g.mu.Unlock()

	has, err := raftStateExists(g.raftDir)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.hasState = has
	g.mu.Unlock()

	g.registerHandlers()
	if has {
		if err := g.openRaftLocked(nil, "restart with raft state on disk"); err != nil {
			return err
		}
	}
	g.wg.Add(2)
	go func() {
		defer g.wg.Done()
		g.run()
	}()
	go func() {
		defer g.wg.Done()
		g.advertise()
	}()
	return nil
}

// Leave leaves the group gracefully: a leader first hands leadership to
// another voter, then the node asks the leader to remove it (retrying
// until a leader answers or ctx ends), then raft stops. The last voter of
// a group keeps its configuration. The group cannot be restarted.
func (g *Group) Leave(ctx context.Context) error {
	g.leaving.Store(true)
	var err error
	if m := g.current(); m != nil {
		err = g.leaveRaft(ctx, m)
	}
	err = errors.Join(err, g.stop(true))
	// Our roles must not outlive our membership in gossip.
	if uerr := g.cfg.Mesh.UpdateMeta(func(m *mesh.Meta) { m.Roles = withRoles(m.Roles, nil) }); uerr != nil {
		g.log.Debug("could not clear control roles", "err", uerr)
	}
	return err
}

// Shutdown stops the group without handing anything over, as a crash
// would; peers see the server fail. It is idempotent.
func (g *Group) Shutdown() error { return g.stop(false) }

// stop ends the run loop and closes raft.
func (g *Group) stop(snapshot bool) error {
	g.mu.Lock()
	g.stopping = true
	g.mu.Unlock()
	g.cancel()
	g.wg.Wait()
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	return g.closeRaftLocked("group stopped", snapshot)
}

// Raft returns the raft server, or nil while raft is closed (a plain
// node). A node invited but not yet added has raft open without being in
// its configuration: Status().Member tells.
func (g *Group) Raft() *raft.Raft {
	if m := g.current(); m != nil {
		return m.r.raft
	}
	return nil
}

// IsLeader reports whether this node is the raft leader.
func (g *Group) IsLeader() bool {
	m := g.current()
	return m != nil && m.r.raft.State() == raft.Leader
}

// LeaderName returns the leader's node name: raft's view on a member, the
// gossip roles on any other node; "" when unknown.
func (g *Group) LeaderName() string {
	if m := g.current(); m != nil {
		_, id := m.r.raft.LeaderWithID()
		return string(id)
	}
	return g.gossipLeader()
}

// GroupStatus describes this node's view of the control group.
type GroupStatus struct {
	IDC string `json:"idc"`
	// Member: raft is open and this node is in its configuration.
	Member bool `json:"member"`
	// Role is leader, voter, nonvoter or none.
	Role   string `json:"role"`
	Leader string `json:"leader,omitempty"`
	Term   uint64 `json:"term,omitempty"`

	CommitIndex  uint64 `json:"commit_index,omitempty"`
	AppliedIndex uint64 `json:"applied_index,omitempty"`
	LastIndex    uint64 `json:"last_index,omitempty"`
	// LastContact is the time since the leader was last heard from; zero
	// on the leader and when never.
	LastContact time.Duration `json:"last_contact,omitempty"`

	Servers []ServerStatus `json:"servers,omitempty"`
	// Waiting explains why the IDC has no control group yet, e.g.
	// "waiting for 2 more alive nodes in IDC dc1: have 1, control-size 3";
	// empty once a group exists.
	Waiting     string `json:"waiting,omitempty"`
	ControlSize int    `json:"control_size"`
}

// ServerStatus is one server of the raft configuration.
type ServerStatus struct {
	Name     string `json:"name"`
	PeerID   string `json:"peer_id"`
	Suffrage string `json:"suffrage"` // voter or nonvoter
	// Healthy is the autopilot's verdict on the leader (alive, current term,
	// caught up, in recent contact); elsewhere: alive in gossip.
	Healthy bool   `json:"healthy"`
	Zone    string `json:"zone,omitempty"`
}

// Status returns this node's view of the group.
func (g *Group) Status() GroupStatus {
	g.mu.RLock()
	st := GroupStatus{IDC: g.cfg.IDC, Role: RoleNone, Waiting: g.waiting, ControlSize: g.cfg.ControlSize}
	m := g.cur
	health := g.health
	g.mu.RUnlock()
	if m == nil {
		return st
	}
	r := m.r.raft
	_, leader := r.LeaderWithID()
	st.Leader = string(leader)
	st.Term = r.CurrentTerm()
	st.CommitIndex, st.AppliedIndex, st.LastIndex = r.CommitIndex(), r.AppliedIndex(), r.LastIndex()
	if r.State() != raft.Leader {
		if lc := r.LastContact(); !lc.IsZero() {
			st.LastContact = time.Since(lc)
		}
	}
	st.Role = roleOf(m)
	st.Member = st.Role != RoleNone
	conf := latestConfiguration(r)
	for _, s := range conf.Servers {
		ss := ServerStatus{Name: string(s.ID), PeerID: string(s.Address), Suffrage: RoleNonvoter}
		if s.Suffrage == raft.Voter {
			ss.Suffrage = RoleVoter
		}
		mem, ok := g.cfg.Mesh.Member(ss.Name)
		if ok {
			ss.Zone = mem.Meta.Zone
		}
		if v, known := health[ss.Name]; known {
			ss.Healthy = v
		} else {
			ss.Healthy = ok && isLive(mem.Status)
		}
		st.Servers = append(st.Servers, ss)
	}
	return st
}

// current returns the open raft instance, if any.
func (g *Group) current() *member {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.cur
}

func (g *Group) isStopping() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.stopping
}

func (g *Group) setWaiting(s string) {
	g.mu.Lock()
	g.waiting = s
	g.mu.Unlock()
}

func (g *Group) setHealth(h map[string]bool) {
	g.mu.Lock()
	g.health = h
	g.mu.Unlock()
}

// kick asks the run loop to reconcile now.
func (g *Group) kick() {
	select {
	case g.kickCh <- struct{}{}:
	default:
	}
}

// resolve maps a peer ID to its gossiped libp2p address.
func (g *Group) resolve(peerID string) (string, bool) {
	mem, ok := g.cfg.Mesh.MemberByPeerID(peerID)
	if !ok || mem.Meta.P2P == "" {
		return "", false
	}
	return mem.Meta.P2P, true
}

// openRaftLocked opens raft, bootstrapping it with conf if given, and
// starts watching it. The caller holds lifeMu and checked g.cur == nil.
func (g *Group) openRaftLocked(conf *raft.Configuration, why string) error {
	r, err := OpenRaft(RaftConfig{
		Dir:         g.raftDir,
		ID:          g.cfg.Name,
		Host:        g.cfg.Host,
		Resolve:     g.resolve,
		FSM:         g.cfg.FSM,
		Logger:      g.log,
		RaftTimings: g.cfg.Raft,
	})
	if err != nil {
		return err
	}
	if conf != nil {
		if err := r.raft.BootstrapCluster(*conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			_ = r.Shutdown()
			return fmt.Errorf("consensus: bootstrap: %w", err)
		}
	}
	m := &member{
		r:        r,
		openedAt: time.Now(),
		obsCh:    make(chan raft.Observation, 16),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	m.observer = raft.NewObserver(m.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.PeerObservation:
			return true
		}
		return false
	})
	r.raft.RegisterObserver(m.observer)
	g.mu.Lock()
	g.cur = m
	g.hasState = g.hasState || r.existing || conf != nil
	g.mu.Unlock()
	go g.monitor(m)
	g.log.Info("raft opened", "reason", why, "existing_state", r.existing)
	g.kick()
	return nil
}

// closeRaftLocked stops leader routines and raft. With snapshot, raft
// first snapshots the FSM, so that a later reopen in this process restores
// the snapshot instead of re-applying the log onto the live FSM. The
// caller holds lifeMu.
func (g *Group) closeRaftLocked(why string, snapshot bool) error {
	g.mu.RLock()
	m := g.cur
	g.mu.RUnlock()
	if m == nil {
		return nil
	}
	m.closing.Store(true)
	m.cancelLeadership()
	if snapshot {
		if err := m.r.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			g.log.Warn("snapshot before closing raft failed", "err", err)
		}
	}
	m.r.raft.DeregisterObserver(m.observer)
	err := m.r.Shutdown()
	close(m.stop)
	<-m.done
	has, serr := raftStateExists(g.raftDir)
	g.mu.Lock()
	g.cur = nil
	g.health = nil
	g.hasState = has || serr != nil // unreadable state is never bootstrapped over
	g.mu.Unlock()
	g.log.Info("raft closed", "reason", why)
	g.kick()
	if err != nil {
		return fmt.Errorf("consensus: close raft: %w", err)
	}
	return nil
}

// run reconciles on every tick and kick until the group stops. It does
// not follow mesh events one by one: in a large IDC health updates arrive
// by the hundred per second, and a tick of at most BootstrapStable/4 is
// prompt enough for everything that depends on gossip. A plain node of an
// IDC whose group exists only looks for changes every AutopilotInterval
// (bootstrapStep), so it sleeps that long: an invitation, a bootstrap
// request and its own raft opening kick it awake.
func (g *Group) run() {
	tick := max(min(g.cfg.AutopilotInterval, g.cfg.BootstrapStable/4), minTick)
	t := time.NewTimer(tick)
	defer t.Stop()
	for {
		g.reconcile()
		wait := tick
		if now := time.Now(); g.current() == nil && g.boot.activePromise(now) == nil && !g.boot.groupSeen.IsZero() {
			wait = max(g.boot.groupSeen.Add(g.cfg.AutopilotInterval).Sub(now), tick)
		}
		t.Reset(wait)
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		case <-g.kickCh:
		}
	}
}

// reconcile brings the node's part in line with what it observes:
// bootstrap while there is no group, close an orphaned raft, advertise
// the current role.
func (g *Group) reconcile() {
	now := time.Now()
	m := g.current()
	if m == nil {
		g.mu.RLock()
		has := g.hasState
		g.mu.RUnlock()
		if has || g.leaving.Load() {
			g.setWaiting("")
		} else {
			g.bootstrapStep(now)
		}
	} else {
		g.setWaiting("")
		if why := g.orphaned(m, now); why != "" {
			g.lifeMu.Lock()
			if g.current() == m && !g.isStopping() {
				if err := g.closeRaftLocked(why, true); err != nil {
					g.log.Warn("closing raft", "err", err)
				}
			}
			g.lifeMu.Unlock()
			m = nil
		}
	}
	g.adv.want(rolesFor(roleOf(m)))
}

// orphanTimeout is how long an open raft may go without being in the
// configuration (or without hearing from a leader that others see) before
// the node closes it.
func (g *Group) orphanTimeout() time.Duration {
	return max(g.cfg.DeadServerTimeout, 10*g.cfg.AutopilotInterval, 10*g.cfg.Raft.ElectionTimeout)
}

// orphaned says why m should be closed, or "". A server learns of its own
// removal from the configuration entry; one invited but never added, or
// one removed while it was down (its log still lists it, but no leader
// talks to it while gossip shows a leader), gives up after orphanTimeout.
// A server closed by mistake is invited again by the leader.
func (g *Group) orphaned(m *member, now time.Time) string {
	r := m.r.raft
	if r.State() == raft.Shutdown {
		return "raft shut down"
	}
	conf := latestConfiguration(r)
	if _, in := findServer(conf, g.cfg.Name); in {
		m.sawSelf.Store(true)
		if r.State() == raft.Leader {
			return ""
		}
		last := r.LastContact()
		if last.Before(m.openedAt) {
			last = m.openedAt
		}
		if now.Sub(last) > g.orphanTimeout() {
			if other := g.gossipLeader(); other != "" && other != g.cfg.Name {
				return fmt.Sprintf("no contact from a leader for %s while %s advertises leadership", now.Sub(last).Round(time.Millisecond), other)
			}
		}
		return ""
	}
	if m.sawSelf.Load() {
		return "removed from the configuration"
	}
	if now.Sub(m.openedAt) > g.orphanTimeout() {
		return fmt.Sprintf("not added to the configuration within %s", g.orphanTimeout())
	}
	return ""
}

// gossipLeader returns the name of a live member advertising RoleLeader.
// Every call to the leader from a node outside the group asks, so it
// ranges over the role index, not the pool.
func (g *Group) gossipLeader() (name string) {
	g.cfg.Mesh.RangeRoled(func(mem *mesh.Member) bool {
		if isLive(mem.Status) && slices.Contains(mem.Meta.Roles, RoleLeader) {
			name = mem.Name
			return false
		}
		return true
	})
	return name
}

// latestConfiguration returns raft's latest (possibly uncommitted)
// configuration; it never blocks on the raft loop.
func latestConfiguration(r *raft.Raft) raft.Configuration {
	f := r.GetConfiguration()
	if f.Error() != nil {
		return raft.Configuration{}
	}
	return f.Configuration()
}

// findServer looks a server up by ID (node name).
func findServer(c raft.Configuration, name string) (raft.Server, bool) {
	for _, s := range c.Servers {
		if string(s.ID) == name {
			return s, true
		}
	}
	return raft.Server{}, false
}

func isLive(s mesh.Status) bool { return s == mesh.StatusAlive || s == mesh.StatusSuspect }

// callTimeout bounds one control RPC.
func (g *Group) callTimeout() time.Duration {
	return max(2*g.cfg.AutopilotInterval, time.Second)
}
