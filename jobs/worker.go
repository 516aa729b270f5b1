package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/jobs/executor"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/jobs/sshexec"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
	"github.com/herd-io/herd/transfer"
)

// WorkerConfig configures the agent side of script execution.
type WorkerConfig struct {
	// Name and IDC are the node's.
	Name, IDC string
	// DataDir holds the task store (jobs.db) and every task's full output
	// (output/RUN/HOST.out). Required.
	DataDir string
	// OutputRetention is how long finished tasks and their output are
	// kept. Default 7 days.
	OutputRetention time.Duration
	// SSHConcurrency bounds simultaneous SSH sessions from this node.
	// Default 50.
	SSHConcurrency int
	// LAN, Host and Server are the node's gossip pool, stream host and
	// control-plane handle.
	LAN    *mesh.Mesh
	Host   *p2p.Host
	Server *consensus.Server
	// Content and Swarm are the node's content store and swarm (pushes);
	// SwarmAdvertise is the swarm address other nodes dial.
	Content *transfer.Store
	Swarm   *transfer.Swarm
	// Digests remembers installed files' MD5s, so an identical re-push
	// costs a stat, not a read of the destination (nil: always hash).
	Digests        *transfer.DigestCache
	SwarmAdvertise string
	// UploadRate and DownloadRate are the agent's swarm caps (bytes/s, 0 =
	// unlimited), restored after a push with its own --rate.
	UploadRate, DownloadRate int64
	// FSRoot (dev only) prefixes push destinations.
	FSRoot string
	Logger *slog.Logger
}

// Worker executes the tasks the control group signs for this node: it
// verifies each, runs it at most once (its local store survives restarts),
// keeps the full output on disk and reports the result to the leader until
// the control group has it.
type Worker struct {
	cfg   WorkerConfig
	log   *slog.Logger
	store *localStore
	exec  *executor.Executor
	ssh   *sshexec.Runner
	// content and swarm move the bytes of pushes (nil: pushes fail).
	content *transfer.Store
	swarm   *transfer.Swarm

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	stopOnce sync.Once

	mu      sync.Mutex
	running map[string]context.CancelFunc // runID\x00host → cancel of the task
	// reporting holds the tasks whose result a report loop is sending:
	// the leader re-delivers a task whose ack it has not committed yet,
	// and each such delivery must not start one more loop.
	reporting map[string]bool
	pullNow   chan struct{}
}

// NewWorker opens the task store and builds the executors.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.DataDir == "" || cfg.LAN == nil || cfg.Host == nil || cfg.Server == nil {
		return nil, errors.New("jobs worker: DataDir, LAN, Host and Server are required")
	}
	if cfg.OutputRetention == 0 {
		cfg.OutputRetention = 7 * 24 * time.Hour
	}
	if cfg.SSHConcurrency == 0 {
		cfg.SSHConcurrency = 50
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	store, err := openLocalStore(filepath.Join(cfg.DataDir, "jobs.db"))
	if err != nil {
		return nil, err
	}
	ex, err := executor.New(executor.Config{WorkRoot: filepath.Join(cfg.DataDir, "work")})
	if err != nil {
		store.close()
		return nil, fmt.Errorf("jobs worker: %w", err)
	}
	w := &Worker{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "jobs-worker"),
		store:     store,
		exec:      ex,
		running:   map[string]context.CancelFunc{},
		reporting: map[string]bool{},
		pullNow:   make(chan struct{}, 1),
		content:   cfg.Content,
		swarm:     cfg.Swarm,
	}
	w.ssh, err = sshexec.New(sshexec.Config{Concurrency: cfg.SSHConcurrency, HostKeys: &controlHostKeys{srv: cfg.Server}})
	if err != nil {
		store.close()
		return nil, fmt.Errorf("jobs worker: %w", err)
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	return w, nil
}

// Start serves the worker's protocols and begins recovery: results of
// tasks that ended (or were interrupted by a restart) are reported, and
// the leader is asked for tasks that wait for this node.
func (w *Worker) Start() {
	p2p.HandleJSON(w.cfg.Host, protoDeliver, w.handleDeliver)
	p2p.HandleJSON(w.cfg.Host, protoCancel, w.handleCancel)
	p2p.HandleJSON(w.cfg.Host, protoLogs, w.handleLogs)
	w.go_(w.recover)
	w.go_(w.pullLoop)
	w.go_(w.noticeLoop)
	w.go_(w.pruneLoop)
}

