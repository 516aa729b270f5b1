package integration_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-io/herd/integration/cluster"
	"github.com/herd-io/herd/node/api"
	"github.com/herd-io/herd/node/devmesh"
)

// Chaos on the per-IDC control group with real agent processes: SIGKILL of
// the leader under load, of a voter, of every node, and simultaneous
// bootstrap. Plus the CLI's answers to bad input.

// startDevKilled is startDev whose nodes are SIGKILLed at the end of the
// test instead of leaving gracefully: these tests are about crashes, and a
// whole group leaving at once takes its full leave timeout (see
// TestControlChaosSimultaneousBootstrap's report).
func startDevKilled(t testing.TB, nodes int, extra ...string) *devmesh.Cluster {
	t.Helper()
	c := startDev(t, nodes, 1, extra...)
	// Registered after startDev's cleanup, so it runs first.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i, n := range c.Nodes {
			if !n.Exited() {
				_ = c.Signal(i, syscall.SIGKILL)
				_ = c.WaitExit(ctx, i)
			}
		}
	})
	return c
}

// devClient returns an API client for node i of a dev mesh.
func devClient(t testing.TB, c *devmesh.Cluster, i int) *api.Client {
	t.Helper()
	cl, err := c.Client(i)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// devIndex returns the index of the dev mesh node called name, or -1.
func devIndex(c *devmesh.Cluster, name string) int {
	return slices.IndexFunc(c.Nodes, func(n *devmesh.Node) bool { return n.Name == name })
}

// voterNames lists the voters of st, sorted.
func voterNames(st *api.ControlStatus) []string {
	var out []string
	for _, s := range st.Servers {
		if s.Suffrage == "voter" {
			out = append(out, s.Name)
		}
	}
	slices.Sort(out)
	return out
}

// serverNames lists every raft server of st, sorted.
func serverNames(st *api.ControlStatus) []string {
	var out []string
	for _, s := range st.Servers {
		out = append(out, s.Name)
	}
	slices.Sort(out)
	return out
}

// formed accepts a status with a leader, no bootstrap wait and want voters.
func formed(want int) func(*api.ControlStatus) error {
	return func(st *api.ControlStatus) error {
		if v := voterNames(st); st.Leader == "" || st.Waiting != "" || len(v) != want {
			return fmt.Errorf("IDC %s: leader %q, voters %v (want %d), waiting %q", st.IDC, st.Leader, v, want, st.Waiting)
		}
		return nil
	}
}

// waitStatus polls cl's control status until every check accepts it, and
// returns the last status read.
func waitStatus(ctx context.Context, cl *api.Client, checks ...func(*api.ControlStatus) error) (*api.ControlStatus, error) {
	var st *api.ControlStatus
	err := cluster.WaitFor(ctx, 100*time.Millisecond, func() error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		if st, err = cl.ControlStatus(rctx, ""); err != nil {
			return err
		}
		for _, check := range checks {
			if err := check(st); err != nil {
				return err
			}
		}
		return nil
	})
	return st, err
}

// logTail returns the last n lines of a log file, for failure messages.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(log unreadable: " + err.Error() + ")"
	}
	return tailLines(string(data), n)
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// ack is one acknowledged write.
type ack struct {
	key, value string
	node       string // the node whose API took the write
	at         time.Time
}

// writeLog records writes attempted and acknowledged by concurrent writers.
type writeLog struct {
	mu        sync.Mutex
	attempted map[string]string // key → value, every write sent
	acked     []ack
	errs      []string
}

func (w *writeLog) attempt(key, value string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.attempted[key] = value
}

func (w *writeLog) ack(key, value, node string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.acked = append(w.acked, ack{key, value, node, at})
}

func (w *writeLog) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs = append(w.errs, err.Error())
}

// ackedAfter counts acknowledgements after t and returns the first one's time.
func (w *writeLog) ackedAfter(t time.Time) (int, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, first := 0, time.Time{}
	for _, a := range w.acked {
		if a.at.After(t) {
			n++
			if first.IsZero() || a.at.Before(first) {
				first = a.at
			}
		}
	}
	return n, first
}

