package integration_test

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net/http"
	_ "net/http/pprof" // HERD_FANOUT_PPROF
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/integration/cluster"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/node"
)

// BenchmarkFanoutInProcess runs `hostname` (sh) on every node of an
// in-process fleet of 100 and 1,000 real agents, each executing through its
// own /bin/sh, and measures create → every result committed (issue 4's
// target: ≤ 2 s at 1,000). The run is created and followed through a
// node that does not lead, as an operator's CLI would be.
//
// The fleet uses ScaleGossip (QuietGossip above 300 nodes) and does not
// wait for full gossip convergence to start: node1 (the seed and, with
// control size 1, the leader) leads before the others join it, so the
// leader knows every node from its join and every node knows the leader
// from its join's push/pull; the runs share the cores with the rest of a
// cold start's gossip. What one process holding a whole fleet costs that
// a fleet does not is cut and stated in the output: GC paced by a memory
// limit, the agents' data on tmpfs (the control node's, with the raft
// log, on disk).
func BenchmarkFanoutInProcess(b *testing.B) {
	raiseFileLimit(b)
	servePprof(b)
	b.Logf("garbage collection: %s", fleetGC(b))
	sizes := []int{100, 1000}
	if v := os.Getenv("HERD_FANOUT_NODES"); v != "" { // e.g. "1000" or "100,300"
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 2 {
				b.Fatalf("HERD_FANOUT_NODES=%q: want sizes like 100,300", v)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		// The testing package calls a benchmark once with b.N = 1 and then
		// with the b.N asked for: the fleet is built by the first call and
		// kept for the next, and stopped before the next size starts.
		var f *fanoutFleet
		b.Run(fmt.Sprintf("nodes=%d", n), func(sub *testing.B) {
			if f == nil {
				f = startFanoutFleet(parentScoped{TB: sub, parent: b}, n)
			}
			benchFanout(sub, f)
		})
		if f != nil {
			f.c.Close()
		}
	}
}

// agentDataRoot returns a directory on a RAM filesystem (/dev/shm) for the
// data of every node but node1, the control node, or "" where there is
// none. Each agent writes a few files per task and syncs them (its task
// store, the script, the captured output): in a fleet every host does so
// on its own disk, in parallel; here a thousand agents would queue on one
// file system's journal, a cost no fleet pays. node1's data, and so every
// raft commit and its fsync, stays on disk. Stated in the output.
func agentDataRoot(t testing.TB) string {
	if fi, err := os.Stat("/dev/shm"); err != nil || !fi.IsDir() {
		t.Logf("agents' data on disk (no /dev/shm)")
		return ""
	}
	dir, err := os.MkdirTemp("/dev/shm", "herd-fanout-")
	if err != nil {
		t.Logf("agents' data on disk: %v", err)
		return ""
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	t.Logf("agents' data on tmpfs (%s); the control node's, with the raft log, on disk; agents run no file swarm (--swarm off)", dir)
	return dir
}

// fleetMemoryLimit is the bench process's memory limit when GC is left
// to it (fleetGC): well above a 1,000-node fleet's live heap (3–4 GB), and
// well below the shared machine's memory.
const fleetMemoryLimit = 12 << 30

// fleetGC paces garbage collection by a memory limit rather than by heap
// growth, unless GOGC or GOMEMLIMIT say otherwise. One process holds every
// node's state here (gigabytes at 1,000 nodes), where each node of a fleet
// has its own small heap: with GOGC=100, marking that heap after each few
// gigabytes allocated costs a third of the idle fleet's CPU. Stated in the
// output, as harness settings must be.
func fleetGC(b *testing.B) string {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return fmt.Sprintf("as the environment sets it (GOGC=%q GOMEMLIMIT=%q)", os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT"))
	}
	prevPercent := debug.SetGCPercent(-1)
	prevLimit := debug.SetMemoryLimit(fleetMemoryLimit)
	b.Cleanup(func() {
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
	})
	return fmt.Sprintf("GOGC=off, GOMEMLIMIT=%dGiB (one process holds the whole fleet's heap)", fleetMemoryLimit>>30)
}

// servePprof serves net/http/pprof on $HERD_FANOUT_PPROF (e.g.
// 127.0.0.1:6060), with block and mutex sampling on, so a run that stalls
// can be looked into (goroutine dumps, profiles) while it waits.
func servePprof(b *testing.B) {
	addr := os.Getenv("HERD_FANOUT_PPROF")
	if addr == "" {
		return
	}
	runtime.SetBlockProfileRate(int(time.Millisecond))
	runtime.SetMutexProfileFraction(100)
	srv := &http.Server{Addr: addr}
	go func() { _ = srv.ListenAndServe() }()
	b.Cleanup(func() { _ = srv.Close() })
	b.Logf("pprof on http://%s/debug/pprof/", addr)
}

// parentScoped is a sub-benchmark's TB whose cleanups and temporary
// directories belong to the parent, so what it builds outlives one call.
type parentScoped struct {
	testing.TB
	parent testing.TB
}

func (p parentScoped) Cleanup(fn func()) { p.parent.Cleanup(fn) }
func (p parentScoped) TempDir() string   { return p.parent.TempDir() }

// waitMostAlive waits until node 0 sees n members alive, or, once patience
// has passed since start, at least 99% of them; it returns how many.
func waitMostAlive(ctx context.Context, c *cluster.Cluster, n int, start time.Time, patience time.Duration) (int, error) {
	alive := 0
	err := cluster.WaitFor(ctx, time.Second, func() error {
		alive = 0
		for _, m := range c.Agents[0].Mesh().Members() {
			if m.Status == mesh.StatusAlive {
				alive++
			}
		}
		if alive == n || (time.Since(start) > patience && alive*100 >= n*99) {
			return nil
		}
		return fmt.Errorf("%d of %d alive", alive, n)
	})
	return alive, err
}

// fanoutGossip picks the gossip profile: at 1,000 in-process nodes on two
// cores, memberlist's probes time out unless failure detection is quiet.
func fanoutGossip(n int) func(*mesh.Config) {
	if n > 300 {
		return cluster.QuietGossip
	}
	return cluster.ScaleGossip
}

// progress logs, every 30s until stop is called, how many nodes the
// leader sees alive, its connections, how many nodes do not yet see it as
// a signer, and the latest two runs' counts and most frequent errors:
// what a slow start or a stalled run is waiting for.
func progress(ctx context.Context, t testing.TB, c *cluster.Cluster, n int, since time.Time) (stop func()) {
	tick := time.NewTicker(30 * time.Second)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			alive, others := 0, map[string]string{}
			for _, m := range c.Agents[0].Mesh().Members() {
				if m.Status == mesh.StatusAlive {
					alive++
				} else if len(others) < 8 {
					others[m.Name] = string(m.Status)
				}
			}
			// The latest two runs: a warm-up run that is retried shows why
			// its predecessor failed.
			runs := ""
			if l, err := c.Agents[0].Jobs().ListRuns(ctx, "", "", 2); err == nil {
				for _, r := range l.Runs {
					runs += fmt.Sprintf("; run %s %s %v%s", r.ID, r.Status, r.Counts, hostErrors(ctx, c, r.ID))
				}
			}
			conns := len(c.Agents[0].Host().Libp2p().Network().Conns())
			// Agents execute only what a node they see as a control
			// member signed.
			leader := c.Agents[0].Name()
			var blind []string
			for _, a := range c.Agents {
				m, ok := a.Mesh().Member(leader)
				if !ok || !slices.Contains(m.Meta.Roles, consensus.RoleLeader) && !slices.Contains(m.Meta.Roles, consensus.RoleVoter) {
					blind = append(blind, a.Name())
				}
			}
			t.Logf("%s: leader sees %d of %d alive, has %d connections; not alive: %v; %d nodes do not see %s as a signer %v%s",
				time.Since(since).Round(time.Second), alive, n, conns, others, len(blind), leader, blind[:min(len(blind), 8)], runs)
		}
	}()
	return func() {
		tick.Stop()
		close(done)
		<-exited
	}
}

