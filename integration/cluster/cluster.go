// Package cluster starts real herd nodes inside the test process, on
// loopback with ephemeral ports: the in-process harness every multi-node
// test builds on (after nomad's TestServer).
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/node"
	"github.com/herd-io/herd/node/api"
	"github.com/herd-io/herd/node/devmesh"
)

// Options shape an in-process cluster.
type Options struct {
	// IDCs spreads nodes round-robin over dc1..dcK. Default 1.
	IDCs int
	// Configure adjusts node i's config before it starts.
	Configure func(i int, cfg *node.Config)
	// Verbose sends agent logs to the test log instead of discarding them.
	Verbose bool
	// ControlSize is every node's --control-size. Default 1.
	ControlSize int
	// MaxNodes bounds how many nodes the cluster may ever have, so WAN
	// ports can be reserved up front. Default: the initial node count + 4.
	MaxNodes int
	// Gossip tunes every node's mesh (and WAN pool). Default FastGossip;
	// ScaleGossip suits hundreds of nodes sharing a few cores.
	Gossip func(*mesh.Config)
	// NoConverge makes New return once every node has started, without
	// waiting until every node sees every other: at hundreds of nodes in
	// one process full convergence takes minutes. Callers wait for what
	// they need (WaitAlive).
	NoConverge bool
	// StartWorkers is how many nodes New starts at once, after the first
	// node of each IDC. Default 1: one after the other.
	StartWorkers int
	// LeadFirst starts the other nodes only once the first node of each
	// IDC advertises a control role, so each of them learns the control
	// group from its join's push/pull: under QuietGossip a role change
	// can take a minute to reach the last of hundreds of nodes.
	LeadFirst bool
}

// Cluster is a set of running in-process nodes.
type Cluster struct {
	t      testing.TB
	opts   Options
	Token  string
	Key    []byte
	Agents []*node.Agent

	mu      sync.Mutex
	stopped map[int]bool
	wan     []string
}

// wanAddr returns node i's reserved WAN address.
func (c *Cluster) wanAddr(i int) string {
	if i < len(c.wan) {
		return c.wan[i]
	}
	return "127.0.0.1:0"
}

// wanAddrs lists every reserved WAN address: the seeds voters join.
func (c *Cluster) wanAddrs() []string { return c.wan }

// New starts n nodes and waits until every node sees its whole IDC alive.
// Everything stops in t.Cleanup.
func New(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if opts.IDCs == 0 {
		opts.IDCs = 1
	}
	if opts.ControlSize == 0 {
		opts.ControlSize = 1
	}
	if opts.Gossip == nil {
		opts.Gossip = FastGossip
	}
	if opts.MaxNodes < n {
		opts.MaxNodes = n + 4
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, opts: opts, Token: hex.EncodeToString(tok), Key: key, stopped: map[int]bool{}}
	if opts.IDCs > 1 {
		ports, err := devmesh.FreePorts(opts.MaxNodes)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			c.wan = append(c.wan, fmt.Sprintf("127.0.0.1:%d", p))
		}
	}
	t.Cleanup(c.stopAll)
	c.startNodes(n, opts.StartWorkers)
	if opts.NoConverge {
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+time.Duration(n)*100*time.Millisecond)
	defer cancel()
	if err := c.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// FastGossip tunes memberlist for loopback tests: failures are detected in
// about a second instead of LAN's several.
func FastGossip(mc *mesh.Config) {
	prev := mc.Memberlist
	mc.HealthInterval = 500 * time.Millisecond
	mc.Memberlist = func(m *memberlist.Config) {
		if prev != nil {
			prev(m)
		}
		m.ProbeInterval = 200 * time.Millisecond
		m.ProbeTimeout = 100 * time.Millisecond
		m.SuspicionMult = 2
		m.GossipInterval = 50 * time.Millisecond
		m.PushPullInterval = 2 * time.Second
		m.TCPTimeout = 2 * time.Second
	}
}

// ScaleGossip trades detection speed for CPU, as a pool of hundreds of
// nodes sharing 2 cores needs (mesh's BenchmarkConverge profile=scale):
// uncompressed gossip every 500ms, probes every 3s, generous suspicion,
// and health sampled once a minute instead of every half second.
func ScaleGossip(mc *mesh.Config) {
	prev := mc.Memberlist
	mc.HealthInterval = time.Minute
	mc.Memberlist = func(m *memberlist.Config) {
		if prev != nil {
			prev(m)
		}
		m.EnableCompression = false
		m.GossipInterval = 500 * time.Millisecond
		m.ProbeInterval = 3 * time.Second
		m.ProbeTimeout = 1500 * time.Millisecond
		m.SuspicionMult = 6
		m.PushPullInterval = time.Minute
		m.TCPTimeout = 10 * time.Second
	}
}

