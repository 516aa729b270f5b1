package consensus

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
)

// Bootstrap, after Consul's bootstrap_expect, made safe for nodes that all
// start at once:
//
//  1. While no live member of the IDC advertises a control role and at
//     least ControlSize nodes are alive, every node computes the same
//     candidate set from its gossip view (chooseBootstrapSet). Roles
//     advertised by members of the set itself (candidates that bootstrapped
//     already) do not stop the others; a role outside the set does.
//  2. Once a candidate's set has been unchanged for BootstrapStable, it
//     promises the set to itself and asks every other candidate to confirm
//     it. A node confirms only the set it computes itself, and a confirmed
//     set is a promise: for promiseTTL it confirms no other set and
//     bootstraps no other set.
//  3. With every confirmation in hand, within promiseTTL/2 of asking, each
//     candidate bootstraps raft with that identical configuration.
//
// Two different sets can never both be confirmed by all their members
// while a node in both holds its promise, and identical bootstrap
// configurations are interchangeable (same entry at index 1), so exactly
// one cluster forms. A candidate that missed its round is in the
// configuration anyway: seeing another candidate advertise a role, it
// opens raft without bootstrapping, so the bootstrapped ones can win its
// vote (raft grants votes while it has no configuration) and replicate to
// it; the leader's autopilot invites it too.

// bootstrapper is the bootstrap state of a node that is not yet a member.
type bootstrapper struct {
	mu        sync.Mutex
	view      []bootstrapServer // latest candidate set seen
	viewSince time.Time
	promised  []bootstrapServer
	until     time.Time         // promise expiry
	done      []bootstrapServer // the set this node bootstrapped with
	running   bool
	lastRound time.Time
	groupSeen time.Time // when a group was last seen to exist (run loop only)
}

// observe records the current candidate set and returns since when it has
// been unchanged.
func (b *bootstrapper) observe(set []bootstrapServer, now time.Time) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !slices.Equal(set, b.view) {
		b.view, b.viewSince = set, now
	}
	return b.viewSince
}

// activePromise returns the set promised, if the promise is in force.
func (b *bootstrapper) activePromise(now time.Time) []bootstrapServer {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.until) {
		return b.promised
	}
	return nil
}

// forget drops the observed set (it no longer applies).
func (b *bootstrapper) forget() {
	b.mu.Lock()
	b.view = nil
	b.mu.Unlock()
}

// promise commits this node to set until now+ttl, unless it is committed
// to a different set; it reports whether it is committed to set.
func (b *bootstrapper) promise(set []bootstrapServer, now time.Time, ttl time.Duration) (bool, []bootstrapServer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done != nil && !slices.Equal(b.done, set) {
		return false, b.done
	}
	if now.Before(b.until) && !slices.Equal(b.promised, set) {
		return false, b.promised
	}
	b.promised, b.until = set, now.Add(ttl)
	return true, nil
}

// holds reports whether this node's promise of set is still in force.
func (b *bootstrapper) holds(set []bootstrapServer, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return now.Before(b.until) && slices.Equal(b.promised, set)
}

// startRound claims the right to run a confirmation round; rounds do not
// overlap and are spaced by at least gap.
func (b *bootstrapper) startRound(now time.Time, gap time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running || now.Sub(b.lastRound) < gap {
		return false
	}
	b.running = true
	return true
}

func (b *bootstrapper) endRound(now time.Time) {
	b.mu.Lock()
	b.running, b.lastRound = false, now
	b.mu.Unlock()
}

func (b *bootstrapper) markDone(set []bootstrapServer) {
	b.mu.Lock()
	b.done = set
	b.mu.Unlock()
}

// promiseTTL is how long a confirmation binds a node.
func (g *Group) promiseTTL() time.Duration {
	return max(4*g.cfg.BootstrapStable, 10*g.cfg.Raft.ElectionTimeout, 2*time.Second)
}