// SIGKILL of the leader while four writers stream distinct keys through
// the other nodes: every acknowledged write survives, a different node
// leads and takes writes. The failover time is logged, per node.
func TestControlChaosKillLeaderDuringWrites(t *testing.T) {
	c := startDevKilled(t, 5)
	ctx := ctxTimeout(t, 120*time.Second)
	st, err := waitStatus(ctx, devClient(t, c, 0), formed(3))
	if err != nil {
		t.Fatal(err)
	}
	oldLeader := st.Leader
	li := devIndex(c, oldLeader)
	if li < 0 {
		t.Fatalf("leader %q is not a node of the mesh", oldLeader)
	}
	var others []int
	for i := range c.Nodes {
		if i != li {
			others = append(others, i)
		}
	}

	clients := make([]*api.Client, len(c.Nodes))
	for i := range c.Nodes {
		clients[i] = devClient(t, c, i)
	}
	w := &writeLog{attempted: map[string]string{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// One writer per surviving node, so that each node's failover shows:
	// voters learn the new leader from raft, plain nodes from gossip.
	for g, via := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				key, value := fmt.Sprintf("chaos/w%d/%05d", g, n), fmt.Sprintf("value-%d-%d", g, n)
				w.attempt(key, value)
				rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				_, err := clients[via].KVPut(rctx, key, []byte(value), "", nil)
				cancel()
				if err != nil {
					w.fail(err)
					continue
				}
				w.ack(key, value, c.Nodes[via].Name, time.Now())
			}
		}()
	}
	stopWriters := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWriters()

	// Let the stream run, then kill the leader's process.
	if err := cluster.WaitFor(ctx, 20*time.Millisecond, func() error {
		if n, _ := w.ackedAfter(time.Time{}); n < 30 {
			return fmt.Errorf("%d writes acknowledged before the kill", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := c.Signal(li, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitExit(ctx, li); err != nil {
		t.Fatal(err)
	}
	// Anything acknowledged from here on was committed without the dead
	// leader.
	exited := time.Now()
	if err := cluster.WaitFor(ctx, 20*time.Millisecond, func() error {
		if n, _ := w.ackedAfter(exited); n < 20 {
			return fmt.Errorf("%d writes acknowledged since %s was killed", n, oldLeader)
		}
		return nil
	}); err != nil {
		stopWriters()
		t.Fatalf("%v; last errors: %v", err, w.errs[max(0, len(w.errs)-3):])
	}
	stopWriters()

	_, first := w.ackedAfter(exited)
	t.Logf("failover: first write acknowledged %s after SIGKILL of leader %s (%d writes acknowledged, %d errors)",
		first.Sub(killed).Round(time.Millisecond), oldLeader, len(w.acked), len(w.errs))
	var perNode []string
	for _, i := range others {
		name, role := c.Nodes[i].Name, "plain"
		if slices.Contains(voterNames(st), name) {
			role = "voter"
		}
		for _, a := range w.acked {
			if a.node == name && a.at.After(exited) {
				perNode = append(perNode, fmt.Sprintf("%s (%s) %s", name, role, a.at.Sub(killed).Round(time.Millisecond)))
				break
			}
		}
	}
	t.Logf("failover: first acknowledgement through each node: %s", strings.Join(perNode, ", "))

	survivor := devClient(t, c, others[0])
	st, err = waitStatus(ctx, survivor, formed(3), func(st *api.ControlStatus) error {
		if st.Leader == oldLeader {
			return fmt.Errorf("%s, SIGKILLed, is still reported as leader", oldLeader)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("new leader %s, term %d", st.Leader, st.Term)
	if _, err := survivor.KVPut(ctx, "chaos/after", []byte("ok"), "", nil); err != nil {
		t.Fatalf("write after failover (leader %s): %v", st.Leader, err)
	}

	// Every acknowledged write is there with its value, read consistently
	// through two different survivors; nothing appears that was not written.
	for _, i := range others[:2] {
		l, err := devClient(t, c, i).KVList(ctx, "chaos/w", api.KVQuery{Consistent: true})
		if err != nil {
			t.Fatalf("consistent list via %s: %v", c.Nodes[i].Name, err)
		}
		got := map[string]string{}
		for _, e := range l.Entries {
			got[e.Key] = string(e.Value)
			if want, ok := w.attempted[e.Key]; !ok || want != string(e.Value) {
				t.Errorf("via %s: %s = %q was never written", c.Nodes[i].Name, e.Key, e.Value)
			}
		}
		lost := 0
		for _, a := range w.acked {
			if v, ok := got[a.key]; !ok || v != a.value {
				lost++
				t.Errorf("via %s: acknowledged write %s = %q reads back as %q (present %v)", c.Nodes[i].Name, a.key, a.value, v, ok)
			}
		}
		if lost > 0 {
			t.Fatalf("%d of %d acknowledged writes lost; log of the new leader:\n%s", lost, len(w.acked),
				logTail(c.Nodes[devIndex(c, st.Leader)].Log, 30))
		}
	}
}

// A SIGKILLed voter is removed from the configuration after the dead-server
// timeout (set to 5s with --dead-server-timeout; 20s by default), another
// node is promoted, and the group is back at three voters.
func TestControlChaosKillVoterReplaced(t *testing.T) {
	c := startDevKilled(t, 5, "--dead-server-timeout", "5s")
	ctx := ctxTimeout(t, 150*time.Second)
	st, err := waitStatus(ctx, devClient(t, c, 0), formed(3))
	if err != nil {
		t.Fatal(err)
	}
	before := voterNames(st)
	victim := -1
	for _, name := range before {
		if name != st.Leader {
			victim = devIndex(c, name)
			break
		}
	}
	if victim < 0 {
		t.Fatalf("no voter besides leader %s among %v", st.Leader, before)
	}
	dead := c.Nodes[victim].Name
	killed := time.Now()
	if err := c.Signal(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitExit(ctx, victim); err != nil {
		t.Fatal(err)
	}
	watcher := devClient(t, c, (victim+1)%len(c.Nodes))
	st, err = waitStatus(ctx, watcher, formed(3), func(st *api.ControlStatus) error {
		if slices.Contains(serverNames(st), dead) {
			return fmt.Errorf("%s, killed %s ago, is still a server: %v", dead, time.Since(killed).Round(time.Second), st.Servers)
		}
		for _, s := range st.Servers {
			if s.Suffrage == "voter" && !s.Healthy {
				return fmt.Errorf("voter %s is not healthy yet", s.Name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v\nleader log:\n%s", err, logTail(c.Nodes[devIndex(c, st.Leader)].Log, 30))
	}
	after := voterNames(st)
	promoted := slices.DeleteFunc(slices.Clone(after), func(n string) bool { return slices.Contains(before, n) })
	if len(promoted) != 1 {
		t.Fatalf("voters went from %v to %v: want exactly one new voter in place of %s", before, after, dead)
	}
	t.Logf("%s removed and %s promoted %s after SIGKILL; voters %v → %v",
		dead, promoted[0], time.Since(killed).Round(100*time.Millisecond), before, after)
	if len(st.Servers) != 3 {
		t.Fatalf("configuration has %d servers, want the 3 voters only: %+v", len(st.Servers), st.Servers)
	}
	if _, err := watcher.KVPut(ctx, "chaos/after-voter-loss", []byte("ok"), "", nil); err != nil {
		t.Fatal(err)
	}
}

// SIGKILL of every node, then a restart of every node with the same data
// dirs: raft state comes back from disk, the term continues instead of a
// second bootstrap, and the group serves reads and writes again.
func TestControlChaosRestartAll(t *testing.T) {
	c := startDevKilled(t, 3)
	ctx := ctxTimeout(t, 120*time.Second)
	cl := devClient(t, c, 0)
	st, err := waitStatus(ctx, cl, formed(3))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := range 10 {
		key, value := fmt.Sprintf("restart/k%02d", i), fmt.Sprintf("v%d", i)
		if _, err := devClient(t, c, i%3).KVPut(ctx, key, []byte(value), "", nil); err != nil {
			t.Fatal(err)
		}
		want[key] = value
	}
	st, err = waitStatus(ctx, cl, formed(3))
	if err != nil {
		t.Fatal(err)
	}
	oldTerm, oldServers := st.Term, serverNames(st)

	logSize := make([]int64, len(c.Nodes))
	for i := range c.Nodes {
		if err := c.Signal(i, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range c.Nodes {
		if err := c.WaitExit(ctx, i); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(n.Log)
		if err != nil {
			t.Fatal(err)
		}
		logSize[i] = fi.Size()
	}
	restarted := time.Now()
	for i := range c.Nodes {
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	var leaders []string
	var newTerm uint64
	for i := range c.Nodes {
		st, err := waitStatus(ctx, devClient(t, c, i), formed(3))
		if err != nil {
			t.Fatalf("after restart, %s: %v\nlog:\n%s", c.Nodes[i].Name, err, logTail(c.Nodes[i].Log, 20))
		}
		if got := serverNames(st); !slices.Equal(got, oldServers) {
			t.Fatalf("after restart %s reports servers %v, before: %v", c.Nodes[i].Name, got, oldServers)
		}
		if st.Term < oldTerm {
			t.Fatalf("after restart %s reports term %d, before: %d: the group started over", c.Nodes[i].Name, st.Term, oldTerm)
		}
		leaders = append(leaders, st.Leader)
		newTerm = st.Term
	}
	formedAt := time.Now()
	if leaders[0] != leaders[1] || leaders[1] != leaders[2] {
		t.Fatalf("after restart the nodes name different leaders: %v", leaders)
	}
	// Each node reopened its raft state; none bootstrapped again.
	for i, n := range c.Nodes {
		data, err := os.ReadFile(n.Log)
		if err != nil {
			t.Fatal(err)
		}
		since := string(data[logSize[i]:])
		if !strings.Contains(since, "restart with raft state on disk") || strings.Contains(since, "bootstrapped the control group") {
			t.Fatalf("%s after restart did not reopen its raft state, or bootstrapped again:\n%s", n.Name, since)
		}
	}
	for i := range c.Nodes {
		l, err := devClient(t, c, i).KVList(ctx, "restart/", api.KVQuery{Consistent: true})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, e := range l.Entries {
			got[e.Key] = string(e.Value)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after restart %s reads %v, want %v", c.Nodes[i].Name, got, want)
		}
	}
	if _, err := cl.KVPut(ctx, "restart/after", []byte("ok"), "", nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("group re-formed %s after the restart; term %d before, %d after; leader %s",
		formedAt.Sub(restarted).Round(10*time.Millisecond), oldTerm, newTerm, leaders[0])
}

// Three nodes started at once bootstrap exactly one group: every node
// reports the same leader and the same three voters, and a write through
// one node is read consistently through the others.
func TestControlChaosSimultaneousBootstrap(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprintf("round%d", round+1), func(t *testing.T) {
			c := startDevKilled(t, 3)
			ctx := ctxTimeout(t, 60*time.Second)
			var first *api.ControlStatus
			for i := range c.Nodes {
				st, err := waitStatus(ctx, devClient(t, c, i), formed(3))
				if err != nil {
					t.Fatalf("%s: %v\nlog:\n%s", c.Nodes[i].Name, err, logTail(c.Nodes[i].Log, 20))
				}
				if first == nil {
					first = st
					continue
				}
				if st.Leader != first.Leader || st.Term != first.Term || !slices.Equal(voterNames(st), voterNames(first)) {
					t.Fatalf("%s sees leader %s term %d voters %v; %s sees leader %s term %d voters %v",
						c.Nodes[i].Name, st.Leader, st.Term, voterNames(st),
						c.Nodes[0].Name, first.Leader, first.Term, voterNames(first))
				}
			}
			if got := voterNames(first); !slices.Equal(got, []string{"node1", "node2", "node3"}) {
				t.Fatalf("voters %v, want node1..node3", got)
			}
			// The status above comes from the leader (members forward to
			// it); gossip gives each node's own view of the roles: one
			// leader and three voters, everywhere.
			for i := range c.Nodes {
				err := cluster.WaitFor(ctx, 100*time.Millisecond, func() error {
					ms, err := devClient(t, c, i).Members(ctx, api.MembersQuery{})
					if err != nil {
						return err
					}
					var leaders, voters []string
					for _, m := range ms.Members {
						if slices.Contains(m.Roles, "leader") {
							leaders = append(leaders, m.Name)
						}
						if slices.Contains(m.Roles, "voter") {
							voters = append(voters, m.Name)
						}
					}
					if len(leaders) != 1 || leaders[0] != first.Leader || len(voters) != 3 {
						return fmt.Errorf("%s sees leaders %v and voters %v in gossip, want %s and 3 voters",
							c.Nodes[i].Name, leaders, voters, first.Leader)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			key := fmt.Sprintf("boot/round%d", round)
			if _, err := devClient(t, c, 0).KVPut(ctx, key, []byte("x"), "", nil); err != nil {
				t.Fatal(err)
			}
			for i := 1; i < 3; i++ {
				if _, err := devClient(t, c, i).KVGet(ctx, key, api.KVQuery{Consistent: true}); err != nil {
					t.Fatalf("%s does not see the write made through node1: %v", c.Nodes[i].Name, err)
				}
			}
		})
	}
}

// The CLI turns bad input into usage errors (exit 2) and server-side
// refusals into failures (exit 1), each naming what went wrong.
func TestControlCLIBadInput(t *testing.T) {
	c := startDevKilled(t, 1)
	ctx := ctxTimeout(t, 60*time.Second)
	cl := devClient(t, c, 0)
	// A request for an unknown IDC is only answered as such once the node,
	// a voter, has joined the WAN pool.
	if _, err := waitStatus(ctx, cl, formed(1), func(st *api.ControlStatus) error {
		if len(st.WANMembers) == 0 {
			return errors.New("WAN pool not joined yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, make([]byte, 512<<10+1), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HERD_TOKEN=" + c.Token, "HERD_NODE=" + c.Nodes[0].API}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string // in stderr
	}{
		{"empty path segment", []string{"kv", "put", "a//b", "x"}, 2, []string{"a//b"}},
		{"cas on a fresh key", []string{"kv", "put", "--cas", "9", "fresh", "v"}, 1, []string{"cas_conflict"}},
		{"value too large", []string{"kv", "put", "big", "@" + big}, 2, []string{"524288-byte limit"}},
		{"unknown IDC", []string{"control", "status", "--idc", "nowhere"}, 1, []string{"unknown IDC", "nowhere"}},
		{"missing key", []string{"kv", "get", "missing"}, 1, []string{"not_found", "missing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := herdCLI(t, env, tc.args...)
			if code != tc.code {
				t.Fatalf("herd %v: exit %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.code, out, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("herd %v: stderr does not mention %q:\n%s", tc.args, w, stderr)
				}
			}
		})
	}
	// Nothing was written by the refused puts.
	for _, key := range []string{"fresh", "big"} {
		_, err := cl.KVGet(ctx, key, api.KVQuery{Consistent: true})
		var re *api.RequestError
		if !errors.As(err, &re) || re.Err.Code != api.CodeNotFound {
			t.Errorf("refused put of %s left something behind: %v", key, err)
		}
	}
	if _, err := cl.KVGet(ctx, "a//b", api.KVQuery{}); err == nil {
		t.Error("refused put of a//b left something behind")
	}
}