// QuietGossip is ScaleGossip with failure detection slowed to a crawl, for
// benchmarks of other parts at sizes where two cores cannot keep probing a
// thousand in-process nodes on time (probes then time out, and nodes flap
// between alive and dead while the benchmark waits for them).
func QuietGossip(mc *mesh.Config) {
	ScaleGossip(mc)
	mc.HealthInterval = 5 * time.Minute
	scale := mc.Memberlist
	mc.Memberlist = func(m *memberlist.Config) {
		scale(m)
		m.GossipInterval = time.Second
		m.ProbeInterval = 20 * time.Second
		m.ProbeTimeout = 10 * time.Second
		m.SuspicionMult = 8
		// A node wrongly declared dead learns it (and refutes) from gossip
		// to the dead or, failing that, from the next push/pull.
		m.GossipToTheDeadTime = 2 * time.Minute
		m.PushPullInterval = time.Minute
		// Every node that learns of another re-gossips it RetransmitMult ×
		// log10(N) times: at 1,000 nodes the default 4 keeps the shared
		// cores busy with a cold start's news for about ten minutes after
		// the last join. Once each reaches most nodes fast enough; push/pull
		// brings the rest.
		m.RetransmitMult = 1
	}
}

// FastControl tunes the control group for loopback tests: quick bootstrap,
// elections, promotion and dead-server removal.
func FastControl(g *consensus.GroupConfig) {
	g.BootstrapStable = 300 * time.Millisecond
	g.DeadServerTimeout = 2 * time.Second
	g.StabilizationTime = 500 * time.Millisecond
	g.AutopilotInterval = 200 * time.Millisecond
	g.Raft.HeartbeatTimeout = 300 * time.Millisecond
	g.Raft.ElectionTimeout = 300 * time.Millisecond
	g.Raft.LeaderLeaseTimeout = 150 * time.Millisecond
}

// StartNode starts one more node; it joins the first node of its IDC.
func (c *Cluster) StartNode() *node.Agent {
	c.t.Helper()
	a, err := c.startNode(len(c.Agents))
	if err != nil {
		c.t.Fatal(err)
	}
	c.Agents = append(c.Agents, a)
	return a
}

// startNodes starts nodes len(c.Agents) .. n-1, workers at a time; the
// first node of each IDC starts alone first, since the others join it.
func (c *Cluster) startNodes(n, workers int) {
	c.t.Helper()
	for len(c.Agents) < min(n, c.opts.IDCs) || (workers <= 1 && len(c.Agents) < n) {
		c.StartNode()
		if c.opts.LeadFirst && len(c.Agents) <= c.opts.IDCs {
			c.waitControlRole(c.Agents[len(c.Agents)-1])
		}
	}
	from := len(c.Agents)
	if from >= n {
		return
	}
	started := make([]*node.Agent, n-from)
	errs := make([]error, n-from)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				started[i-from], errs[i-from] = c.startNode(i)
			}
		}()
	}
	for i := from; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	for k, a := range started {
		if a != nil {
			c.Agents = append(c.Agents, a)
		} else {
			// Keep indexes stable for stopAll: a failed start leaves no agent.
			c.stopAll()
			c.t.Fatal(errs[k])
		}
	}
}

// waitControlRole waits until a advertises a control role in gossip.
func (c *Cluster) waitControlRole(a *node.Agent) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := WaitFor(ctx, 20*time.Millisecond, func() error {
		for _, r := range a.Mesh().LocalMember().Meta.Roles {
			if r == consensus.RoleLeader || r == consensus.RoleVoter {
				return nil
			}
		}
		return fmt.Errorf("%s advertises no control role", a.Name())
	})
	if err != nil {
		c.t.Fatal(err)
	}
}

