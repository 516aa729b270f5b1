package consensus

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/herd-io/herd/mesh/p2p"
)

// registerHandlers serves the control RPCs on the host. The host offers no
// way to unregister, so after the group stops they answer ErrStopped.
func (g *Group) registerHandlers() {
	p2p.HandleJSON(g.cfg.Host, BootstrapProtocol, g.handleBootstrap)
	p2p.HandleJSON(g.cfg.Host, JoinProtocol, g.handleJoin)
	p2p.HandleJSON(g.cfg.Host, RemoveProtocol, g.handleRemove)
	p2p.HandleJSON(g.cfg.Host, StatsProtocol, g.handleStats)
}

// handleJoin serves an invitation: open raft without bootstrapping, so the
// leader can add this node. A node whose raft is already open says yes at
// once (a server the leader finds not running raft is invited the same way).
func (g *Group) handleJoin(_ context.Context, from peer.ID, req joinRequest) (joinResponse, error) {
	if req.IDC != g.cfg.IDC {
		return joinResponse{}, p2p.Errorf(p2p.CodeBadRequest, "invitation for IDC %q, but %s is in %q", req.IDC, g.cfg.Name, g.cfg.IDC)
	}
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	switch {
	case g.isStopping():
		return joinResponse{}, p2p.Errorf(p2p.CodeUnavailable, "%s: %w", g.cfg.Name, ErrStopped)
	case g.leaving.Load():
		return joinResponse{}, p2p.Errorf(p2p.CodeForbidden, "%s is leaving the control group", g.cfg.Name)
	}
	if g.current() == nil {
		why := fmt.Sprintf("invited by %s (term %d)", req.Leader, req.Term)
		if err := g.openRaftLocked(nil, why); err != nil {
			return joinResponse{}, p2p.Errorf(p2p.CodeInternal, "%s: open raft: %v", g.cfg.Name, err)
		}
	}
	return joinResponse{Name: g.cfg.Name, PeerID: g.cfg.Host.ID().String()}, nil
}

// handleRemove runs on the leader: it removes the calling server, which is
// leaving gracefully. A server may only remove itself.
func (g *Group) handleRemove(_ context.Context, from peer.ID, req removeRequest) (removeResponse, error) {
	m := g.current()
	if m == nil {
		return removeResponse{}, p2p.Errorf(p2p.CodeUnavailable, "%s: %w", g.cfg.Name, ErrNotMember)
	}
	r := m.r.raft
	if r.State() != raft.Leader {
		_, leader := r.LeaderWithID()
		return removeResponse{}, p2p.Errorf(p2p.CodeUnavailable, "%s: %w (leader: %q)", g.cfg.Name, ErrNotLeader, leader)
	}
	srv, ok := findServer(latestConfiguration(r), req.Name)
	if !ok {
		return removeResponse{Index: r.LastIndex()}, nil // already gone
	}
	if string(srv.Address) != from.String() {
		return removeResponse{}, p2p.Errorf(p2p.CodeForbidden, "peer %s may not remove server %s: a server can only remove itself", from, req.Name)
	}
	if req.Name == g.cfg.Name {
		return removeResponse{}, p2p.Errorf(p2p.CodeUnavailable, "the leader does not remove itself: transfer leadership first")
	}
	f := r.RemoveServer(srv.ID, 0, changeTimeout)
	if err := f.Error(); err != nil {
		return removeResponse{}, p2p.Errorf(p2p.CodeUnavailable, "remove %s: %v", req.Name, err)
	}
	g.log.Info("server removed on its request", "server", req.Name, "index", f.Index())
	return removeResponse{Index: f.Index()}, nil
}

// handleStats reports this node's raft progress to the leader's autopilot.
func (g *Group) handleStats(context.Context, peer.ID, statsRequest) (statsResponse, error) {
	resp := statsResponse{Name: g.cfg.Name, LastContactMS: -1}
	m := g.current()
	if m == nil {
		return resp, nil
	}
	r := m.r.raft
	resp.Open = r.State() != raft.Shutdown
	resp.Term = r.CurrentTerm()
	resp.LastIndex = r.LastIndex()
	resp.AppliedIndex = r.AppliedIndex()
	if r.State() == raft.Leader {
		resp.LastContactMS = 0
	} else if lc := r.LastContact(); !lc.IsZero() {
		resp.LastContactMS = time.Since(lc).Milliseconds()
	}
	return resp, nil
}

// leaveRaft hands leadership over if this node leads, then asks the leader
// to remove this server, until that succeeds or ctx ends. The only voter
// of a group stays in its configuration: removing it would leave the
// group without voters, and its data remains usable on a restart.
func (g *Group) leaveRaft(ctx context.Context, m *member) error {
	r := m.r.raft
	retry := max(g.cfg.Raft.ElectionTimeout/2, 50*time.Millisecond)
	for attempt := 1; ; attempt++ {
		conf := latestConfiguration(r)
		if _, in := findServer(conf, g.cfg.Name); !in {
			return nil
		}
		if voters(conf) == 1 && isVoter(conf, g.cfg.Name) {
			g.log.Info("last voter leaving: the configuration stays as it is")
			return nil
		}
		if r.State() == raft.Leader {
			g.log.Info("transferring leadership before leaving")
			if err := r.LeadershipTransfer().Error(); err != nil {
				g.log.Warn("leadership transfer failed", "attempt", attempt, "err", err)
			}
		} else if addr, leader := r.LeaderWithID(); leader != "" {
			err := g.askRemove(ctx, string(addr))
			if err == nil {
				g.log.Info("removed from the control group", "leader", leader)
				return nil
			}
			g.log.Debug("leader did not remove us yet", "leader", leader, "attempt", attempt, "err", err)
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("consensus: leave: not removed from the configuration: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// askRemove sends the remove RPC for this node to the leader at peerID.
func (g *Group) askRemove(ctx context.Context, peerID string) error {
	to, err := p2p.ParsePeerID(peerID)
	if err != nil {
		return err
	}
	addr, _ := g.resolve(peerID)
	ctx, cancel := context.WithTimeout(ctx, changeTimeout)
	defer cancel()
	_, err = p2p.CallJSON[removeRequest, removeResponse](ctx, g.cfg.Host, to, addr, RemoveProtocol, removeRequest{Name: g.cfg.Name})
	return err
}

// voters counts the voters of c.
func voters(c raft.Configuration) int {
	n := 0
	for _, s := range c.Servers {
		if s.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

// isVoter reports whether name is a voter in c.
func isVoter(c raft.Configuration, name string) bool {
	s, ok := findServer(c, name)
	return ok && s.Suffrage == raft.Voter
}
