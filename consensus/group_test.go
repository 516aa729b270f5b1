package consensus

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Three nodes started at once bootstrap exactly one cluster, every time.
func TestBootstrapThreeAtOnce(t *testing.T) {
	for run := range 5 {
		t.Run(fmt.Sprint(run), func(t *testing.T) {
			c := startCluster(t, 3, 3, nil, nil)
			l := c.waitConverged(15*time.Second, 3)
			// One cluster: a write through the leader reaches all three.
			c.mustSet("k", "v")
			waitValue(t, c.nodes, "k", "v", 1)
			for _, n := range c.nodes {
				if st := n.group.Status(); st.Waiting != "" || !st.Member || st.Leader != l.name {
					t.Errorf("%s status %+v", n.name, st)
				}
			}
		})
	}
}

// Five nodes with ControlSize 3: three voters; the other two stay plain
// nodes, not raft members at all.
func TestFiveNodesThreeVoters(t *testing.T) {
	c := startCluster(t, 5, 3, nil, nil)
	l := c.waitConverged(15*time.Second, 3)
	// Stays that way over several autopilot rounds.
	for range 10 {
		if _, err := c.converged(3); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // observation window, not synchronisation
	}
	st := l.group.Status()
	if st.Role != RoleLeader || len(st.Servers) != 3 {
		t.Fatalf("leader status %+v", st)
	}
	for _, s := range st.Servers {
		if !s.Healthy || s.Suffrage != RoleVoter {
			t.Errorf("server %+v", s)
		}
	}
	var plain int
	for _, n := range c.nodes {
		if n.group.Raft() == nil {
			plain++
			if got := n.group.LeaderName(); got != l.name {
				t.Errorf("plain node %s sees leader %q via gossip, want %s", n.name, got, l.name)
			}
		}
	}
	if plain != 2 {
		t.Fatalf("%d plain nodes, want 2", plain)
	}
}

// A voter killed without leaving is removed after DeadServerTimeout and
// replaced by a node of its zone, so the voters stay in three zones.
func TestDeadVoterReplacedAcrossZones(t *testing.T) {
	zones := []string{"a", "a", "b", "b", "c"}
	c := startCluster(t, 5, 3, zones, nil)
	l := c.waitConverged(15*time.Second, 3)
	conf := latestConfiguration(l.group.Raft())
	if z := voterZones(c, conf); len(z) != 3 {
		t.Fatalf("voters in zones %v, want 3 distinct", z)
	}
	// Kill a follower voter from a zone that has a spare node.
	var victim *testNode
	for _, s := range conf.Servers {
		n := c.node(string(s.ID))
		if n != l && n.zone != "c" {
			victim = n
			break
		}
	}
	victim.kill()
	killed := time.Now()
	var replacement string
	waitFor(t, 20*time.Second, "the dead voter replaced", func() error {
		l, err := c.converged(3)
		if err != nil {
			return err
		}
		conf := latestConfiguration(l.group.Raft())
		if _, in := findServer(conf, victim.name); in {
			return fmt.Errorf("%s still in the configuration", victim.name)
		}
		if z := voterZones(c, conf); len(z) != 3 {
			return fmt.Errorf("voters in zones %v", z)
		}
		for _, s := range conf.Servers {
			if c.node(string(s.ID)).zone == victim.zone {
				replacement = string(s.ID)
			}
		}
		return nil
	})
	if elapsed := time.Since(killed); elapsed < 2*time.Second {
		t.Errorf("replaced after %s, before DeadServerTimeout", elapsed)
	}
	t.Logf("%s (zone %s) replaced by %s in %s", victim.name, victim.zone, replacement, time.Since(killed).Round(time.Millisecond))
}

func voterZones(c *cluster, conf raft.Configuration) []string {
	var zones []string
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter {
			z := c.node(string(s.ID)).zone
			if !slices.Contains(zones, z) {
				zones = append(zones, z)
			}
		}
	}
	slices.Sort(zones)
	return zones
}

// Killing the leader: a new one is elected and writes are accepted again;
// earlier writes survive.
func TestLeaderKilledFailover(t *testing.T) {
	c := startCluster(t, 3, 3, nil, nil)
	old := c.waitConverged(15*time.Second, 3)
	c.mustSet("before", "1")
	old.kill()
	start := time.Now()
	var next *testNode
	waitFor(t, 10*time.Second, "a write after failover", func() error {
		l, err := c.leader()
		if err != nil {
			return err
		}
		if _, err := set(l.group.Raft(), "after", "2"); err != nil {
			return err
		}
		next = l
		return nil
	})
	t.Logf("failover %s -> %s: writes accepted after %s", old.name, next.name, time.Since(start).Round(time.Millisecond))
	waitValue(t, c.running(), "before", "1", 1)
	waitValue(t, c.running(), "after", "2", 1)
}

