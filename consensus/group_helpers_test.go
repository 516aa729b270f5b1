package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/herd-io/herd/consensus/state"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
)

// testLogger discards logs unless HERD_TEST_LOG is set ("debug" for all).
func testLogger(name string) *slog.Logger {
	switch os.Getenv("HERD_TEST_LOG") {
	case "":
		return slog.New(slog.DiscardHandler)
	case "debug":
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
	default:
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", name)
	}
}

// fastGroup tightens the group's timings for loopback tests.
func fastGroup(c *GroupConfig) {
	c.BootstrapStable = 300 * time.Millisecond
	c.DeadServerTimeout = 2 * time.Second
	c.StabilizationTime = 500 * time.Millisecond
	c.AutopilotInterval = 100 * time.Millisecond
	c.Raft = RaftTimings{
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		CommitTimeout:      10 * time.Millisecond,
	}
}

// fastGossip detects failures in about a second (as cluster.FastGossip).
func fastGossip(m *memberlist.Config) {
	m.ProbeInterval = 200 * time.Millisecond
	m.ProbeTimeout = 100 * time.Millisecond
	m.SuspicionMult = 2
	m.GossipInterval = 50 * time.Millisecond
	m.PushPullInterval = 2 * time.Second
	m.TCPTimeout = 2 * time.Second
}

// testNode is one node: libp2p host, gossip mesh and control group.
type testNode struct {
	name, zone, dir string
	// gossip is the mesh address, read once before anything can change the
	// local node: mesh.LocalAddr reads memberlist's node record without a
	// lock and races with UpdateMeta.
	gossip string
	host   *p2p.Host
	mesh   *mesh.Mesh
	fsm    *FSM
	group  *Group

	mu      sync.Mutex
	stopped bool
}

// nodeOpts shape a test node.
type nodeOpts struct {
	controlSize int
	zone        string
	seed        string // gossip address to join; "" for none
	tweak       func(*GroupConfig)
}

// startNode starts a node with its data in dir (the identity survives a
// restart from the same dir). It is killed in t.Cleanup.
func startNode(t testing.TB, name, dir string, o nodeOpts) *testNode {
	t.Helper()
	n, err := newTestNode(name, dir, o)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(n.kill)
	return n
}

func newTestNode(name, dir string, o nodeOpts) (*testNode, error) {
	log := testLogger(name)
	key, err := p2p.LoadOrCreateIdentity(dir)
	if err != nil {
		return nil, err
	}
	hc := p2p.DefaultConfig()
	hc.PrivKey = key
	hc.ListenAddr = "127.0.0.1:0"
	hc.Timeout = 5 * time.Second
	hc.Logger = log
	h, err := p2p.New(hc)
	if err != nil {
		return nil, err
	}
	mc := mesh.DefaultConfig()
	mc.Name = name
	mc.IDC = "dc1"
	mc.Zone = o.zone
	mc.BindAddr = "127.0.0.1"
	mc.BindPort = 0
	mc.Dev = true
	mc.HealthInterval = 500 * time.Millisecond
	mc.DataDir = dir
	mc.Logger = log
	mc.Memberlist = fastGossip
	mc.Meta = mesh.Meta{ID: h.ID().String(), P2P: h.Addr(), Version: "test"}
	m, err := mesh.New(mc)
	if err != nil {
		_ = h.Close()
		return nil, err
	}
	gossip := m.LocalAddr()
	h.SetAllow(func(id peer.ID) bool { return m.IsAlivePeer(id.String()) })
	fsm := NewFSM(mustStore(), log)
	gc := DefaultGroupConfig()
	gc.Name, gc.IDC, gc.Zone = name, "dc1", o.zone
	gc.ControlSize = o.controlSize
	gc.DataDir = dir
	gc.Mesh, gc.Host, gc.FSM = m, h, fsm
	gc.Logger = log
	fastGroup(gc)
	if o.tweak != nil {
		o.tweak(gc)
	}
	g, err := NewGroup(*gc)
	if err == nil {
		err = g.Start()
	}
	if err != nil {
		_ = m.Shutdown()
		_ = h.Close()
		return nil, err
	}
	n := &testNode{name: name, zone: o.zone, dir: dir, gossip: gossip, host: h, mesh: m, fsm: fsm, group: g}
	if o.seed != "" {
		if _, err := m.Join([]string{o.seed}); err != nil {
			n.kill()
			return nil, err
		}
	}
	return n, nil
}