// Stop cancels running tasks (their results are reported as cancelled if
// the leader answers in time) and waits for every goroutine.
func (w *Worker) Stop() {
	w.stopOnce.Do(func() {
		w.cancel()
		w.wg.Wait()
		w.store.close()
	})
}

func (w *Worker) go_(fn func()) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		fn()
	}()
}

// authorizedSigner reports whether peerID is a live control member
// (voter) of this node's IDC: the only signers whose tasks run here.
func (w *Worker) authorizedSigner(peerID string) bool {
	m, ok := w.cfg.LAN.MemberByPeerID(peerID)
	if !ok || m.Meta.IDC != w.cfg.IDC || (m.Status != mesh.StatusAlive && m.Status != mesh.StatusSuspect) {
		return false
	}
	return slices.Contains(m.Meta.Roles, consensus.RoleVoter) || slices.Contains(m.Meta.Roles, consensus.RoleLeader)
}

func (w *Worker) handleDeliver(_ context.Context, _ peer.ID, env Envelope) (DeliverAck, error) {
	t, err := VerifyTask(env, w.cfg.Name, time.Now(), w.authorizedSigner)
	if err != nil {
		w.log.Warn("refused a task", "error", err)
		return DeliverAck{}, p2p.Errorf(p2p.CodeForbidden, "%v", err)
	}
	return w.accept(t)
}

// accept runs t unless this node already accepted it; either way it
// acknowledges.
func (w *Worker) accept(t Task) (DeliverAck, error) {
	if w.ctx.Err() != nil {
		return DeliverAck{}, p2p.Errorf(p2p.CodeUnavailable, "%s is stopping", w.cfg.Name)
	}
	rec := taskRecord{
		RunID: t.RunID, IDC: t.IDC, Host: t.Host, Accepted: time.Now(),
		Output: w.outputPath(t.RunID, t.Host),
	}
	if t.Push != nil {
		// A push resumes after a restart, so its record keeps the task.
		rec.Task, _ = json.Marshal(t)
	}
	rec, fresh, err := w.store.begin(rec)
	if err != nil {
		return DeliverAck{}, p2p.Errorf(p2p.CodeInternal, "%v", err)
	}
	if fresh {
		w.start(t, rec)
	} else if rec.Result != nil && !rec.Reported {
		w.go_(func() { w.report(rec) })
	}
	return DeliverAck{Accepted: rec.Accepted, Done: rec.Result != nil}, nil
}

// start runs t in its own goroutine, cancellable by a cancel request.
func (w *Worker) start(t Task, rec taskRecord) {
	ctx, cancel := context.WithCancel(w.ctx)
	w.mu.Lock()
	w.running[string(taskKey(t.RunID, t.Host))] = cancel
	w.mu.Unlock()
	w.go_(func() {
		defer cancel()
		w.execute(ctx, t, rec)
	})
}

func (w *Worker) outputPath(runID, host string) string {
	return filepath.Join(w.cfg.DataDir, "output", runID, host+".out")
}