// chooseBootstrapSet picks k of the live nodes, deterministically from the
// set alone so that every node with the same view picks the same: nodes in
// name order, spread over zones (each pass takes at most one more node per
// zone). With a single zone that is simply the first k names. nil if fewer
// than k nodes. The result is sorted by name.
func chooseBootstrapSet(alive []bootstrapServer, k int) []bootstrapServer {
	if k <= 0 || len(alive) < k {
		return nil
	}
	nodes := slices.Clone(alive)
	slices.SortFunc(nodes, func(a, b bootstrapServer) int { return strings.Compare(a.Name, b.Name) })
	picked := make([]bootstrapServer, 0, k)
	taken := make([]bool, len(nodes))
	perZone := map[string]int{}
	for pass := 0; len(picked) < k; pass++ {
		for i, n := range nodes {
			if taken[i] || perZone[n.Zone] != pass {
				continue
			}
			taken[i] = true
			perZone[n.Zone]++
			picked = append(picked, n)
			if len(picked) == k {
				break
			}
		}
	}
	slices.SortFunc(picked, func(a, b bootstrapServer) int { return strings.Compare(a.Name, b.Name) })
	return picked
}

// idcView returns the live members of the IDC that can run raft, and the
// names of other live members advertising a control role.
func (g *Group) idcView() (alive []bootstrapServer, controls []string) {
	g.scanIDC(func(mem *mesh.Member) {
		if mem.Meta.ID != "" {
			alive = append(alive, bootstrapServer{Name: mem.Name, PeerID: mem.Meta.ID, Zone: mem.Meta.Zone})
		}
	}, &controls)
	return alive, controls
}

// otherControls returns the names of other live members of the IDC
// advertising a control role: all that bootstrapStep needs once a group
// exists, which is what every plain node looks at every AutopilotInterval.
// It ranges over the members that carry a role, not the whole pool.
func (g *Group) otherControls() (controls []string) {
	g.cfg.Mesh.RangeRoled(func(mem *mesh.Member) bool {
		g.noteControl(mem, &controls)
		return true
	})
	return controls
}

// scanIDC calls fn with each live member of the IDC and appends the other
// ones advertising a control role to controls. It ranges over the pool
// rather than copying it.
func (g *Group) scanIDC(fn func(*mesh.Member), controls *[]string) {
	g.cfg.Mesh.RangeMembers(func(mem *mesh.Member) bool {
		if g.noteControl(mem, controls) {
			fn(mem)
		}
		return true
	})
}

// noteControl appends mem's name to controls if it is another live member
// of the IDC advertising a control role; it reports whether mem is a live
// member of the IDC at all.
func (g *Group) noteControl(mem *mesh.Member, controls *[]string) bool {
	if !isLive(mem.Status) || mem.Meta.IDC != g.cfg.IDC {
		return false
	}
	if mem.Name != g.cfg.Name && slices.ContainsFunc(mem.Meta.Roles, func(r string) bool { return slices.Contains(controlRoles, r) }) {
		*controls = append(*controls, mem.Name)
	}
	return true
}

// inSet reports whether the node name is in set.
func inSet(set []bootstrapServer, name string) bool {
	return slices.ContainsFunc(set, func(s bootstrapServer) bool { return s.Name == name })
}

// outside returns the first of names not in set, or "".
func outside(names []string, set []bootstrapServer) string {
	for _, n := range names {
		if !inSet(set, n) {
			return n
		}
	}
	return ""
}

