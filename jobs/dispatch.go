package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/libp2p/go-libp2p/core/peer"
	"time"

	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
)

// taskLifetime is how long a signed task may wait before its executor
// refuses to start it; each delivery signs anew.
const taskLifetime = 10 * time.Minute

// deliverTimeout bounds one delivery attempt.
const deliverTimeout = 5 * time.Second

// task builds the task of host in run r for executor node exec.
func (s *Scheduler) task(r *model.Run, host model.HostResult, exec string, sshHosts map[string]model.SSHHost) (Task, error) {
	t := Task{
		RunID: r.ID, IDC: r.IDC, Host: host.Host, Executor: exec, Kind: host.Kind,
		Script: r.Script, OSUser: r.OSUser, Push: r.Push, Issued: time.Now(),
	}
	t.Expires = t.Issued.Add(taskLifetime)
	if host.Kind == model.TargetSSH {
		h, ok := sshHosts[host.Host]
		if !ok {
			return Task{}, fmt.Errorf("SSH host %s is no longer registered", host.Host)
		}
		t.SSH = &h
	}
	return t, nil
}

// deliver signs host's task and sends it to exec without blocking the
// watchdog; the acknowledgement moves the host to running.
func (s *Scheduler) deliver(t *term, r *model.Run, host model.HostResult, exec string) {
	var sshHosts map[string]model.SSHHost
	if host.Kind == model.TargetSSH {
		sshHosts = s.sshHostsMap()
	}
	task, err := s.task(r, host, exec, sshHosts)
	done := func(errText string) {
		t.mu.Lock()
		st := t.state(r.ID, host.Host)
		st.inflight = false
		st.lastErr = errText
		t.mu.Unlock()
	}
	if err != nil {
		done(err.Error())
		return
	}
	env, err := SignTask(s.key, task)
	if err != nil {
		done(err.Error())
		return
	}
	m, ok := s.cfg.LAN.Member(exec)
	if !ok {
		done("not a member")
		return
	}
	go func() {
		select {
		case t.sem <- struct{}{}:
		case <-t.ctx.Done():
			done("leadership lost")
			return
		}
		defer func() { <-t.sem }()
		ctx, cancel := context.WithTimeout(t.ctx, deliverTimeout)
		ack, err := Deliver(ctx, s.cfg.Host, m, env)
		cancel()
		if err != nil {
			s.log.Debug("delivery failed", "run", r.ID, "host", host.Host, "executor", exec, "error", err)
			done(err.Error())
			return
		}
		done("")
		if host.Status == model.HostPending {
			started := ack.Accepted
			s.enqueue(t, r.ID, []model.HostResult{{
				Host: host.Host, Kind: host.Kind, Status: model.HostRunning, Node: exec, ExitCode: -1, Started: &started,
			}}, nil)
		}
	}()
}

// sendCancel asks a running host's executor to stop it.
func (s *Scheduler) sendCancel(t *term, runID string, host model.HostResult) {
	m, ok := s.cfg.LAN.Member(host.Node)
	if !ok {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(t.ctx, deliverTimeout)
		defer cancel()
		if _, err := callMember[CancelRequest, struct{}](ctx, s.cfg.Host, m, protoCancel, CancelRequest{RunID: runID, Host: host.Host}); err != nil {
			s.log.Warn("cannot send a cancel", "run", runID, "host", host.Host, "node", host.Node, "error", err)
		}
	}()
}

// notify gossips a notice of run r: the spread path next to the direct
// deliveries.
func (s *Scheduler) notify(r *model.Run, executors []string) {
	n := notice{RunID: r.ID}
	if len(executors) <= maxNoticeHosts {
		n.Hosts = executors
	}
	if err := s.cfg.LAN.UserEvent(noticeEvent, encodeNotice(n)); err != nil {
		s.log.Warn("cannot gossip a run notice", "run", r.ID, "error", err)
	}
}