// execute runs one task and reports its result.
func (w *Worker) execute(ctx context.Context, t Task, rec taskRecord) {
	defer func() {
		w.mu.Lock()
		delete(w.running, string(taskKey(t.RunID, t.Host)))
		w.mu.Unlock()
	}()
	spec := executor.Spec{
		Lang:    executor.Lang(t.Script.Lang),
		Script:  t.Script.Body,
		Args:    t.Script.Args,
		Env:     t.Script.Env,
		Timeout: t.Script.Timeout.Std(),
		WorkDir: t.Script.WorkDir,
		User:    t.OSUser,
		RunID:   t.RunID,
		Host:    t.Host,
	}
	if spec.Lang == "" {
		spec.Lang = executor.LangSh
	}
	if t.Push != nil {
		w.finish(rec, w.push(ctx, t))
		return
	}
	if err := os.MkdirAll(filepath.Dir(rec.Output), 0o700); err != nil {
		w.finish(rec, failedResult(t, w.cfg.Name, fmt.Sprintf("cannot create the output directory: %v", err)))
		return
	}
	var res executor.Result
	switch t.Kind {
	case model.TargetSSH:
		if t.SSH == nil {
			w.finish(rec, failedResult(t, w.cfg.Name, "SSH task without a target"))
			return
		}
		target := sshexec.Target{Name: t.SSH.Name, Addr: t.SSH.Addr, User: t.SSH.User, Key: t.SSH.Key, Password: t.SSH.Password}
		res = w.ssh.Run(ctx, target, spec, rec.Output)
	default:
		res = w.exec.Run(ctx, spec, rec.Output)
	}
	if w.ctx.Err() != nil && res.Status == executor.StatusCancelled {
		res.Error = "the agent stopped while the script ran"
	}
	w.finish(rec, hostResult(t, w.cfg.Name, res))
}

func failedResult(t Task, node, msg string) model.HostResult {
	now := time.Now()
	return model.HostResult{Host: t.Host, Kind: t.Kind, Status: model.HostFailed, Node: node, ExitCode: -1, Error: msg, Started: &now, Finished: &now}
}

// hostResult converts an executor result into the control group's record.
func hostResult(t Task, node string, r executor.Result) model.HostResult {
	started, finished := r.Started, r.Finished
	h := model.HostResult{
		Host: t.Host, Kind: t.Kind, Status: model.HostStatus(r.Status), Node: node,
		ExitCode: r.ExitCode, Signal: r.Signal, Error: r.Error,
		Output: model.Output{
			Bytes: r.Output.Bytes, SHA256: r.Output.SHA256,
			Head: r.Output.Head, Tail: r.Output.Tail, Truncated: r.Output.Truncated,
		},
	}
	if !started.IsZero() {
		h.Started = &started
	}
	if !finished.IsZero() {
		h.Finished = &finished
	}
	if !h.Status.Terminal() {
		h.Status = model.HostFailed
	}
	return h
}

// finish records the result locally, then reports it.
func (w *Worker) finish(rec taskRecord, res model.HostResult) {
	if err := w.store.update(rec.RunID, rec.Host, func(r *taskRecord) { r.Result = &res }); err != nil {
		w.log.Error("cannot record a task result", "run", rec.RunID, "host", rec.Host, "error", err)
	}
	rec.Result = &res
	w.report(rec)
}