// hostErrors summarises the errors of run id's hosts, node names left
// out, most frequent first: why hosts of a stalled run did not succeed.
func hostErrors(ctx context.Context, c *cluster.Cluster, id string) string {
	v, _, err := c.Agents[0].Jobs().GetRun(ctx, "", id, true, consensus.QueryOptions{})
	if err != nil {
		return ""
	}
	counts := map[string]int{}
	for _, h := range v.Hosts {
		if h.Error != "" {
			counts[nodeName.ReplaceAllString(h.Error, "nodeN")]++
		}
	}
	keys := slices.SortedFunc(maps.Keys(counts), func(a, b string) int { return counts[b] - counts[a] })
	var out strings.Builder
	for i, k := range keys {
		if i == 3 {
			break
		}
		fmt.Fprintf(&out, "; %d× %q", counts[k], k)
	}
	return out.String()
}

var nodeName = regexp.MustCompile(`node[0-9]+`)

// fanoutFleet is a warm in-process fleet for the fan-out benchmark.
type fanoutFleet struct {
	c   *cluster.Cluster
	n   int
	ctx context.Context
}

// fanoutVia is the node runs are created and followed through: node2,
// not the leader, so creates and reads are forwarded as a CLI's would be.
const fanoutVia = 1

// startFanoutFleet starts n agents and waits until the leader sees them
// all alive and a run of `true` on every one of them has succeeded.
func startFanoutFleet(t testing.TB, n int) *fanoutFleet {
	setup := time.Now()
	agentData := agentDataRoot(t)
	c := cluster.New(t, n, cluster.Options{
		ControlSize: 1,
		Gossip:      fanoutGossip(n),
		NoConverge:  true,
		LeadFirst:   true,
		// Node starts wait mostly on fsyncs (identity, stores): overlap them.
		StartWorkers: 8,
		Configure: func(i int, cfg *node.Config) {
			if i > 0 && agentData != "" {
				cfg.DataDir = filepath.Join(agentData, cfg.Name)
			}
			cfg.HealthInterval = time.Minute
			// The bench pushes no files: the agents run no torrent
			// client (--swarm off), which spares the process a thousand
			// clients' timers and descriptors (every fork of a script
			// copies the descriptor table, ~10,000 entries here).
			if i > 0 {
				cfg.Swarm = node.SwarmOff
			}
			// Shipped raft timings, and every node's group loop (which
			// looks for the control group every AutopilotInterval once
			// one exists) at a slow pace: a thousand of them share two
			// cores here, where each has its own host in a fleet.
			// node1 bootstraps at once and the others start once it
			// leads (LeadFirst), so they learn its role from their join's
			// push/pull: by gossip, a role takes minutes to reach the last
			// of 1,000 quiet nodes, and agents refuse tasks from a signer
			// they do not see lead.
			cfg.TuneControl = func(g *consensus.GroupConfig) {
				g.BootstrapStable = 300 * time.Millisecond
				g.AutopilotInterval = 5 * time.Second
			}
		},
	})
	t.Logf("%d nodes started in %s", n, time.Since(setup).Round(time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	t.Cleanup(cancel)
	defer progress(ctx, t, c, n, setup)()
	// Every node should be seen alive; at 1,000 on two cores a few late
	// joiners can take many minutes, so after a while 99% will do, and
	// the runs target (and the report counts) exactly the hosts seen.
	seen, err := waitMostAlive(ctx, c, n, setup, 6*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if seen < n {
		t.Logf("going on with %d of %d nodes alive in the leader's view", seen, n)
	}
	n = seen
	waitControl(ctx, t, c, 0, "", 1)
	// Warm-up: a run of `true` on every node proves that each one knows
	// the leader as a signer and that the leader's streams are open.
	if err := cluster.WaitFor(ctx, time.Second, func() error {
		v, _, err := fanout(ctx, c, fanoutVia, "true")
		if err != nil {
			return err
		}
		return allSucceeded(v, n)
	}); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	t.Logf("%d nodes up and warm in %s", n, time.Since(setup).Round(time.Second))
	t.Logf("idle fleet: %s", idleLoad(t, n))
	return &fanoutFleet{c: c, n: n, ctx: ctx}
}

// benchFanout runs `hostname` on the whole fleet b.N times. With
// HERD_FANOUT_CPUPROFILE=DIR it writes a CPU profile of the timed runs
// only (not the fleet's start) to DIR/fanout-N.cpu.
func benchFanout(b *testing.B, f *fanoutFleet) {
	if dir := os.Getenv("HERD_FANOUT_CPUPROFILE"); dir != "" {
		out, err := os.Create(filepath.Join(dir, fmt.Sprintf("fanout-%d.cpu", f.n)))
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			b.Fatal(err) // -test.cpuprofile already profiles the whole run
		}
		defer func() {
			pprof.StopCPUProfile()
			out.Close()
		}()
	}
	var wall, server, lastStart, lastExec, commitTail time.Duration
	defer progress(f.ctx, b, f.c, f.n, time.Now())()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sched, cpu0, kids0 := schedLatencies(), cpuTime(), childCPUTime()
		v, d, err := fanout(f.ctx, f.c, fanoutVia, "hostname")
		if err != nil {
			b.Fatal(err)
		}
		sched, cpu, kids := schedLatencies().since(sched), cpuTime()-cpu0, childCPUTime()-kids0
		if err := allSucceeded(v, f.n); err != nil {
			b.Fatal(err)
		}
		want := hostname()
		for _, h := range v.Hosts {
			if got := string(h.Output.Head); got != want {
				b.Fatalf("%s printed %q", h.Host, got)
			}
		}
		wall += d
		server += v.Run.Finished.Sub(v.Run.Created)
		ph := phasesOf(v)
		b.Logf("run %d of %d: %s, %.1f CPU-s (+%.1f in scripts); %s; goroutines waited to run %s", i+1, b.N, d.Round(time.Millisecond), cpu.Seconds(), kids.Seconds(), spread(v), sched)
		lastStart += ph.lastStart
		lastExec += ph.lastExec
		commitTail += ph.commitTail
	}
	b.StopTimer()
	runs := float64(b.N)
	b.ReportMetric(wall.Seconds()/runs, "s/run")
	b.ReportMetric(server.Seconds()/runs, "s/run-server")
	b.ReportMetric(float64(f.n)*runs/wall.Seconds(), "hosts/s")
	b.ReportMetric(lastStart.Seconds()/runs, "s/last-start")
	b.ReportMetric(lastExec.Seconds()/runs, "s/last-exec")
	b.ReportMetric(commitTail.Seconds()/runs, "s/commit-tail")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "MB-heap")
	if rss, err := procRSS(os.Getpid()); err == nil {
		b.ReportMetric(float64(rss)/(1<<20), "MB-rss")
	}
	b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
}