func setNames(set []bootstrapServer) string {
	names := make([]string, len(set))
	for i, s := range set {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// bootstrapStep advances bootstrap by one reconcile (run loop only).
func (g *Group) bootstrapStep(now time.Time) {
	k, idc := g.cfg.ControlSize, g.cfg.IDC
	// A plain node of an IDC whose group exists has nothing to do here but
	// notice when that changes, and each look scans the whole pool, on
	// every node of the IDC: it looks again only every AutopilotInterval.
	if g.boot.activePromise(now) == nil && now.Sub(g.boot.groupSeen) < g.cfg.AutopilotInterval {
		return
	}
	g.boot.groupSeen = time.Time{}
	if controls := g.otherControls(); len(controls) > 0 {
		g.boot.groupSeen = now
		// A group exists. A candidate whose fellow candidates bootstrapped
		// without it opens raft to be reached; anyone else waits to be
		// invited.
		if set := g.boot.activePromise(now); inSet(set, g.cfg.Name) && outside(controls, set) == "" {
			g.openForBootstrapped(set)
		}
		g.boot.forget()
		g.setWaiting("")
		return
	}
	if g.cfg.MayBootstrap != nil && !g.cfg.MayBootstrap() {
		g.boot.forget()
		g.setWaiting(fmt.Sprintf("waiting to join the mesh before bootstrapping the control group of IDC %s", idc))
		return
	}
	alive, controls := g.idcView()
	if len(controls) > 0 {
		return // a group formed since the check above: the next tick sees it
	}
	if len(alive) < k {
		g.boot.forget()
		g.setWaiting(fmt.Sprintf("waiting for %d more alive nodes in IDC %s: have %d, control-size %d", k-len(alive), idc, len(alive), k))
		return
	}
	set := chooseBootstrapSet(alive, k)
	since := g.boot.observe(set, now)
	if !inSet(set, g.cfg.Name) {
		g.setWaiting(fmt.Sprintf("waiting for %s to bootstrap the control group of IDC %s", setNames(set), idc))
		return
	}
	if now.Sub(since) < g.cfg.BootstrapStable {
		g.setWaiting(fmt.Sprintf("bootstrapping the control group of IDC %s with %s: waiting for the set to hold steady for %s", idc, setNames(set), g.cfg.BootstrapStable))
		return
	}
	g.setWaiting(fmt.Sprintf("bootstrapping the control group of IDC %s with %s: confirming", idc, setNames(set)))
	if !g.boot.startRound(now, max(g.cfg.BootstrapStable/2, minTick)) {
		return
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer g.boot.endRound(time.Now())
		g.bootstrapRound(set)
	}()
}

// bootstrapRound collects every candidate's confirmation of set and then
// bootstraps raft with it.
func (g *Group) bootstrapRound(set []bootstrapServer) {
	start := time.Now()
	ttl := g.promiseTTL()
	if ok, other := g.boot.promise(set, start, ttl); !ok {
		g.log.Debug("bootstrap: bound to another candidate set", "set", setNames(other))
		return
	}
	ctx, cancel := context.WithTimeout(g.ctx, ttl/2)
	defer cancel()
	req := bootstrapRequest{IDC: g.cfg.IDC, ControlSize: g.cfg.ControlSize, Servers: set}
	errs := make([]error, len(set))
	var wg sync.WaitGroup
	for i, s := range set {
		if s.Name == g.cfg.Name {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			to, err := p2p.ParsePeerID(s.PeerID)
			if err == nil {
				addr, _ := g.resolve(s.PeerID)
				_, err = p2p.CallJSON[bootstrapRequest, bootstrapResponse](ctx, g.cfg.Host, to, addr, BootstrapProtocol, req)
			}
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", s.Name, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			g.log.Debug("bootstrap: candidate set not confirmed yet", "set", setNames(set), "err", err)
			return
		}
	}

	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	now := time.Now()
	g.mu.RLock()
	blocked := g.stopping || g.cur != nil || g.hasState
	g.mu.RUnlock()
	if blocked || g.leaving.Load() || now.Sub(start) >= ttl/2 || !g.boot.holds(set, now) {
		return
	}
	if _, controls := g.idcView(); outside(controls, set) != "" {
		return // a group outside the set exists
	}
	conf := raft.Configuration{}
	for _, s := range set {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.Name), Address: raft.ServerAddress(s.PeerID)})
	}
	if err := g.openRaftLocked(&conf, "bootstrap"); err != nil {
		g.log.Error("bootstrap failed", "err", err)
		return
	}
	g.boot.markDone(set)
	g.log.Info("bootstrapped the control group", "servers", setNames(set))
}