// report sends rec's result to the leader until it is committed, the run
// is gone, or the worker stops (the result is then reported on restart).
func (w *Worker) report(rec taskRecord) {
	key := string(taskKey(rec.RunID, rec.Host))
	w.mu.Lock()
	busy := w.reporting[key]
	w.reporting[key] = true
	w.mu.Unlock()
	if busy {
		return // another loop sends the same result
	}
	defer func() {
		w.mu.Lock()
		delete(w.reporting, key)
		w.mu.Unlock()
	}()
	backoff := 200 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(w.ctx, 15*time.Second)
		err := w.cfg.Server.CallLeader(ctx, func(ctx context.Context, m mesh.Member) error {
			_, err := callMember[Report, HostsUpdateResult](ctx, w.cfg.Host, m, protoReport, Report{IDC: rec.IDC, RunID: rec.RunID, Result: *rec.Result})
			return err
		})
		cancel()
		if err == nil || p2p.CodeOf(err) == p2p.CodeNotFound {
			if err != nil {
				w.log.Info("dropping the result of a run the control group no longer has", "run", rec.RunID, "host", rec.Host)
			}
			if err := w.store.update(rec.RunID, rec.Host, func(r *taskRecord) { r.Reported = true }); err != nil {
				w.log.Error("cannot mark a result reported", "run", rec.RunID, "error", err)
			}
			return
		}
		w.log.Warn("cannot report a result yet; retrying", "run", rec.RunID, "host", rec.Host, "error", err)
		select {
		case <-w.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// recover finishes what a previous life of this agent left: tasks accepted
// but never finished (the agent died while they ran: their outcome is
// unknown, so they are reported failed rather than run twice) and results
// not yet reported.
func (w *Worker) recover() {
	recs, err := w.store.all()
	if err != nil {
		w.log.Error("cannot read the task store", "error", err)
		return
	}
	for _, rec := range recs {
		if rec.Reported {
			continue
		}
		w.mu.Lock()
		_, live := w.running[string(taskKey(rec.RunID, rec.Host))]
		w.mu.Unlock()
		if live {
			continue
		}
		if rec.Result == nil && len(rec.Task) > 0 {
			// A push: idempotent, and the swarm keeps verified pieces, so
			// it resumes instead of failing.
			var t Task
			if err := json.Unmarshal(rec.Task, &t); err == nil && t.Push != nil {
				w.log.Info("resuming a push interrupted by a restart", "run", t.RunID, "host", t.Host)
				w.start(t, rec)
				continue
			}
		}
		if rec.Result == nil {
			now := time.Now()
			res := model.HostResult{Host: rec.Host, Status: model.HostFailed, Node: w.cfg.Name, ExitCode: -1,
				Error: "the agent restarted while the script ran; its outcome is unknown and it was not run again", Started: &rec.Accepted, Finished: &now}
			if sum, err := summarizeFile(rec.Output); err == nil {
				res.Output = sum
			}
			w.finish(rec, res)
			continue
		}
		w.go_(func() { w.report(rec) })
	}
}

// summarizeFile rebuilds an output summary from a stored output file.
func summarizeFile(path string) (model.Output, error) {
	f, err := os.Open(path)
	if err != nil {
		return model.Output{}, err
	}
	defer f.Close()
	c, err := executor.NewCapture(os.DevNull, executor.DefaultCaptureLimits())
	if err != nil {
		return model.Output{}, err
	}
	if _, err := io.Copy(c, f); err != nil {
		c.Close()
		return model.Output{}, err
	}
	c.Close()
	s := c.Summary()
	return model.Output{Bytes: s.Bytes, SHA256: s.SHA256, Head: s.Head, Tail: s.Tail, Truncated: s.Truncated}, nil
}

// pullLoop asks the leader for pending tasks at start, when a run notice
// arrives, and every minute: a node that was down or partitioned when its
// task was sent picks it up without waiting for the watchdog.
func (w *Worker) pullLoop() {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	w.pull()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-w.pullNow:
		case <-tick.C:
		}
		w.pull()
	}
}

func (w *Worker) pull() {
	ctx, cancel := context.WithTimeout(w.ctx, 10*time.Second)
	defer cancel()
	var resp PullResponse
	err := w.cfg.Server.CallLeader(ctx, func(ctx context.Context, m mesh.Member) error {
		r, err := callMember[PullRequest, PullResponse](ctx, w.cfg.Host, m, protoPull, PullRequest{Node: w.cfg.Name})
		resp = r
		return err
	})
	if err != nil {
		w.log.Debug("cannot pull pending tasks", "error", err)
		return
	}
	for _, env := range resp.Tasks {
		t, err := VerifyTask(env, w.cfg.Name, time.Now(), w.authorizedSigner)
		if err != nil {
			w.log.Warn("refused a pulled task", "error", err)
			continue
		}
		if _, err := w.accept(t); err != nil {
			w.log.Warn("cannot accept a pulled task", "run", t.RunID, "error", err)
		}
	}
}

// noticeLoop turns gossip run notices into pulls: the leader's direct
// delivery is the fast path, the notice the spread path that reaches a
// node the leader could not.
func (w *Worker) noticeLoop() {
	sub := w.cfg.LAN.Subscribe()
	defer sub.Close()
	for {
		select {
		case <-w.ctx.Done():
			return
		case ev, ok := <-sub.C:
			if !ok {
				return
			}
			if ev.Type != mesh.EventUser || ev.User == nil || ev.User.Name != noticeEvent {
				continue
			}
			n, err := decodeNotice(ev.User.Payload)
			if err != nil || !n.mayTarget(w.cfg.Name) {
				continue
			}
			if _, known, _ := w.store.get(n.RunID, w.cfg.Name); known {
				continue
			}
			// Give the direct delivery (and its retries) time to arrive
			// first; spread the pulls of a big run over a few seconds.
			select {
			case <-w.ctx.Done():
				return
			case <-time.After(noticePullDelay + rand.N(noticePullJitter)):
			}
			if _, known, _ := w.store.get(n.RunID, w.cfg.Name); !known {
				select {
				case w.pullNow <- struct{}{}:
				default:
				}
			}
		}
	}
}