func mustStore() *state.Store {
	s, err := state.NewStore()
	if err != nil {
		panic(err)
	}
	return s
}

// kill stops the node as a crash would (no leave). Idempotent.
func (n *testNode) kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return
	}
	n.stopped = true
	// A stop that hangs is a bug: crash with every goroutine's stack
	// rather than wait for the test timeout.
	watchdog := time.AfterFunc(30*time.Second, func() {
		buf := make([]byte, 8<<20)
		fmt.Fprintf(os.Stderr, "%s: stop hangs; goroutines:\n%s\n", n.name, buf[:runtime.Stack(buf, true)])
		panic(n.name + ": stop hangs for 30s")
	})
	defer watchdog.Stop()
	_ = n.group.Shutdown()
	_ = n.mesh.Shutdown()
	_ = n.host.Close()
}

// leave leaves the group and the mesh gracefully, then stops.
func (n *testNode) leave(ctx context.Context) error {
	err := n.group.Leave(ctx)
	_ = n.mesh.Leave(time.Second)
	n.kill()
	return err
}

func (n *testNode) isStopped() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stopped
}

// cluster is a set of test nodes of one IDC.
type cluster struct {
	t     testing.TB
	base  string
	nodes []*testNode
}

// startCluster starts n nodes at once (concurrently), all joining the
// first one's gossip. zones[i] is node i's zone if given.
func startCluster(t testing.TB, n int, controlSize int, zones []string, tweak func(*GroupConfig)) *cluster {
	t.Helper()
	c := &cluster{t: t, base: t.TempDir()}
	first := startNode(t, "node1", filepath.Join(c.base, "node1"), nodeOpts{controlSize: controlSize, zone: zoneOf(zones, 0), tweak: tweak})
	c.nodes = make([]*testNode, n)
	c.nodes[0] = first
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("node%d", i+1)
			c.nodes[i], errs[i] = newTestNode(name, filepath.Join(c.base, name),
				nodeOpts{controlSize: controlSize, zone: zoneOf(zones, i), seed: first.gossip, tweak: tweak})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start node%d: %v", i+1, err)
		}
		if i > 0 {
			t.Cleanup(c.nodes[i].kill)
		}
	}
	return c
}

func zoneOf(zones []string, i int) string {
	if i < len(zones) {
		return zones[i]
	}
	return ""
}

// running returns the nodes not stopped.
func (c *cluster) running() []*testNode {
	var out []*testNode
	for _, n := range c.nodes {
		if !n.isStopped() {
			out = append(out, n)
		}
	}
	return out
}

func (c *cluster) node(name string) *testNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %s", name)
	return nil
}

// waitFor polls cond every 20ms until it returns nil, failing the test
// with cond's last error after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", d, what, err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not synchronisation
	}
}

// leader returns the only running node that leads; an error if none or
// several do.
func (c *cluster) leader() (*testNode, error) {
	var leaders []*testNode
	for _, n := range c.running() {
		if n.group.IsLeader() {
			leaders = append(leaders, n)
		}
	}
	switch len(leaders) {
	case 1:
		return leaders[0], nil
	case 0:
		return nil, errors.New("no leader")
	default:
		return nil, fmt.Errorf("%d leaders", len(leaders))
	}
}