// fanout runs script on --all through node via and follows it with
// blocking reads of the run's counts until it finishes; it returns the
// finished run with its hosts and the time from create to finish as the
// client saw it.
func fanout(ctx context.Context, c *cluster.Cluster, via int, script string) (*model.RunView, time.Duration, error) {
	svc := c.Agents[via].Jobs()
	start := time.Now()
	res, err := svc.CreateRun(ctx, model.RunRequest{Targets: model.Targets{All: true}, Script: sh(script)})
	if err != nil {
		return nil, 0, fmt.Errorf("create: %w", err)
	}
	id := res.Run.ID
	var index uint64
	for {
		v, meta, err := svc.GetRun(ctx, "", id, false, consensus.QueryOptions{MinIndex: index, MaxWait: 5 * time.Second})
		if err != nil {
			if ctx.Err() != nil {
				return nil, 0, fmt.Errorf("run %s: %w", id, err)
			}
			time.Sleep(50 * time.Millisecond) // a forwarding hiccup: read again
			continue
		}
		index = meta.Index
		if v.Run.Status != model.RunRunning {
			break
		}
	}
	d := time.Since(start)
	v, _, err := svc.GetRun(ctx, "", id, true, consensus.QueryOptions{})
	if err != nil {
		return nil, 0, fmt.Errorf("read the finished run %s: %w", id, err)
	}
	return v, d, nil
}

