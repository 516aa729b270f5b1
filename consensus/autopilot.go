package consensus

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
)

// Autopilot health thresholds.
const (
	// maxTrailingLogs is how far behind the leader's last index a server
	// may be and still count as caught up.
	maxTrailingLogs = 250
	// maxInvitesPerRound bounds the join calls of one round when the
	// preferred nodes refuse (leaving) or do not answer.
	maxInvitesPerRound = 3
)

// apServer is one server of the configuration as the autopilot sees it.
type apServer struct {
	ID, Addr string // raft ID (name) and address (peer ID)
	Voter    bool
	Leader   bool
	Zone     string
	Status   mesh.Status // gossip status; "" when gossip does not know it
	Since    time.Time   // when Status last changed (first noticed, for "")
	PeerID   string      // peer ID in gossip ("" if unknown)
	// Healthy: alive, raft open in the leader's term, caught up and in
	// recent contact; HealthySince is the start of the current streak.
	Healthy      bool
	HealthySince time.Time
	// NeedsOpen: alive in gossip but its raft is not running.
	NeedsOpen bool
}

// apCandidate is a live node of the IDC that is not a raft server.
type apCandidate struct {
	Name, PeerID, Zone string
}

// apInput is everything one autopilot decision depends on.
type apInput struct {
	Now               time.Time
	Target            int
	DeadServerTimeout time.Duration
	StabilizationTime time.Duration
	Servers           []apServer
	Candidates        []apCandidate
}

// apKind is what an action does.
type apKind int

const (
	apRemove     apKind = iota + 1 // RemoveServer
	apUpdateAddr                   // re-add with the address gossip shows (the peer ID changed)
	apReopen                       // ask a server to open its raft (join RPC)
	apDemote                       // DemoteVoter
	apPromote                      // AddVoter on a non-voter
	apInvite                       // join RPC to the first willing candidate, then AddNonvoter
)

func (k apKind) String() string {
	switch k {
	case apRemove:
		return "remove"
	case apUpdateAddr:
		return "update-address"
	case apReopen:
		return "reopen"
	case apDemote:
		return "demote"
	case apPromote:
		return "promote"
	case apInvite:
		return "invite"
	}
	return fmt.Sprintf("action-%d", int(k))
}

// apAction is one step of a plan.
type apAction struct {
	Kind   apKind
	ID     string // server (all but invite)
	Addr   string // address for update-address and promote
	Voter  bool   // update-address: keep as voter
	Invite []apCandidate
	Reason string
}

func (a apAction) String() string {
	if a.Kind == apInvite {
		names := make([]string, len(a.Invite))
		for i, c := range a.Invite {
			names[i] = c.Name
		}
		return "invite one of [" + strings.Join(names, " ") + "]: " + a.Reason
	}
	return a.Kind.String() + " " + a.ID + ": " + a.Reason
}