// handlePull answers a node asking for its pending tasks. It must stay
// cheap: after a big run's notice, many nodes may ask at once. So it reads
// the asker's own host record per run (from the term's cached target
// sets), never whole runs, except to place SSH targets.
func (s *Scheduler) handlePull(_ context.Context, _ peer.ID, req PullRequest) (PullResponse, error) {
	t := s.current()
	if t == nil {
		return PullResponse{}, p2p.Errorf(p2p.CodeUnavailable, "%s is not the leader", s.cfg.Name)
	}
	store := s.cfg.Server.Store()
	ids, err := activeRuns(store, s.cfg.IDC)
	if err != nil {
		return PullResponse{}, p2p.Errorf(p2p.CodeInternal, "%v", err)
	}
	var (
		members  map[string]mesh.Member
		agents   []string
		sshHosts map[string]model.SSHHost
	)
	out := PullResponse{Tasks: []Envelope{}}
	for _, id := range ids {
		ts, err := s.targetsOf(t, id)
		if err != nil {
			continue
		}
		var mine []model.Target
		if tg, ok := ts.byName[req.Node]; ok && tg.Kind == model.TargetAgent {
			mine = append(mine, tg)
		}
		if len(ts.ssh) > 0 {
			if members == nil {
				members = s.membersByName()
				agents = aliveAgents(members, s.cfg.IDC)
			}
			for _, tg := range ts.ssh {
				if exec, why := executorFor(tg.Name, tg.Kind, members, agents); why == "" && exec == req.Node {
					mine = append(mine, tg)
				}
			}
		}
		if len(mine) == 0 {
			continue
		}
		_, r, err := readRun(nil, store, runQuery{IDC: s.cfg.IDC, ID: id})
		if err != nil || r == nil || r.Run.Cancelled || r.Run.Status != model.RunRunning {
			continue
		}
		for _, tg := range mine {
			if _, rec, err := store.KVGet(nil, s.cfg.IDC, runHostKey(id, tg.Name)); err != nil || rec != nil {
				continue // not pending
			}
			if tg.Kind == model.TargetSSH && sshHosts == nil {
				sshHosts = s.sshHostsMap()
			}
			h := model.HostResult{Host: tg.Name, Kind: tg.Kind, Status: model.HostPending}
			task, err := s.task(&r.Run, h, req.Node, sshHosts)
			if err != nil {
				continue
			}
			env, err := SignTask(s.key, task)
			if err != nil {
				return PullResponse{}, p2p.Errorf(p2p.CodeInternal, "%v", err)
			}
			out.Tasks = append(out.Tasks, env)
		}
	}
	return out, nil
}

// runTargets is a run's target list, indexed; a run's targets never
// change, so a term caches them.
type runTargets struct {
	byName map[string]model.Target
	ssh    []model.Target
}

func (s *Scheduler) targetsOf(t *term, runID string) (*runTargets, error) {
	t.mu.Lock()
	ts := t.targets[runID]
	t.mu.Unlock()
	if ts != nil {
		return ts, nil
	}
	_, e, err := s.cfg.Server.Store().KVGet(nil, s.cfg.IDC, runTargetsKey(runID))
	if err != nil || e == nil {
		return nil, fmt.Errorf("targets of run %s: %v", runID, err)
	}
	var list []model.Target
	if err := json.Unmarshal(e.Value, &list); err != nil {
		return nil, err
	}
	ts = &runTargets{byName: make(map[string]model.Target, len(list))}
	for _, tg := range list {
		ts.byName[tg.Name] = tg
		if tg.Kind == model.TargetSSH {
			ts.ssh = append(ts.ssh, tg)
		}
	}
	t.mu.Lock()
	if t.targets == nil {
		t.targets = map[string]*runTargets{}
	}
	t.targets[runID] = ts
	t.mu.Unlock()
	return ts, nil
}

// Deliver sends a signed task to its executor m and returns the
// acknowledgement. The leader's scheduler is its caller; tests use it to
// prove that agents refuse what the control group did not sign.
func Deliver(ctx context.Context, h *p2p.Host, m mesh.Member, env Envelope) (DeliverAck, error) {
	return callMember[Envelope, DeliverAck](ctx, h, m, protoDeliver, env)
}
