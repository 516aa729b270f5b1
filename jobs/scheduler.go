package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
)

// SchedulerConfig configures the leader side of script execution. Every
// node has a Scheduler; it works only while the node leads its IDC.
type SchedulerConfig struct {
	Name, IDC string
	LAN       *mesh.Mesh
	Host      *p2p.Host
	Server    *consensus.Server
	// RetryInterval is how long a host may go without acknowledging a
	// delivery before it is sent again. Default 3s.
	RetryInterval time.Duration
	// AckDeadline is how long a live host may go without acknowledging
	// before it is settled unreachable. Default 60s.
	AckDeadline time.Duration
	// ReportGrace is how long past its timeout a running host may go
	// without a result before the leader asks again, and twice that before
	// it is settled as timed out. Default 30s.
	ReportGrace time.Duration
	// CancelGrace is how long a running host of a cancelled run may go
	// without a result before it is settled cancelled. Default 15s.
	CancelGrace time.Duration
	// Concurrency bounds deliveries in flight. Default 256.
	Concurrency int
	// RunRetention is how long finished runs stay in the control group.
	// Default 30 days.
	RunRetention time.Duration
	// Tick is the watchdog period. Default 250ms.
	Tick   time.Duration
	Logger *slog.Logger
}

func (c *SchedulerConfig) withDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.RetryInterval, 3*time.Second)
	def(&c.AckDeadline, 60*time.Second)
	def(&c.ReportGrace, 30*time.Second)
	def(&c.CancelGrace, 15*time.Second)
	def(&c.RunRetention, 30*24*time.Hour)
	def(&c.Tick, 250*time.Millisecond)
	if c.Concurrency == 0 {
		c.Concurrency = 256
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Scheduler is the leader's half of a run: it creates runs (resolving
// targets and signing tasks), delivers tasks, collects results into raft in
// batches, and a watchdog settles every host so that no run stays running.
// Its whole memory is per term: a new leader rebuilds it from the store,
// re-sending what is unacknowledged (agents deduplicate).
type Scheduler struct {
	cfg SchedulerConfig
	log *slog.Logger
	key crypto.PrivKey

	mu   sync.Mutex
	term *term // nil while not leading
}

// NewScheduler builds the scheduler and registers its leadership routine
// with cfg.Server; call Start to serve its protocols.
func NewScheduler(cfg SchedulerConfig) (*Scheduler, error) {
	if cfg.LAN == nil || cfg.Host == nil || cfg.Server == nil {
		return nil, errors.New("jobs scheduler: LAN, Host and Server are required")
	}
	cfg.withDefaults()
	key := cfg.Host.Libp2p().Peerstore().PrivKey(cfg.Host.ID())
	if key == nil {
		return nil, errors.New("jobs scheduler: the stream host has no private key to sign tasks with")
	}
	s := &Scheduler{cfg: cfg, log: cfg.Logger.With("component", "jobs-scheduler"), key: key}
	cfg.Server.OnLeadership("jobs", s.lead)
	return s, nil
}

// Start serves the leader-side protocols. A node that does not lead
// answers them with "unavailable", which callers retry on the leader.
func (s *Scheduler) Start() {
	p2p.HandleJSON(s.cfg.Host, protoReport, s.handleReport)
	p2p.HandleJSON(s.cfg.Host, protoPull, s.handlePull)
	p2p.HandleJSON(s.cfg.Host, protoCreate, s.handleCreate)
	p2p.HandleJSON(s.cfg.Host, protoPeers, s.handlePeers)
	p2p.HandleJSON(s.cfg.Host, protoProgress, s.handleProgress)
}

// term is one leadership term's memory.
type term struct {
	ctx     context.Context
	updates chan update
	wake    chan struct{}
	sem     chan struct{}

	mu       sync.Mutex
	sends    map[string]*sendState        // runID\x00host
	swarms   map[string]map[string]string // runID → node → swarm address (pushes in progress)
	progress map[string]map[string]int64  // runID → host → verified bytes (pushes in progress)
	targets  map[string]*runTargets       // runID → its targets (immutable; see targetsOf)
}

// sendState is what this term knows of one host's delivery.
type sendState struct {
	first, last time.Time // first and latest attempt
	inflight    bool
	lastErr     string
	cancelSent  time.Time // when a cancel was sent (cancelled runs)
	asked       time.Time // when a running host past its timeout was asked again
}

func (t *term) state(runID, host string) *sendState {
	k := string(taskKey(runID, host))
	st := t.sends[k]
	if st == nil {
		st = &sendState{}
		t.sends[k] = st
	}
	return st
}

func (t *term) kick() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (s *Scheduler) current() *term {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.term
}

// lead runs for one term of leadership.
func (s *Scheduler) lead(ctx context.Context) {
	t := &term{
		ctx:     ctx,
		updates: make(chan update, 4096),
		wake:    make(chan struct{}, 1),
		sem:     make(chan struct{}, s.cfg.Concurrency),
		sends:   map[string]*sendState{},
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.collect(t)
	}()
	s.mu.Lock()
	s.term = t
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.term == t {
			s.term = nil
		}
		s.mu.Unlock()
		wg.Wait()
	}()
	s.log.Info("scheduler leading")
	tick := time.NewTicker(s.cfg.Tick)
	defer tick.Stop()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	for {
		s.watch(t)
		select {
		case <-ctx.Done():
			return
		case <-t.wake:
		case <-tick.C:
		case <-prune.C:
			s.prune(ctx)
		}
	}
}