// openForBootstrapped opens raft without bootstrapping on a candidate of
// set that missed its round while others of set bootstrapped it.
func (g *Group) openForBootstrapped(set []bootstrapServer) {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	g.mu.RLock()
	blocked := g.stopping || g.cur != nil || g.hasState
	g.mu.RUnlock()
	if blocked || g.leaving.Load() {
		return
	}
	if err := g.openRaftLocked(nil, "fellow candidates of "+setNames(set)+" bootstrapped"); err != nil {
		g.log.Warn("could not open raft to join the bootstrapped group", "err", err)
	}
}

// handleBootstrap answers a candidate's request to confirm its set.
func (g *Group) handleBootstrap(_ context.Context, from peer.ID, req bootstrapRequest) (bootstrapResponse, error) {
	if g.isStopping() || g.leaving.Load() {
		return bootstrapResponse{}, p2p.Errorf(p2p.CodeUnavailable, "%s: %w", g.cfg.Name, ErrStopped)
	}
	if req.IDC != g.cfg.IDC {
		return bootstrapResponse{}, p2p.Errorf(p2p.CodeBadRequest, "bootstrap for IDC %q, but %s is in %q", req.IDC, g.cfg.Name, g.cfg.IDC)
	}
	if req.ControlSize != g.cfg.ControlSize {
		return bootstrapResponse{}, p2p.Errorf(p2p.CodeForbidden,
			"control size mismatch: %s expects %d voters, the caller %d: every node of an IDC needs the same --control-size",
			g.cfg.Name, g.cfg.ControlSize, req.ControlSize)
	}
	if !slices.ContainsFunc(req.Servers, func(s bootstrapServer) bool { return s.PeerID == from.String() }) {
		return bootstrapResponse{}, p2p.Errorf(p2p.CodeBadRequest, "the caller %s is not in the proposed set", from)
	}
	if !inSet(req.Servers, g.cfg.Name) {
		return bootstrapResponse{}, p2p.Errorf(p2p.CodeBadRequest, "%s is not in the proposed set [%s]", g.cfg.Name, setNames(req.Servers))
	}
	g.boot.mu.Lock()
	done := g.boot.done
	g.boot.mu.Unlock()
	if done != nil {
		if slices.Equal(done, req.Servers) {
			return bootstrapResponse{Confirmed: true}, nil
		}
		return bootstrapResponse{}, p2p.Errorf(p2p.CodeForbidden, "%s bootstrapped with %s", g.cfg.Name, setNames(done))
	}
	g.mu.RLock()
	member, has := g.cur != nil, g.hasState
	g.mu.RUnlock()
	if member || has {
		return bootstrapResponse{}, p2p.Errorf(p2p.CodeForbidden, "%s already has raft state", g.cfg.Name)
	}
	alive, controls := g.idcView()
	if other := outside(controls, req.Servers); other != "" {
		return bootstrapResponse{}, p2p.Errorf(p2p.CodeForbidden, "a control group exists (%s advertises a role)", other)
	}
	mine := chooseBootstrapSet(alive, g.cfg.ControlSize)
	if !slices.Equal(mine, req.Servers) {
		return bootstrapResponse{}, p2p.Errorf(p2p.CodeForbidden, "%s sees the candidate set [%s], not [%s]", g.cfg.Name, setNames(mine), setNames(req.Servers))
	}
	if ok, other := g.boot.promise(mine, time.Now(), g.promiseTTL()); !ok {
		return bootstrapResponse{}, p2p.Errorf(p2p.CodeForbidden, "%s has confirmed the set [%s]", g.cfg.Name, setNames(other))
	}
	g.kick() // the run loop follows the promise at its quick pace
	return bootstrapResponse{Confirmed: true}, nil
}
