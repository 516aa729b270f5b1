package consensus

import (
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/herd-io/herd/mesh"
)

// Roles a control member advertises in its gossip Meta.Roles. The leader
// advertises both RoleLeader and RoleVoter.
const (
	RoleLeader   = "leader"
	RoleVoter    = "voter"
	RoleNonvoter = "nonvoter"
	// RoleNone is Status().Role of a node that is not a raft member.
	RoleNone = "none"
)

// controlRoles are the roles this package owns in Meta.Roles; others are
// left alone.
var controlRoles = []string{RoleLeader, RoleVoter, RoleNonvoter}

// roleOf returns m's role from raft's state and latest configuration.
func roleOf(m *member) string {
	if m == nil {
		return RoleNone
	}
	r := m.r.raft
	switch r.State() {
	case raft.Shutdown:
		return RoleNone
	case raft.Leader:
		return RoleLeader
	}
	srv, ok := findServer(latestConfiguration(r), m.r.id)
	switch {
	case !ok:
		return RoleNone
	case srv.Suffrage == raft.Voter:
		return RoleVoter
	default:
		return RoleNonvoter
	}
}

// rolesFor returns the gossip roles of a role.
func rolesFor(role string) []string {
	switch role {
	case RoleLeader:
		return []string{RoleLeader, RoleVoter}
	case RoleVoter:
		return []string{RoleVoter}
	case RoleNonvoter:
		return []string{RoleNonvoter}
	}
	return nil
}

// withRoles replaces the control roles in roles with want, keeping others.
func withRoles(roles, want []string) []string {
	out := make([]string, 0, len(roles)+len(want))
	for _, r := range roles {
		if !slices.Contains(controlRoles, r) {
			out = append(out, r)
		}
	}
	out = append(out, want...)
	if len(out) == 0 {
		return nil
	}
	return out
}

// advertiser hands the wanted roles to the advertise goroutine. Gossiping
// a meta change can block for seconds (memberlist's UpdateNode waits for
// its broadcast to go out), which must not stall the reconcile loop.
type advertiser struct {
	mu     sync.Mutex
	wanted []string
	wake   chan struct{} // cap 1
	// changed (cap 1) tells the WAN pool that the role changed, so a node
	// that is no voter need not poll for becoming one.
	changed chan struct{}
}

func (a *advertiser) init() {
	a.wake = make(chan struct{}, 1)
	a.changed = make(chan struct{}, 1)
}

// want records the roles to advertise; only the latest counts.
func (a *advertiser) want(roles []string) {
	a.mu.Lock()
	changed := !slices.Equal(a.wanted, roles)
	a.wanted = roles
	a.mu.Unlock()
	if changed {
		for _, ch := range []chan struct{}{a.wake, a.changed} {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

func (a *advertiser) current() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.wanted
}

// advertise keeps the gossip meta's control roles equal to the wanted
// ones until the group stops, retrying failures every AutopilotInterval.
// It compares with what the local member carries, so a node that has
// nothing to advertise never touches its meta.
func (g *Group) advertise() {
	retry := time.NewTicker(max(g.cfg.AutopilotInterval, minTick))
	defer retry.Stop()
	for {
		want := g.adv.current()
		if have := controlRolesOf(g.cfg.Mesh.LocalMember().Meta.Roles); !slices.Equal(want, have) {
			err := g.cfg.Mesh.UpdateMeta(func(meta *mesh.Meta) { meta.Roles = withRoles(meta.Roles, want) })
			if err != nil {
				g.log.Debug("could not advertise control role", "roles", want, "err", err)
			} else {
				g.log.Info("control role advertised", "roles", want)
			}
		}
		select {
		case <-g.ctx.Done():
			return
		case <-g.adv.wake:
		case <-retry.C:
		}
	}
}

// controlRolesOf returns the control roles among roles, nil if none.
func controlRolesOf(roles []string) []string {
	var out []string
	for _, r := range roles {
		if slices.Contains(controlRoles, r) {
			out = append(out, r)
		}
	}
	return out
}