// watch is one pass of the watchdog over every running run.
func (s *Scheduler) watch(t *term) {
	ids, err := activeRuns(s.cfg.Server.Store(), s.cfg.IDC)
	if err != nil {
		s.log.Error("watchdog cannot list runs", "error", err)
		return
	}
	if len(ids) == 0 {
		return
	}
	members := s.membersByName()
	executors := aliveAgents(members, s.cfg.IDC)
	now := time.Now()
	for _, id := range ids {
		_, view, err := readRun(nil, s.cfg.Server.Store(), runQuery{IDC: s.cfg.IDC, ID: id, Hosts: true})
		if err != nil || view == nil || view.Run.Status != model.RunRunning {
			continue
		}
		s.watchRun(t, view, members, executors, now)
	}
}

// watchRun decides, for each host of one run, whether to deliver, ask,
// cancel or settle it.
func (s *Scheduler) watchRun(t *term, v *model.RunView, members map[string]mesh.Member, executors []string, now time.Time) {
	r := &v.Run
	var settle []model.HostResult
	for i := range v.Hosts {
		h := &v.Hosts[i]
		if h.Status.Terminal() {
			continue
		}
		t.mu.Lock()
		st := t.state(r.ID, h.Host)
		t.mu.Unlock()
		switch h.Status {
		case model.HostPending:
			if r.Cancelled {
				continue // RunCancel settled pending hosts; only a racing ack lands here
			}
			exec, why := executorFor(h.Host, h.Kind, members, executors)
			if why != "" {
				// A push waits for a host that is down (it may be
				// restarting) up to the push's timeout; a script does not.
				if r.Push == nil || now.Sub(r.Created) > runTimeout(r) || members[exec].Status == mesh.StatusLeft {
					settle = append(settle, unreachable(h, exec, why, now))
				}
				continue
			}
			t.mu.Lock()
			if !st.first.IsZero() && now.Sub(st.first) > s.cfg.AckDeadline && !st.inflight {
				t.mu.Unlock()
				msg := fmt.Sprintf("no acknowledgement from %s within %s", exec, s.cfg.AckDeadline)
				if st.lastErr != "" {
					msg += " (last error: " + st.lastErr + ")"
				}
				settle = append(settle, unreachable(h, exec, msg, now))
				continue
			}
			due := !st.inflight && (st.last.IsZero() || now.Sub(st.last) >= s.cfg.RetryInterval)
			if due {
				if st.first.IsZero() {
					st.first = now
				}
				st.last, st.inflight = now, true
			}
			t.mu.Unlock()
			if due {
				s.deliver(t, r, *h, exec)
			}
		case model.HostRunning:
			started := now
			if h.Started != nil {
				started = *h.Started
			}
			timeout := runTimeout(r)
			node, alive := members[h.Node]
			if !alive || node.Status == mesh.StatusFailed || node.Status == mesh.StatusLeft {
				// A push resumes when its host comes back, within its timeout.
				if r.Push == nil || now.Sub(started) > timeout || node.Status == mesh.StatusLeft {
					settle = append(settle, unreachable(h, h.Node, fmt.Sprintf("node %s %s while the %s ran", h.Node, goneWord(node, alive), runWhat(r)), now))
				}
				continue
			}
			t.mu.Lock()
			if r.Cancelled {
				if st.cancelSent.IsZero() {
					st.cancelSent = now
					t.mu.Unlock()
					s.sendCancel(t, r.ID, *h)
					continue
				}
				expired := now.Sub(st.cancelSent) > s.cfg.CancelGrace
				t.mu.Unlock()
				if expired {
					settle = append(settle, settled(h, model.HostCancelled, fmt.Sprintf("cancelled; %s sent no result within %s", h.Node, s.cfg.CancelGrace), now))
				}
				continue
			}
			over := now.Sub(started) - timeout
			switch {
			case over > 2*s.cfg.ReportGrace:
				t.mu.Unlock()
				settle = append(settle, settled(h, model.HostTimeout, fmt.Sprintf("no result from %s %s after the %s timeout", h.Node, 2*s.cfg.ReportGrace, timeout), now))
				continue
			case over > s.cfg.ReportGrace && now.Sub(st.asked) > s.cfg.ReportGrace && !st.inflight:
				// Re-delivering makes the agent re-send a result it has.
				st.asked, st.inflight = now, true
				t.mu.Unlock()
				s.deliver(t, r, *h, h.Node)
				continue
			}
			t.mu.Unlock()
		}
	}
	if len(settle) > 0 {
		s.enqueue(t, r.ID, settle, nil)
	}
}

