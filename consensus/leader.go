package consensus

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// routines is a set of named goroutines that live and die together: the
// leader-only work of one term of leadership. Go refuses new routines once
// Stop has begun, so nothing started late can outlive the term.
type routines struct {
	log    *slog.Logger
	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newRoutines(parent context.Context, log *slog.Logger) *routines {
	ctx, cancel := context.WithCancel(parent)
	return &routines{log: log, ctx: ctx, cancel: cancel}
}

// Go runs fn(ctx) as the routine name; it reports false when the set is
// already stopping.
func (s *routines) Go(name string, fn func(ctx context.Context)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.log.Debug("leader routine started", "routine", name)
		fn(s.ctx)
		s.log.Debug("leader routine stopped", "routine", name)
	}()
	return true
}

// Cancel asks every routine to stop without waiting.
func (s *routines) Cancel() {
	s.mu.Lock()
	s.cancel()
	s.mu.Unlock()
}

// Stop cancels every routine and waits until all have returned.
func (s *routines) Stop() {
	s.Cancel()
	s.wg.Wait()
}

// monitor follows one raft instance's leadership: it starts the leader
// routines on every gain of leadership and stops them on every loss, and
// kicks the run loop so the advertised role follows at once. raft's
// LeaderCh keeps only the latest value, so two trues in a row mean the
// leadership was lost and regained in between: the routines restart.
func (g *Group) monitor(m *member) {
	defer close(m.done)
	leaderCh := m.r.raft.LeaderCh()
	for {
		select {
		case isLeader := <-leaderCh:
			m.revoke(g.log)
			if isLeader && !m.closing.Load() && g.ctx.Err() == nil {
				g.establish(m)
			}
			g.kick()
		case <-m.obsCh:
			g.kick()
		case <-m.stop:
			m.revoke(g.log)
			return
		}
	}
}

// establish starts the leader routines of a new term: first a barrier, so
// that the FSM has applied everything earlier leaders committed, then the
// autopilot and the configured Leadership function.
func (g *Group) establish(m *member) {
	term := m.r.raft.CurrentTerm()
	log := g.log.With("term", term)
	s := newRoutines(g.ctx, log)
	m.sessMu.Lock()
	m.sess = s
	m.sessMu.Unlock()
	log.Info("leadership gained")
	s.Go("establish", func(ctx context.Context) {
		if !g.barrier(ctx, m.r.raft) {
			return
		}
		log.Info("leadership established")
		s.Go("autopilot", func(ctx context.Context) { g.runAutopilot(ctx, m) })
		if g.cfg.Leadership != nil {
			s.Go("leadership", g.cfg.Leadership)
		}
	})
}

// revoke stops the current term's leader routines, if any.
func (m *member) revoke(log *slog.Logger) {
	m.sessMu.Lock()
	s := m.sess
	m.sess = nil
	m.sessMu.Unlock()
	if s != nil {
		s.Stop()
		log.Info("leadership lost")
	}
}

// cancelLeadership asks the current term's routines to stop, without
// waiting (the monitor waits for them).
func (m *member) cancelLeadership() {
	m.sessMu.Lock()
	s := m.sess
	m.sessMu.Unlock()
	if s != nil {
		s.Cancel()
	}
}

// barrier waits until raft has applied every entry of earlier terms,
// retrying until it succeeds or leadership (ctx) ends. It reports success.
func (g *Group) barrier(ctx context.Context, r *raft.Raft) bool {
	wait := g.cfg.Raft.ElectionTimeout
	for ctx.Err() == nil {
		err := r.Barrier(changeTimeout).Error()
		if err == nil {
			return true
		}
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
			return false
		}
		g.log.Warn("leader barrier failed, retrying", "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return false
}
