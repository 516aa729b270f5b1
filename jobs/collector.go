package jobs

import (
	"context"
	"encoding/json"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh/p2p"
)

// update is one host transition waiting to be committed; done (optional)
// receives the commit's outcome.
type update struct {
	runID  string
	result model.HostResult
	done   chan<- error
}

// Batching of host updates into raft commands: many hosts finish within
// milliseconds of each other, and one command per host would make the
// raft log the bottleneck of a 1,000-host run.
const (
	batchMaxHosts = 256
	batchMaxBytes = 256 << 10
	batchLinger   = 10 * time.Millisecond
)

// enqueue hands updates of one run to the collector.
func (s *Scheduler) enqueue(t *term, runID string, results []model.HostResult, done chan<- error) {
	for _, r := range results {
		select {
		case t.updates <- update{runID: runID, result: r, done: done}:
		case <-t.ctx.Done():
			if done != nil {
				done <- t.ctx.Err()
			}
		}
	}
}

// collect commits queued updates in batches until the term ends.
func (s *Scheduler) collect(t *term) {
	for {
		var batch []update
		select {
		case <-t.ctx.Done():
			s.drain(t)
			return
		case u := <-t.updates:
			batch = append(batch, u)
		}
		size := approxSize(batch[0].result)
		linger := time.NewTimer(batchLinger)
	fill:
		for len(batch) < batchMaxHosts && size < batchMaxBytes {
			select {
			case u := <-t.updates:
				batch = append(batch, u)
				size += approxSize(u.result)
			case <-linger.C:
				break fill
			}
		}
		linger.Stop()
		s.commit(t, batch)
	}
}

// drain fails everything still queued when the term ends: reporters retry
// on the next leader.
func (s *Scheduler) drain(t *term) {
	for {
		select {
		case u := <-t.updates:
			if u.done != nil {
				u.done <- t.ctx.Err()
			}
		default:
			return
		}
	}
}

func approxSize(r model.HostResult) int {
	return 512 + len(r.Output.Head) + len(r.Output.Tail) + len(r.Error)
}

// commit applies one batch, one HostsUpdate per run.
func (s *Scheduler) commit(t *term, batch []update) {
	byRun := map[string][]update{}
	var order []string
	for _, u := range batch {
		if _, ok := byRun[u.runID]; !ok {
			order = append(order, u.runID)
		}
		byRun[u.runID] = append(byRun[u.runID], u)
	}
	for _, runID := range order {
		us := byRun[runID]
		cmd := HostsUpdate{IDC: s.cfg.IDC, RunID: runID, Now: time.Now()}
		for _, u := range us {
			cmd.Updates = append(cmd.Updates, u.result)
		}
		ctx, cancel := context.WithTimeout(t.ctx, 10*time.Second)
		res, err := s.cfg.Server.Apply(ctx, "", HostsUpdateType, cmd)
		cancel()
		if err != nil {
			s.log.Warn("cannot commit host updates", "run", runID, "hosts", len(us), "error", err)
		} else {
			var out HostsUpdateResult
			if json.Unmarshal(res.Data, &out) == nil && out.Done {
				s.log.Info("run finished", "run", runID)
			}
		}
		for _, u := range us {
			if u.done != nil {
				u.done <- err
			}
		}
	}
	t.kick()
}

// handleReport takes a host's final result from its executor and answers
// once it is committed.
func (s *Scheduler) handleReport(ctx context.Context, _ peer.ID, rep Report) (HostsUpdateResult, error) {
	t := s.current()
	if t == nil {
		return HostsUpdateResult{}, p2p.Errorf(p2p.CodeUnavailable, "%s is not the leader", s.cfg.Name)
	}
	if rep.IDC != s.cfg.IDC {
		return HostsUpdateResult{}, p2p.Errorf(p2p.CodeBadRequest, "report for IDC %s sent to IDC %s", rep.IDC, s.cfg.IDC)
	}
	if !rep.Result.Status.Terminal() {
		return HostsUpdateResult{}, p2p.Errorf(p2p.CodeBadRequest, "report with non-terminal status %q", rep.Result.Status)
	}
	if err := model.ValidateRunID(rep.RunID); err != nil {
		return HostsUpdateResult{}, p2p.Errorf(p2p.CodeBadRequest, "%v", err)
	}
	if _, v, err := readRun(nil, s.cfg.Server.Store(), runQuery{IDC: s.cfg.IDC, ID: rep.RunID}); err == nil && v == nil {
		return HostsUpdateResult{}, p2p.Errorf(p2p.CodeNotFound, "no run %s", rep.RunID)
	}
	done := make(chan error, 1)
	s.enqueue(t, rep.RunID, []model.HostResult{rep.Result}, done)
	select {
	case err := <-done:
		if err != nil {
			return HostsUpdateResult{}, p2p.Errorf(p2p.CodeUnavailable, "commit: %v", err)
		}
		return HostsUpdateResult{Applied: 1}, nil
	case <-ctx.Done():
		return HostsUpdateResult{}, p2p.Errorf(p2p.CodeUnavailable, "commit: %v", ctx.Err())
	}
}