// membersByName indexes the IDC's gossip view by node name.
func (s *Scheduler) membersByName() map[string]mesh.Member {
	members := map[string]mesh.Member{}
	for _, m := range s.cfg.LAN.Members() {
		members[m.Name] = m
	}
	return members
}

// runTimeout is how long one host of r may take.
func runTimeout(r *model.Run) time.Duration {
	d := r.Script.Timeout.Std()
	if r.Push != nil {
		d = r.Push.Timeout.Std()
	}
	if d <= 0 {
		d = model.DefaultTimeout
	}
	return d
}

func runWhat(r *model.Run) string {
	if r.Push != nil {
		return "transfer"
	}
	return "script"
}

func goneWord(m mesh.Member, known bool) string {
	switch {
	case !known:
		return "left the mesh"
	case m.Status == mesh.StatusLeft:
		return "left the cluster"
	}
	return "failed (dead in gossip)"
}

func unreachable(h *model.HostResult, node, why string, now time.Time) model.HostResult {
	return model.HostResult{Host: h.Host, Kind: h.Kind, Status: model.HostUnreachable, Node: node, ExitCode: -1, Error: why, Started: h.Started, Finished: &now}
}

func settled(h *model.HostResult, st model.HostStatus, why string, now time.Time) model.HostResult {
	out := *h
	out.Status, out.Error, out.ExitCode, out.Finished = st, why, -1, &now
	return out
}

// aliveAgents lists the live agents of idc, sorted: the candidates to
// execute SSH targets.
func aliveAgents(members map[string]mesh.Member, idc string) []string {
	var out []string
	for name, m := range members {
		if m.Meta.IDC == idc && m.Status == mesh.StatusAlive {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// executorFor picks the node that executes host: the host itself for an
// agent, or for an SSH target the live agent of the IDC that rendezvous
// hashing ranks first (stable across leaders, spread across agents). why
// is set when the host cannot be reached now.
func executorFor(host string, kind model.TargetKind, members map[string]mesh.Member, agents []string) (node, why string) {
	if kind == model.TargetSSH {
		if len(agents) == 0 {
			return "", "no live agent in the IDC to reach this SSH host from"
		}
		var best string
		var bestScore uint64
		for _, a := range agents {
			h := fnv.New64a()
			h.Write([]byte(host + "\x00" + a))
			if sc := h.Sum64(); best == "" || sc > bestScore {
				best, bestScore = a, sc
			}
		}
		return best, ""
	}
	m, ok := members[host]
	switch {
	case !ok:
		return host, "not a member of the mesh"
	case m.Status == mesh.StatusLeft:
		return host, "left the cluster"
	case m.Status == mesh.StatusFailed:
		return host, fmt.Sprintf("dead in gossip since %s", m.Since.Format(time.RFC3339))
	}
	return host, ""
}

// prune removes runs older than the retention.
func (s *Scheduler) prune(ctx context.Context) {
	body := RunsPrune{IDC: s.cfg.IDC, Before: time.Now().Add(-s.cfg.RunRetention), Max: 100}
	res, err := s.cfg.Server.Apply(ctx, "", RunsPruneType, body)
	if err != nil {
		s.log.Warn("cannot prune old runs", "error", err)
		return
	}
	var out map[string]int
	if json.Unmarshal(res.Data, &out) == nil && out["pruned"] > 0 {
		s.log.Info("pruned old runs", "runs", out["pruned"])
	}
}