// converged checks that there is one leader whose configuration has
// exactly voters voters and no non-voters, that every server in it is a
// running node whose raft has the same configuration and follows that
// leader, and that no other running node is a raft member.
func (c *cluster) converged(voters int) (*testNode, error) {
	l, err := c.leader()
	if err != nil {
		return nil, err
	}
	conf := latestConfiguration(l.group.Raft())
	want := serverSet(conf)
	if nv := countVoters(conf); nv != voters || len(conf.Servers) != voters {
		return nil, fmt.Errorf("leader %s: %d voters of %d servers %v, want %d voters only", l.name, nv, len(conf.Servers), want, voters)
	}
	for _, n := range c.running() {
		_, in := findServer(conf, n.name)
		r := n.group.Raft()
		if !in {
			if r != nil {
				return nil, fmt.Errorf("%s is no server but has raft open", n.name)
			}
			if role := n.group.Status().Role; role != RoleNone {
				return nil, fmt.Errorf("%s is no server but has role %s", n.name, role)
			}
			continue
		}
		if r == nil {
			return nil, fmt.Errorf("%s is a server without raft", n.name)
		}
		if got := serverSet(latestConfiguration(r)); !slices.Equal(got, want) {
			return nil, fmt.Errorf("%s has configuration %v, leader %v", n.name, got, want)
		}
		if st := n.group.Status(); st.Leader != l.name {
			return nil, fmt.Errorf("%s follows %q, not %s", n.name, st.Leader, l.name)
		}
	}
	return l, nil
}

// waitConverged waits for converged(voters) and for every node's gossip
// view to show the right roles.
func (c *cluster) waitConverged(d time.Duration, voters int) *testNode {
	c.t.Helper()
	var l *testNode
	waitFor(c.t, d, "a converged control group", func() error {
		var err error
		if l, err = c.converged(voters); err != nil {
			return err
		}
		return c.rolesGossiped(l)
	})
	return l
}

// rolesGossiped checks every running node's gossip view of the roles.
func (c *cluster) rolesGossiped(l *testNode) error {
	conf := latestConfiguration(l.group.Raft())
	for _, viewer := range c.running() {
		for _, n := range c.running() {
			mem, ok := viewer.mesh.Member(n.name)
			if !ok {
				return fmt.Errorf("%s does not know %s", viewer.name, n.name)
			}
			var want []string
			if s, in := findServer(conf, n.name); in {
				want = []string{RoleVoter}
				if s.Suffrage != raft.Voter {
					want = []string{RoleNonvoter}
				}
				if n == l {
					want = []string{RoleLeader, RoleVoter}
				}
			}
			if !slices.Equal(mem.Meta.Roles, want) {
				return fmt.Errorf("%s sees %s with roles %v, want %v", viewer.name, n.name, mem.Meta.Roles, want)
			}
		}
	}
	return nil
}

// serverSet lists a configuration as sorted "name:suffrage" strings.
func serverSet(c raft.Configuration) []string {
	var out []string
	for _, s := range c.Servers {
		out = append(out, fmt.Sprintf("%s:%s", s.ID, s.Suffrage))
	}
	sort.Strings(out)
	return out
}

func countVoters(c raft.Configuration) int { return voters(c) }

// set writes key=value through raft on r.
func set(r *raft.Raft, key, value string) (*ApplyResult, error) {
	cmd, err := EncodeCommand(KVSetType, "", KVSetRequest{Scope: state.ScopeGlobal, Key: key, Value: []byte(value)})
	if err != nil {
		return nil, err
	}
	f := r.Apply(cmd, 2*time.Second)
	if err := f.Error(); err != nil {
		return nil, err
	}
	res, ok := f.Response().(*ApplyResult)
	if !ok {
		return nil, fmt.Errorf("response %T", f.Response())
	}
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

// mustSet writes through the current leader, retrying until it works.
func (c *cluster) mustSet(key, value string) *ApplyResult {
	c.t.Helper()
	var res *ApplyResult
	waitFor(c.t, 10*time.Second, "a write to "+key, func() error {
		l, err := c.leader()
		if err != nil {
			return err
		}
		res, err = set(l.group.Raft(), key, value)
		return err
	})
	return res
}

// get reads key from n's FSM.
func get(n *testNode, key string) (*state.KVEntry, error) {
	_, e, err := n.fsm.Store().KVGet(nil, state.ScopeGlobal, key)
	return e, err
}

// waitValue waits until every node in nodes has key at value and version.
func waitValue(t testing.TB, nodes []*testNode, key, value string, version uint64) {
	t.Helper()
	waitFor(t, 10*time.Second, key+" everywhere", func() error {
		for _, n := range nodes {
			e, err := get(n, key)
			if err != nil {
				return err
			}
			if e == nil || string(e.Value) != value || e.Version != version {
				return fmt.Errorf("%s has %s = %+v, want %q version %d", n.name, key, e, value, version)
			}
		}
		return nil
	})
}