// A noticed node waits noticePullDelay plus up to noticePullJitter for the
// direct delivery before it pulls: the leader retries deliveries every few
// seconds, so the pull is the fallback for a node it cannot reach, not a
// race with it.
const (
	noticePullDelay  = 5 * time.Second
	noticePullJitter = 5 * time.Second
)

func (w *Worker) pruneLoop() {
	tick := time.NewTicker(time.Hour)
	defer tick.Stop()
	for {
		gone, err := w.store.prune(time.Now().Add(-w.cfg.OutputRetention))
		if err != nil {
			w.log.Warn("cannot prune old tasks", "error", err)
		}
		for _, rec := range gone {
			_ = os.Remove(rec.Output)
			_ = os.Remove(filepath.Dir(rec.Output)) // only succeeds once empty
		}
		select {
		case <-w.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (w *Worker) handleCancel(_ context.Context, from peer.ID, req CancelRequest) (struct{}, error) {
	if !w.authorizedSigner(from.String()) {
		return struct{}{}, p2p.Errorf(p2p.CodeForbidden, "only control members of %s may cancel tasks", w.cfg.IDC)
	}
	w.mu.Lock()
	cancel := w.running[string(taskKey(req.RunID, req.Host))]
	w.mu.Unlock()
	if cancel != nil {
		w.log.Info("cancelling a task", "run", req.RunID, "host", req.Host)
		cancel()
	}
	return struct{}{}, nil
}

// maxLogChunk bounds one logs answer below the stream message limit.
const maxLogChunk = 1 << 20

func (w *Worker) handleLogs(_ context.Context, _ peer.ID, req LogsRequest) (model.LogChunk, error) {
	rec, ok, err := w.store.get(req.RunID, req.Host)
	if err != nil {
		return model.LogChunk{}, p2p.Errorf(p2p.CodeInternal, "%v", err)
	}
	if !ok {
		return model.LogChunk{}, p2p.Errorf(p2p.CodeNotFound, "%s has no output of run %s for host %s (never ran here, or pruned)", w.cfg.Name, req.RunID, req.Host)
	}
	return readChunk(rec, req)
}

func readChunk(rec taskRecord, req LogsRequest) (model.LogChunk, error) {
	max := req.Max
	if max <= 0 || max > maxLogChunk {
		max = maxLogChunk
	}
	out := model.LogChunk{Host: req.Host, Offset: req.Offset}
	f, err := os.Open(rec.Output)
	if errors.Is(err, os.ErrNotExist) {
		out.Done = rec.Result != nil
		return out, nil
	}
	if err != nil {
		return out, p2p.Errorf(p2p.CodeInternal, "%v", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return out, p2p.Errorf(p2p.CodeInternal, "%v", err)
	}
	out.Size = st.Size()
	if req.Offset < 0 || req.Offset > out.Size {
		return out, p2p.Errorf(p2p.CodeBadRequest, "offset %d is outside the output (%d bytes)", req.Offset, out.Size)
	}
	buf := make([]byte, min(int64(max), out.Size-req.Offset))
	n, err := f.ReadAt(buf, req.Offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return out, p2p.Errorf(p2p.CodeInternal, "%v", err)
	}
	out.Data = buf[:n]
	out.Done = rec.Result != nil && req.Offset+int64(n) >= out.Size
	return out, nil
}

// callMember calls m over the node's stream host.
func callMember[Req, Resp any](ctx context.Context, h *p2p.Host, m mesh.Member, proto protocol.ID, req Req) (Resp, error) {
	id, err := peer.Decode(m.Meta.ID)
	if err != nil {
		var zero Resp
		return zero, fmt.Errorf("member %s has a bad peer id: %w", m.Name, err)
	}
	return p2p.CallJSON[Req, Resp](ctx, h, id, m.Meta.P2P, proto, req)
}