// phases splits a finished run's server time: when the last host started
// its script (delivery), the longest script (fork/exec and sh), and how
// long after the last host finished the run was committed finished.
type phases struct {
	lastStart, lastExec, commitTail time.Duration
}

func phasesOf(v *model.RunView) phases {
	var p phases
	var lastFinish time.Time
	for _, h := range v.Hosts {
		if h.Started == nil || h.Finished == nil {
			continue
		}
		p.lastStart = max(p.lastStart, h.Started.Sub(v.Run.Created))
		p.lastExec = max(p.lastExec, h.Finished.Sub(*h.Started))
		if h.Finished.After(lastFinish) {
			lastFinish = *h.Finished
		}
	}
	if v.Run.Finished != nil && !lastFinish.IsZero() {
		p.commitTail = v.Run.Finished.Sub(lastFinish)
	}
	return p
}

// spread gives the percentiles of when hosts started and finished
// (after the run's creation) and how long their scripts took: where a
// run's time went, host by host.
func spread(v *model.RunView) string {
	var start, end, exec []time.Duration
	for _, h := range v.Hosts {
		if h.Started == nil || h.Finished == nil {
			continue
		}
		start = append(start, h.Started.Sub(v.Run.Created))
		end = append(end, h.Finished.Sub(v.Run.Created))
		exec = append(exec, h.Finished.Sub(*h.Started))
	}
	pct := func(name string, ds []time.Duration) string {
		if len(ds) == 0 {
			return name + " -"
		}
		slices.Sort(ds)
		at := func(p int) time.Duration { return ds[(len(ds)-1)*p/100].Round(time.Millisecond) }
		return fmt.Sprintf("%s p10 %s p50 %s p90 %s max %s", name, at(10), at(50), at(90), at(100))
	}
	return pct("started", start) + "; finished " + pct("", end)[1:] + "; script " + pct("", exec)[1:]
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// childCPUTime is the CPU time the process's finished children (the
// scripts' shells and what they ran) have used: not in cpuTime, and on
// the same two cores.
func childCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// idleLoad measures, over a few seconds with no run, what the fleet costs
// on its own (gossip, timers, the control group): the floor every run
// shares the two cores with. With HERD_FANOUT_CPUPROFILE=DIR it also
// writes a CPU profile of that window to DIR/fanout-N-idle.cpu and heap
// profiles at its start and end to DIR/fanout-N-idle0.heap and
// DIR/fanout-N.heap.
func idleLoad(t testing.TB, n int) string {
	const window = 5 * time.Second
	dir := os.Getenv("HERD_FANOUT_CPUPROFILE")
	if dir != "" {
		out, err := os.Create(filepath.Join(dir, fmt.Sprintf("fanout-%d-idle.cpu", n)))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			t.Fatal(err)
		}
		// With the heap profile written after the window, what the idle
		// fleet allocates: go tool pprof -sample_index=alloc_space -base.
		if err := writeHeapProfile(filepath.Join(dir, fmt.Sprintf("fanout-%d-idle0.heap", n))); err != nil {
			t.Fatal(err)
		}
	}
	sched, cpu0, start := schedLatencies(), cpuTime(), time.Now()
	time.Sleep(window) // a measurement window, not a wait for anything
	cpu := cpuTime() - cpu0
	elapsed := time.Since(start)
	if dir != "" {
		pprof.StopCPUProfile()
		if err := writeHeapProfile(filepath.Join(dir, fmt.Sprintf("fanout-%d.heap", n))); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf("%.0f%% of one core; goroutines waited to run %s",
		100*cpu.Seconds()/elapsed.Seconds(), schedLatencies().since(sched))
}

func writeHeapProfile(path string) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// histogram is the runtime's histogram of how long runnable goroutines
// waited for a CPU: in a fleet sharing two cores, the latency every
// message and timer pays on top of its own work.
type histogram struct{ *metrics.Float64Histogram }

func schedLatencies() histogram {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	return histogram{s[0].Value.Float64Histogram()}
}

// since returns the waits counted after earlier was read.
func (h histogram) since(earlier histogram) histogram {
	out := &metrics.Float64Histogram{Buckets: h.Buckets, Counts: slices.Clone(h.Counts)}
	for i := range out.Counts {
		out.Counts[i] -= earlier.Counts[i]
	}
	return histogram{out}
}

func (h histogram) String() string {
	var total uint64
	for _, c := range h.Counts {
		total += c
	}
	if total == 0 {
		return "-"
	}
	at := func(q float64) time.Duration {
		var n uint64
		for i, c := range h.Counts {
			n += c
			if float64(n) >= q*float64(total) {
				upper := h.Buckets[i+1]
				if math.IsInf(upper, 1) {
					upper = h.Buckets[i]
				}
				return time.Duration(upper * float64(time.Second)).Round(time.Microsecond)
			}
		}
		return 0
	}
	return fmt.Sprintf("p50 %s p90 %s p99 %s (%d waits)", at(0.5), at(0.9), at(0.99), total)
}

// allSucceeded checks that a finished run targeted n hosts and every one
// of them succeeded.
func allSucceeded(v *model.RunView, n int) error {
	if v.Run.Total != n || len(v.Hosts) != n {
		return fmt.Errorf("run %s: %d hosts (total %d), want %d", v.Run.ID, len(v.Hosts), v.Run.Total, n)
	}
	if v.Run.Finished == nil {
		return fmt.Errorf("run %s is %s without a finish time", v.Run.ID, v.Run.Status)
	}
	for _, h := range v.Hosts {
		if h.Status != model.HostSuccess {
			return fmt.Errorf("run %s: host %s is %s (exit %d): %s", v.Run.ID, h.Host, h.Status, h.ExitCode, h.Error)
		}
	}
	return nil
}

// hostname is the machine's name as `hostname` prints it: every in-process
// agent shares it.
func hostname() string {
	h, _ := os.Hostname()
	return h + "\n"
}

// raiseFileLimit lifts the soft open-files limit to the hard one: a
// 1,000-node fleet holds several sockets and files per node.
func raiseFileLimit(b *testing.B) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			b.Fatal(err)
		}
	}
}
