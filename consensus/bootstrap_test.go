package consensus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-io/herd/mesh/p2p"
)

func TestChooseBootstrapSet(t *testing.T) {
	n := func(name, zone string) bootstrapServer {
		return bootstrapServer{Name: name, PeerID: "id-" + name, Zone: zone}
	}
	names := func(set []bootstrapServer) []string {
		var out []string
		for _, s := range set {
			out = append(out, s.Name)
		}
		return out
	}
	tests := []struct {
		name  string
		alive []bootstrapServer
		k     int
		want  []string
	}{
		{"too few", []bootstrapServer{n("a", ""), n("b", "")}, 3, nil},
		{"exactly k", []bootstrapServer{n("c", ""), n("a", ""), n("b", "")}, 3, []string{"a", "b", "c"}},
		{"first k by name without zones", []bootstrapServer{n("e", ""), n("d", ""), n("c", ""), n("b", ""), n("a", "")}, 3, []string{"a", "b", "c"}},
		{"one per zone first", []bootstrapServer{n("n1", "a"), n("n2", "a"), n("n3", "b"), n("n4", "b"), n("n5", "c")}, 3, []string{"n1", "n3", "n5"}},
		{"second pass when zones run out", []bootstrapServer{n("n1", "a"), n("n2", "a"), n("n3", "b"), n("n4", "b")}, 3, []string{"n1", "n2", "n3"}},
		{"single", []bootstrapServer{n("z", "q"), n("y", "r")}, 1, []string{"y"}},
		{"one zone", []bootstrapServer{n("x", "a"), n("w", "a"), n("v", "a")}, 2, []string{"v", "w"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := chooseBootstrapSet(tt.alive, tt.k)
			if !slices.Equal(names(got), tt.want) {
				t.Fatalf("got %v, want %v", names(got), tt.want)
			}
			// Every view with the same members gives the same set.
			rev := slices.Clone(tt.alive)
			slices.Reverse(rev)
			if again := chooseBootstrapSet(rev, tt.k); !slices.Equal(again, got) {
				t.Fatalf("order-dependent: %v vs %v", names(again), names(got))
			}
		})
	}
}

func TestBootstrapPromise(t *testing.T) {
	s1 := []bootstrapServer{{Name: "a"}, {Name: "b"}}
	s2 := []bootstrapServer{{Name: "a"}, {Name: "c"}}
	now := time.Unix(1000, 0)
	ttl := 10 * time.Second
	var b bootstrapper
	if ok, _ := b.promise(s1, now, ttl); !ok {
		t.Fatal("first promise refused")
	}
	if ok, other := b.promise(s2, now.Add(time.Second), ttl); ok || !slices.Equal(other, s1) {
		t.Fatalf("second set promised while bound: ok=%v other=%v", ok, other)
	}
	if ok, _ := b.promise(s1, now.Add(2*time.Second), ttl); !ok {
		t.Fatal("same set refused")
	}
	if !b.holds(s1, now.Add(11*time.Second)) || b.holds(s2, now) {
		t.Fatal("holds wrong")
	}
	// After expiry another set may be promised.
	if ok, _ := b.promise(s2, now.Add(13*time.Second), ttl); !ok {
		t.Fatal("promise after expiry refused")
	}
	// Once bootstrapped, never another set.
	b.markDone(s2)
	if ok, _ := b.promise(s1, now.Add(time.Hour), ttl); ok {
		t.Fatal("promised a set after bootstrapping another")
	}
}

// callBootstrap asks to's group to confirm from's current candidate set.
func callBootstrap(from, to *testNode) (bootstrapResponse, error) {
	alive, _ := from.group.idcView()
	set := chooseBootstrapSet(alive, from.group.cfg.ControlSize)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := bootstrapRequest{IDC: "dc1", ControlSize: from.group.cfg.ControlSize, Servers: set}
	return p2p.CallJSON[bootstrapRequest, bootstrapResponse](ctx, from.host, to.host.ID(), to.host.Addr(), BootstrapProtocol, req)
}

// A node confirms only the set it computes itself and refuses conflicting
// proposals with CodeForbidden (the promise itself: TestBootstrapPromise).
func TestBootstrapConflictingProposalRefused(t *testing.T) {
	// Bootstrap is slowed so the test controls the confirmations.
	slow := func(c *GroupConfig) { c.BootstrapStable = time.Hour }
	c := startCluster(t, 3, 2, nil, slow)
	waitFor(t, 10*time.Second, "gossip", func() error {
		for _, n := range c.nodes {
			if alive, _ := n.group.idcView(); len(alive) != 3 {
				return fmt.Errorf("%s sees %d", n.name, len(alive))
			}
		}
		return nil
	})
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	// node1 proposes {node1,node2}: node2 sees the same and confirms.
	if _, err := callBootstrap(n1, n2); err != nil {
		t.Fatalf("confirm: %v", err)
	}
	// A proposal of {node2,node3} (as a node missing node1 would make)
	// is refused by node2, which sees and has promised {node1,node2}.
	set := []bootstrapServer{}
	for _, n := range []*testNode{n2, n3} {
		m := n.mesh.LocalMember()
		set = append(set, bootstrapServer{Name: n.name, PeerID: m.Meta.ID, Zone: m.Meta.Zone})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := p2p.CallJSON[bootstrapRequest, bootstrapResponse](ctx, n3.host, n2.host.ID(), n2.host.Addr(), BootstrapProtocol,
		bootstrapRequest{IDC: "dc1", ControlSize: 2, Servers: set})
	if p2p.CodeOf(err) != p2p.CodeForbidden {
		t.Fatalf("conflicting set: err %v, want forbidden", err)
	}
}

// A node that may not bootstrap yet (it was told to join others and has
// not) founds no group of its own, even with a control size of 1; once
// allowed, it does.
func TestBootstrapWaitsForMayBootstrap(t *testing.T) {
	var allowed atomic.Bool
	n := startNode(t, "node1", t.TempDir(), nodeOpts{controlSize: 1, tweak: func(c *GroupConfig) {
		c.MayBootstrap = allowed.Load
	}})
	waitFor(t, 5*time.Second, "the waiting reason", func() error {
		if w := n.group.Status().Waiting; !strings.Contains(w, "waiting to join the mesh") {
			return fmt.Errorf("waiting %q", w)
		}
		return nil
	})
	if n.group.Raft() != nil {
		t.Fatal("bootstrapped before it was allowed to")
	}
	allowed.Store(true)
	waitFor(t, 10*time.Second, "a leader", func() error {
		if !n.group.IsLeader() {
			return errors.New("not leader yet")
		}
		return nil
	})
}