// A leader that leaves gracefully hands leadership over first, is removed,
// and a spare node is promoted in its place.
func TestLeaderLeave(t *testing.T) {
	c := startCluster(t, 4, 3, nil, nil)
	old := c.waitConverged(15*time.Second, 3)
	term := old.group.Raft().CurrentTerm()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := old.leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	l := c.waitConverged(20*time.Second, 3)
	if _, in := findServer(latestConfiguration(l.group.Raft()), old.name); in || l == old {
		t.Fatalf("%s still a server", old.name)
	}
	if got := l.group.Raft().CurrentTerm(); got <= term {
		t.Fatalf("term %d, want > %d", got, term)
	}
	c.mustSet("k", "v")
	waitValue(t, c.running(), "k", "v", 1)
}

// A voter leaving gracefully asks the leader to remove it.
func TestFollowerLeave(t *testing.T) {
	c := startCluster(t, 3, 3, nil, nil)
	l := c.waitConverged(15*time.Second, 3)
	var f *testNode
	for _, n := range c.nodes {
		if n != l {
			f = n
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	// Removed at once, not after DeadServerTimeout; no spare to promote.
	waitFor(t, 5*time.Second, "the follower removed", func() error {
		_, err := c.converged(2)
		return err
	})
}

// All nodes stopped and restarted from the same data dirs come back as the
// same cluster with their data, without bootstrapping again.
func TestRestartAllFromDataDirs(t *testing.T) {
	c := startCluster(t, 3, 3, nil, nil)
	l := c.waitConverged(15*time.Second, 3)
	want := serverSet(latestConfiguration(l.group.Raft()))
	for i := range 5 {
		c.mustSet(fmt.Sprintf("k%d", i), "v")
	}
	c.mustSet("k0", "v2") // version 2
	last := l.group.Raft().LastIndex()
	for _, n := range c.nodes {
		n.kill()
	}
	restarted := make([]*testNode, len(c.nodes))
	for i, n := range c.nodes {
		seed := ""
		if i > 0 {
			seed = restarted[0].gossip
		}
		restarted[i] = startNode(t, n.name, n.dir, nodeOpts{controlSize: 3, seed: seed})
		if r := restarted[i].group.Raft(); r == nil {
			t.Fatalf("%s: raft not opened at once on restart", n.name)
		}
	}
	c.nodes = restarted
	l = c.waitConverged(15*time.Second, 3)
	if got := serverSet(latestConfiguration(l.group.Raft())); !slices.Equal(got, want) {
		t.Fatalf("configuration %v, want %v", got, want)
	}
	if got := l.group.Raft().LastIndex(); got < last {
		t.Fatalf("last index %d < %d before the restart: the log was not kept", got, last)
	}
	waitValue(t, c.nodes, "k0", "v2", 2)
	waitValue(t, c.nodes, "k4", "v", 1)
	c.mustSet("k0", "v3")
	waitValue(t, c.nodes, "k0", "v3", 3)
}

// A server removed from the configuration closes its raft; invited again,
// it reopens raft from its data and its FSM ends up exactly right (no
// entry applied twice).
func TestRemovedServerReinvited(t *testing.T) {
	c := startCluster(t, 3, 3, nil, nil)
	l := c.waitConverged(15*time.Second, 3)
	for i := range 3 {
		c.mustSet("k", fmt.Sprint(i))
	}
	waitValue(t, c.nodes, "k", "2", 3)
	var x *testNode
	for _, n := range c.nodes {
		if n != l {
			x = n
			break
		}
	}
	if err := l.group.Raft().RemoveServer(raft.ServerID(x.name), 0, time.Second).Error(); err != nil {
		t.Fatalf("remove %s: %v", x.name, err)
	}
	// Only x can fill the gap, so the autopilot invites it back.
	waitFor(t, 15*time.Second, x.name+" closing raft or being back", func() error {
		if x.group.Raft() == nil {
			return nil
		}
		if _, in := findServer(latestConfiguration(l.group.Raft()), x.name); in {
			return nil // already back
		}
		return fmt.Errorf("%s still has raft open", x.name)
	})
	c.waitConverged(15*time.Second, 3)
	c.mustSet("k", "3")
	waitValue(t, c.nodes, "k", "3", 4)
}

// One node with ControlSize 3 waits and says so.
func TestSingleNodeWaits(t *testing.T) {
	n := startNode(t, "node1", filepath.Join(t.TempDir(), "node1"), nodeOpts{controlSize: 3})
	want := "waiting for 2 more alive nodes in IDC dc1: have 1, control-size 3"
	waitFor(t, 5*time.Second, "waiting status", func() error {
		if st := n.group.Status(); st.Waiting != want {
			return fmt.Errorf("waiting %q", st.Waiting)
		}
		return nil
	})
	if n.group.Raft() != nil || n.group.IsLeader() || n.group.Status().Role != RoleNone {
		t.Fatalf("lone node became a member: %+v", n.group.Status())
	}
}

// ControlSize 1: a single node bootstraps alone and accepts writes.
func TestSingleNodeControlSizeOne(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node1")
	n := startNode(t, "node1", dir, nodeOpts{controlSize: 1})
	c := &cluster{t: t, nodes: []*testNode{n}}
	c.waitConverged(10*time.Second, 1)
	c.mustSet("k", "v")
	// Leaving as the last voter keeps the configuration on disk.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	n2 := startNode(t, "node1", dir, nodeOpts{controlSize: 1})
	c.nodes = []*testNode{n2}
	c.waitConverged(10*time.Second, 1)
	waitValue(t, c.nodes, "k", "v", 1)
}

// Nodes that disagree on ControlSize never bootstrap together, and say why.
func TestControlSizeMismatchRefused(t *testing.T) {
	base := t.TempDir()
	a := startNode(t, "node1", filepath.Join(base, "node1"), nodeOpts{controlSize: 2})
	b := startNode(t, "node2", filepath.Join(base, "node2"), nodeOpts{controlSize: 3, seed: a.gossip})
	waitFor(t, 5*time.Second, "node1 trying to bootstrap", func() error {
		if w := a.group.Status().Waiting; !strings.Contains(w, "confirming") {
			return fmt.Errorf("waiting %q", w)
		}
		return nil
	})
	_, err := callBootstrap(a, b)
	if err == nil || !strings.Contains(err.Error(), "control size mismatch") {
		t.Fatalf("bootstrap call: %v", err)
	}
	if a.group.Raft() != nil || b.group.Raft() != nil {
		t.Fatal("mismatched nodes bootstrapped")
	}
}

// The Leadership function runs on the leader only, is cancelled when
// leadership moves, and starts again on every new term.
func TestLeadershipRoutinesFollowTheLeader(t *testing.T) {
	var mu sync.Mutex
	active := map[string]int{} // node -> running Leadership calls
	starts := map[string]int{}
	tweak := func(c *GroupConfig) {
		name := c.Name
		c.Leadership = func(ctx context.Context) {
			mu.Lock()
			active[name]++
			starts[name]++
			mu.Unlock()
			<-ctx.Done()
			mu.Lock()
			active[name]--
			mu.Unlock()
		}
	}
	c := startCluster(t, 3, 3, nil, tweak)
	onlyOn := func(name string) error {
		mu.Lock()
		defer mu.Unlock()
		for n, k := range active {
			if (n == name && k != 1) || (n != name && k != 0) {
				return fmt.Errorf("leadership routines running: %v, want only on %s", active, name)
			}
		}
		if active[name] != 1 {
			return fmt.Errorf("not running on %s: %v", name, active)
		}
		return nil
	}
	first := c.waitConverged(15*time.Second, 3)
	waitFor(t, 5*time.Second, "routine on "+first.name, func() error { return onlyOn(first.name) })
	for range 2 {
		l, err := c.leader()
		if err != nil {
			t.Fatal(err)
		}
		if err := l.group.Raft().LeadershipTransfer().Error(); err != nil {
			t.Fatalf("transfer: %v", err)
		}
		var next *testNode
		waitFor(t, 10*time.Second, "a new leader", func() error {
			var err error
			next, err = c.leader()
			if err == nil && next == l {
				err = errors.New("same leader")
			}
			return err
		})
		waitFor(t, 5*time.Second, "routine moved to "+next.name, func() error { return onlyOn(next.name) })
	}
	mu.Lock()
	total := 0
	for _, k := range starts {
		total += k
	}
	mu.Unlock()
	if total != 3 {
		t.Fatalf("Leadership started %d times over 3 terms of leadership: %v", total, starts)
	}
}