// planAutopilot decides the configuration changes for one round, in the
// order they are to be made. It is pure: the same input gives the same plan.
//
//  1. Remove servers failed or left in gossip (or unknown to it) for at
//     least DeadServerTimeout: non-voters freely, voters at most
//     (voters-1)/2 per round, so the voters that remain still form a
//     majority of the old configuration.
//  2. Re-address live servers whose peer ID changed; ask live servers
//     whose raft is not running to open it.
//  3. Demote voters beyond Target: unhealthy first, then from the zone with
//     the most voters.
//  4. Promote non-voters healthy for StabilizationTime while voters <
//     Target, each time from the zone with the fewest voters.
//  5. Remove non-voters beyond Target-voters: unhealthy first.
//  6. While voters+non-voters < Target, invite a candidate, preferring the
//     zone with the fewest servers.
func planAutopilot(in apInput) []apAction {
	servers := slices.Clone(in.Servers)
	slices.SortFunc(servers, func(a, b apServer) int { return strings.Compare(a.ID, b.ID) })
	var plan []apAction
	gone := map[string]bool{}

	dead := func(s apServer) bool {
		if s.Leader {
			return false
		}
		switch s.Status {
		case mesh.StatusFailed, mesh.StatusLeft, "":
			return in.Now.Sub(s.Since) >= in.DeadServerTimeout
		}
		return false
	}
	nVoters := 0
	for _, s := range servers {
		if s.Voter {
			nVoters++
		}
	}
	maxRemoval := (nVoters - 1) / 2
	for _, s := range servers {
		if !dead(s) {
			continue
		}
		status := string(s.Status)
		if status == "" {
			status = "unknown to gossip"
		}
		reason := fmt.Sprintf("%s for %s", status, in.Now.Sub(s.Since).Round(time.Millisecond))
		if s.Voter {
			if maxRemoval == 0 {
				continue // removing it would leave fewer than a majority of the old voters
			}
			maxRemoval--
			nVoters--
		}
		gone[s.ID] = true
		plan = append(plan, apAction{Kind: apRemove, ID: s.ID, Reason: reason})
	}

	var voters, nonvoters []apServer
	for _, s := range servers {
		if gone[s.ID] {
			continue
		}
		if isLive(s.Status) && s.PeerID != "" && s.PeerID != s.Addr {
			plan = append(plan, apAction{Kind: apUpdateAddr, ID: s.ID, Addr: s.PeerID, Voter: s.Voter,
				Reason: "peer ID changed from " + s.Addr})
			s.Addr = s.PeerID
		} else if s.NeedsOpen && isLive(s.Status) {
			plan = append(plan, apAction{Kind: apReopen, ID: s.ID, Addr: s.Addr, Reason: "alive but raft not running"})
		}
		if s.Voter {
			voters = append(voters, s)
		} else {
			nonvoters = append(nonvoters, s)
		}
	}
	zoneVoters := func() map[string]int {
		z := map[string]int{}
		for _, v := range voters {
			z[v.Zone]++
		}
		return z
	}

	// 3. Demote extra voters.
	for len(voters) > in.Target {
		z := zoneVoters()
		i := pickIndex(voters, func(s apServer) bool { return !s.Leader }, func(a, b apServer) int {
			return cmp.Or(
				cmpBool(!a.Healthy, !b.Healthy),   // unhealthy first
				cmp.Compare(z[b.Zone], z[a.Zone]), // most crowded zone first
				strings.Compare(b.ID, a.ID),       // then the last by name
			)
		})
		if i < 0 {
			break
		}
		s := voters[i]
		plan = append(plan, apAction{Kind: apDemote, ID: s.ID, Reason: fmt.Sprintf("%d voters, target %d", len(voters), in.Target)})
		voters = slices.Delete(voters, i, i+1)
		s.Voter = false
		nonvoters = append(nonvoters, s)
	}

	// 4. Promote stable non-voters.
	for len(voters) < in.Target {
		z := zoneVoters()
		i := pickIndex(nonvoters, func(s apServer) bool {
			return s.Healthy && isLive(s.Status) && in.Now.Sub(s.HealthySince) >= in.StabilizationTime
		}, func(a, b apServer) int {
			return cmp.Or(cmp.Compare(z[a.Zone], z[b.Zone]), strings.Compare(a.ID, b.ID))
		})
		if i < 0 {
			break
		}
		s := nonvoters[i]
		plan = append(plan, apAction{Kind: apPromote, ID: s.ID, Addr: s.Addr,
			Reason: fmt.Sprintf("%d voters, target %d; zone %q has %d", len(voters), in.Target, s.Zone, z[s.Zone])})
		nonvoters = slices.Delete(nonvoters, i, i+1)
		s.Voter = true
		voters = append(voters, s)
	}

	// 5. Remove non-voters the target has no room for.
	for len(voters)+len(nonvoters) > in.Target && len(nonvoters) > 0 {
		i := pickIndex(nonvoters, nil, func(a, b apServer) int {
			return cmp.Or(
				cmpBool(!a.Healthy, !b.Healthy),        // unhealthy first
				b.HealthySince.Compare(a.HealthySince), // then the least stable
				strings.Compare(b.ID, a.ID),
			)
		})
		s := nonvoters[i]
		plan = append(plan, apAction{Kind: apRemove, ID: s.ID,
			Reason: fmt.Sprintf("%d voters and %d non-voters exceed the target %d", len(voters), len(nonvoters), in.Target)})
		nonvoters = slices.Delete(nonvoters, i, i+1)
	}

	// 6. Invite.
	if len(voters)+len(nonvoters) < in.Target && len(in.Candidates) > 0 {
		zs := map[string]int{}
		for _, s := range append(slices.Clone(voters), nonvoters...) {
			zs[s.Zone]++
		}
		cands := slices.Clone(in.Candidates)
		slices.SortFunc(cands, func(a, b apCandidate) int {
			return cmp.Or(cmp.Compare(zs[a.Zone], zs[b.Zone]), strings.Compare(a.Name, b.Name))
		})
		plan = append(plan, apAction{Kind: apInvite, Invite: cands,
			Reason: fmt.Sprintf("%d servers, target %d", len(voters)+len(nonvoters), in.Target)})
	}
	return plan
}