// startNode builds and starts node i. It reads c.Agents (the node to
// join) but does not change it, so several may run at once.
func (c *Cluster) startNode(i int) (*node.Agent, error) {
	cfg := node.DefaultConfig()
	cfg.Name = fmt.Sprintf("node%d", i+1)
	cfg.IDC = fmt.Sprintf("dc%d", i%c.opts.IDCs+1)
	cfg.DataDir = filepath.Join(c.t.TempDir(), cfg.Name)
	cfg.Bind = "127.0.0.1:0"
	cfg.P2P = "127.0.0.1:0"
	cfg.API = "127.0.0.1:0"
	cfg.Swarm = fmt.Sprintf("127.0.2.%d:0", i%250+1) // the swarm bans by IP: one address per node
	cfg.EncryptKey = c.Key
	cfg.APIToken = c.Token
	cfg.ControlSize = c.opts.ControlSize
	cfg.PrimaryIDC = "dc1"
	cfg.HealthInterval = 500 * time.Millisecond
	cfg.Labels = map[string]string{"slot": fmt.Sprint(i + 1)}
	cfg.TuneMesh = c.opts.Gossip
	cfg.TuneControl = FastControl
	cfg.WANBind = c.wanAddr(i)
	cfg.WANJoin = c.wanAddrs()
	if first := c.firstOf(cfg.IDC); first != nil {
		cfg.Join = []string{first.GossipAddr()}
	}
	if c.opts.Configure != nil {
		c.opts.Configure(i, cfg)
	}
	// Discarded logs are never formatted: at hundreds of nodes, debug
	// lines written to io.Discard cost a visible share of the CPU.
	logger := slog.New(slog.DiscardHandler)
	if c.opts.Verbose {
		logger = slog.New(slog.NewTextHandler(testWriter{c.t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := node.New(cfg, logger)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	if err := a.Start(context.Background()); err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	return a, nil
}

func (c *Cluster) firstOf(idc string) *node.Agent {
	for i, a := range c.Agents {
		if a.IDC() == idc && !c.isStopped(i) {
			return a
		}
	}
	return nil
}

// Client returns an API client for node i.
func (c *Cluster) Client(i int) *api.Client {
	cl, err := api.NewClient(c.Agents[i].APIAddr(), c.Token)
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// Kill stops node i without a leave, as a crash would.
func (c *Cluster) Kill(i int) {
	c.markStopped(i)
	if err := c.Agents[i].Kill(); err != nil {
		c.t.Logf("kill node %d: %v", i, err)
	}
}

// Leave stops node i gracefully.
func (c *Cluster) Leave(i int) {
	c.markStopped(i)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Agents[i].Leave(ctx); err != nil {
		c.t.Logf("leave node %d: %v", i, err)
	}
}

// WaitConverged waits until every running node sees every running node of
// its IDC alive.
func (c *Cluster) WaitConverged(ctx context.Context) error {
	return WaitFor(ctx, 20*time.Millisecond, func() error {
		want := map[string]int{}
		for i, a := range c.Agents {
			if !c.isStopped(i) {
				want[a.IDC()]++
			}
		}
		for i, a := range c.Agents {
			if c.isStopped(i) {
				continue
			}
			alive := 0
			for _, m := range a.Mesh().Members() {
				if m.Status == mesh.StatusAlive {
					alive++
				}
			}
			if alive != want[a.IDC()] {
				return fmt.Errorf("%s sees %d alive, want %d", a.Name(), alive, want[a.IDC()])
			}
		}
		return nil
	})
}

// WaitAlive waits until node i sees n members of its IDC alive (or
// suspect: still a target to a leader), without the whole pool converging.
func (c *Cluster) WaitAlive(ctx context.Context, i, n int) error {
	a := c.Agents[i]
	return WaitFor(ctx, 500*time.Millisecond, func() error {
		alive := 0
		for _, m := range a.Mesh().Members() {
			if (m.Status == mesh.StatusAlive || m.Status == mesh.StatusSuspect) && m.Meta.IDC == a.IDC() {
				alive++
			}
		}
		if alive < n {
			return fmt.Errorf("%s sees %d alive, want %d", a.Name(), alive, n)
		}
		return nil
	})
}

// WaitFor polls cond every interval until it returns nil or ctx ends, and
// then returns cond's last error: conditions with deadlines, never sleeps.
func WaitFor(ctx context.Context, interval time.Duration, cond func() error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("condition not met before deadline: %w", err)
		case <-t.C:
		}
	}
}

func (c *Cluster) isStopped(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped[i]
}

func (c *Cluster) markStopped(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped[i] = true
}

// Close stops every node that still runs, at once (New's cleanup does
// the same): for callers that need the resources back before their test
// ends.
func (c *Cluster) Close() { c.stopAll() }

func (c *Cluster) stopAll() {
	var wg sync.WaitGroup
	for i, a := range c.Agents {
		if c.isStopped(i) {
			continue
		}
		c.markStopped(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = a.Kill()
		}()
	}
	wg.Wait()
}

// testWriter sends log lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// Binary returns the path of a herd binary for process-level tests: $HERD_BIN
// when set (make test builds one), else one built once per test process.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("HERD_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() { builtPath, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("building herd: %v", buildErr)
	}
	return builtPath
}