// pickIndex returns the index of the smallest element by less among those
// ok accepts (nil accepts all), or -1.
func pickIndex(s []apServer, ok func(apServer) bool, compare func(a, b apServer) int) int {
	best := -1
	for i, v := range s {
		if ok != nil && !ok(v) {
			continue
		}
		if best < 0 || compare(v, s[best]) < 0 {
			best = i
		}
	}
	return best
}

// cmpBool orders true before false.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	default:
		return 1
	}
}

// autopilot is the leader's state across rounds of one term.
type autopilot struct {
	g            *Group
	m            *member
	healthySince map[string]time.Time
	absentSince  map[string]time.Time
}

// runAutopilot runs rounds every AutopilotInterval until ctx ends.
func (g *Group) runAutopilot(ctx context.Context, m *member) {
	ap := &autopilot{g: g, m: m, healthySince: map[string]time.Time{}, absentSince: map[string]time.Time{}}
	defer g.setHealth(nil)
	t := time.NewTicker(g.cfg.AutopilotInterval)
	defer t.Stop()
	for {
		ap.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// round observes, plans and acts once.
func (ap *autopilot) round(ctx context.Context) {
	g, r := ap.g, ap.m.r.raft
	if r.State() != raft.Leader {
		return
	}
	in := ap.observe(ctx, r)
	if ctx.Err() != nil {
		return
	}
	for _, a := range planAutopilot(in) {
		if ctx.Err() != nil {
			return
		}
		if err := ap.apply(ctx, r, a); err != nil {
			g.log.Warn("autopilot: action failed", "action", a.String(), "err", err)
			return // the configuration may have moved on; re-plan next round
		}
	}
}

// observe gathers the autopilot's input: the configuration, gossip and
// every server's raft progress.
func (ap *autopilot) observe(ctx context.Context, r *raft.Raft) apInput {
	g := ap.g
	now := time.Now()
	conf := latestConfiguration(r)
	byName := map[string]mesh.Member{}
	for _, mem := range g.cfg.Mesh.Members() {
		byName[mem.Name] = mem
	}
	stats := ap.probe(ctx, conf)
	leaderTerm, leaderLast := r.CurrentTerm(), r.LastIndex()
	contactLimit := max(2*g.cfg.Raft.HeartbeatTimeout, 500*time.Millisecond)

	in := apInput{
		Now:               now,
		Target:            g.cfg.ControlSize,
		DeadServerTimeout: g.cfg.DeadServerTimeout,
		StabilizationTime: g.cfg.StabilizationTime,
	}
	health := map[string]bool{}
	inConf := map[string]bool{}
	for _, s := range conf.Servers {
		id := string(s.ID)
		inConf[id] = true
		srv := apServer{ID: id, Addr: string(s.Address), Voter: s.Suffrage == raft.Voter, Leader: id == g.cfg.Name}
		mem, known := byName[id]
		if known {
			srv.Status, srv.Since, srv.Zone, srv.PeerID = mem.Status, mem.Since, mem.Meta.Zone, mem.Meta.ID
			delete(ap.absentSince, id)
		} else {
			if _, ok := ap.absentSince[id]; !ok {
				ap.absentSince[id] = now
			}
			srv.Since = ap.absentSince[id]
		}
		st, answered := stats[id]
		switch {
		case srv.Leader:
			srv.Healthy = true
		case known && isLive(mem.Status) && answered:
			srv.NeedsOpen = !st.Open
			srv.Healthy = st.Open && st.Term == leaderTerm &&
				st.LastIndex+maxTrailingLogs >= leaderLast &&
				st.LastContactMS >= 0 && time.Duration(st.LastContactMS)*time.Millisecond <= contactLimit
		}
		if srv.Healthy {
			if _, ok := ap.healthySince[id]; !ok {
				ap.healthySince[id] = now
			}
			srv.HealthySince = ap.healthySince[id]
		} else {
			delete(ap.healthySince, id)
		}
		health[id] = srv.Healthy
		in.Servers = append(in.Servers, srv)
	}
	// A server that left the configuration starts afresh if it returns:
	// its stabilization counts from its new addition.
	for id := range ap.absentSince {
		if !inConf[id] {
			delete(ap.absentSince, id)
		}
	}
	for id := range ap.healthySince {
		if !inConf[id] {
			delete(ap.healthySince, id)
		}
	}
	for _, mem := range byName {
		if mem.Status != mesh.StatusAlive || inConf[mem.Name] || mem.Meta.ID == "" || mem.Meta.IDC != g.cfg.IDC {
			continue
		}
		in.Candidates = append(in.Candidates, apCandidate{Name: mem.Name, PeerID: mem.Meta.ID, Zone: mem.Meta.Zone})
	}
	g.setHealth(health)
	return in
}

// probe asks every other server of conf for its raft progress, in
// parallel; servers that do not answer are missing from the result.
func (ap *autopilot) probe(ctx context.Context, conf raft.Configuration) map[string]statsResponse {
	g := ap.g
	ctx, cancel := context.WithTimeout(ctx, g.callTimeout())
	defer cancel()
	var mu sync.Mutex
	out := map[string]statsResponse{}
	var wg sync.WaitGroup
	for _, s := range conf.Servers {
		if string(s.ID) == g.cfg.Name {
			continue
		}
		to, err := p2p.ParsePeerID(string(s.Address))
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr, _ := g.resolve(string(s.Address))
			resp, err := p2p.CallJSON[statsRequest, statsResponse](ctx, g.cfg.Host, to, addr, StatsProtocol, statsRequest{})
			if err != nil || resp.Name != string(s.ID) {
				return
			}
			mu.Lock()
			out[string(s.ID)] = resp
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// apply carries out one action.
func (ap *autopilot) apply(ctx context.Context, r *raft.Raft, a apAction) error {
	g := ap.g
	id := raft.ServerID(a.ID)
	switch a.Kind {
	case apRemove:
		if err := r.RemoveServer(id, 0, changeTimeout).Error(); err != nil {
			return err
		}
	case apDemote:
		if err := r.DemoteVoter(id, 0, changeTimeout).Error(); err != nil {
			return err
		}
	case apPromote:
		if err := r.AddVoter(id, raft.ServerAddress(a.Addr), 0, changeTimeout).Error(); err != nil {
			return err
		}
	case apUpdateAddr:
		var f raft.IndexFuture
		if a.Voter {
			f = r.AddVoter(id, raft.ServerAddress(a.Addr), 0, changeTimeout)
		} else {
			f = r.AddNonvoter(id, raft.ServerAddress(a.Addr), 0, changeTimeout)
		}
		if err := f.Error(); err != nil {
			return err
		}
	case apReopen:
		if _, err := ap.invite(ctx, r, a.ID, a.Addr); err != nil {
			g.log.Debug("autopilot: server did not reopen raft", "server", a.ID, "err", err)
		}
		return nil // not a configuration change; never blocks the plan
	case apInvite:
		for i, c := range a.Invite {
			if i == maxInvitesPerRound {
				break
			}
			resp, err := ap.invite(ctx, r, c.Name, c.PeerID)
			if err != nil {
				g.log.Debug("autopilot: invitation declined", "node", c.Name, "err", err)
				continue
			}
			if resp.Name != c.Name || resp.PeerID != c.PeerID {
				g.log.Warn("autopilot: invited node answered with another identity", "node", c.Name, "name", resp.Name, "peer_id", resp.PeerID)
				continue
			}
			if err := r.AddNonvoter(raft.ServerID(c.Name), raft.ServerAddress(c.PeerID), 0, changeTimeout).Error(); err != nil {
				return err
			}
			g.log.Info("autopilot: invite", "server", c.Name, "zone", c.Zone, "reason", a.Reason)
			return nil
		}
		return nil
	}
	g.log.Info("autopilot: "+a.Kind.String(), "server", a.ID, "reason", a.Reason)
	return nil
}

// invite sends the join RPC to a node.
func (ap *autopilot) invite(ctx context.Context, r *raft.Raft, name, peerID string) (joinResponse, error) {
	g := ap.g
	to, err := p2p.ParsePeerID(peerID)
	if err != nil {
		return joinResponse{}, fmt.Errorf("node %s: %w", name, err)
	}
	addr, _ := g.resolve(peerID)
	ctx, cancel := context.WithTimeout(ctx, changeTimeout)
	defer cancel()
	return p2p.CallJSON[joinRequest, joinResponse](ctx, g.cfg.Host, to, addr, JoinProtocol,
		joinRequest{IDC: g.cfg.IDC, Leader: g.cfg.Name, Term: r.CurrentTerm()})
}
