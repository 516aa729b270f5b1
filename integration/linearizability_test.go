package integration_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/herd-io/herd/integration/cluster"
	"github.com/herd-io/herd/node"
	"github.com/herd-io/herd/node/api"
)

// kvInput is one KV operation of the linearizability history.
type kvInput struct {
	put   bool
	key   string
	value string // put only
}

// kvOutput is what an operation returned. A put whose outcome is unknown
// (timeout, unavailable, connection lost) has unknown set and the end of
// the history as its return time, so the checker may place it anywhere
// after its call, including after every read: it may or may not have
// happened.
type kvOutput struct {
	value   string
	found   bool
	unknown bool
}

// kvModel is a register per key; the state of one partition is the key's
// value, "" when absent (puts never write "").
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in, out, cur := input.(kvInput), output.(kvOutput), state.(string)
		if in.put {
			return true, in.value
		}
		if !out.found {
			return cur == "", cur
		}
		return out.value == cur, cur
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		switch {
		case in.put && out.unknown:
			return fmt.Sprintf("put(%s, %s) → ?", in.key, in.value)
		case in.put:
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		case !out.found:
			return fmt.Sprintf("get(%s) → absent", in.key)
		}
		return fmt.Sprintf("get(%s) → %s", in.key, out.value)
	},
	DescribeState: func(state any) string {
		if state.(string) == "" {
			return "absent"
		}
		return state.(string)
	},
}

// ambiguous reports whether a failed write may still have been applied.
// Only answers that say the command was refused before commit are
// definite; with no CAS in this test there are none, so every failure
// counts, which is the safe reading.
func ambiguous(err error) bool {
	var re *api.RequestError
	return !errors.As(err, &re) || re.Err.Code != api.CodeBadRequest
}

// checkLinearizable runs four clients doing random puts and consistent reads of
// three keys through random nodes for runFor, calls kill (which kills the
// leader, node leader) killAt into the run, and checks the history of calls
// and answers for linearizability with porcupine.
func checkLinearizable(t *testing.T, ctx context.Context, clients []*api.Client, leader int, kill func()) {
	const (
		runFor   = 8 * time.Second
		killAt   = 3 * time.Second
		nClients = 4
	)
	keys := []string{"lin/a", "lin/b", "lin/c"}
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var dead atomic.Int32
	dead.Store(-1)
	var killedAt atomic.Int64

	var (
		mu      sync.Mutex
		history []porcupine.Operation
		pending []int // indexes of puts with unknown outcome
		failedR int   // failed reads, left out: a read changes nothing
		okAfter int   // operations called after the kill and answered
	)
	var wg sync.WaitGroup
	for id := range nClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(id), uint64(start.UnixNano())))
			for seq := 0; time.Since(start) < runFor; seq++ {
				node := rng.IntN(len(clients))
				for node == int(dead.Load()) {
					node = rng.IntN(len(clients))
				}
				in := kvInput{put: rng.IntN(2) == 0, key: keys[rng.IntN(len(keys))]}
				rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				call := now()
				var out kvOutput
				var err error
				if in.put {
					in.value = fmt.Sprintf("c%d-%d", id, seq)
					_, err = clients[node].KVPut(rctx, in.key, []byte(in.value), "", nil)
				} else {
					var e *api.KVEntry
					e, err = clients[node].KVGet(rctx, in.key, api.KVQuery{Consistent: true})
					var re *api.RequestError
					switch {
					case err == nil:
						out = kvOutput{value: string(e.Value), found: true}
					case errors.As(err, &re) && re.Err.Code == api.CodeNotFound:
						out, err = kvOutput{}, nil
					}
				}
				ret := now()
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					history = append(history, porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
					if k := killedAt.Load(); k != 0 && call > k {
						okAfter++
					}
				case in.put && ambiguous(err):
					pending = append(pending, len(history))
					history = append(history, porcupine.Operation{ClientId: id, Input: in, Call: call, Output: kvOutput{unknown: true}})
				case in.put:
					t.Errorf("put %s refused: %v", in.key, err)
				default:
					failedR++
				}
				mu.Unlock()
			}
		}()
	}

	killer := time.NewTimer(killAt)
	select {
	case <-killer.C:
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	dead.Store(int32(leader))
	killedAt.Store(now())
	kill()
	t.Logf("killed the leader at %s", time.Duration(killedAt.Load()).Round(time.Millisecond))
	wg.Wait()

	end := now()
	for _, i := range pending {
		history[i].Return = end
	}
	t.Logf("history: %d operations, %d puts with unknown outcome, %d failed reads, %d answered after the kill",
		len(history), len(pending), failedR, okAfter)
	if okAfter < 20 {
		t.Fatalf("only %d operations succeeded after the leader was killed: the group did not recover", okAfter)
	}

	res := porcupine.CheckOperationsTimeout(kvModel, history, 30*time.Second)
	if res == porcupine.Ok {
		return
	}
	// Kept after the test (t.TempDir would remove it) for a human to open.
	dir, err := os.MkdirTemp("", "herd-linearizability-")
	if err != nil {
		t.Fatalf("history is not linearizable (%s); no directory for the visualization: %v", res, err)
	}
	_, info := porcupine.CheckOperationsVerbose(kvModel, history, 30*time.Second)
	vis := filepath.Join(dir, "visualization.html")
	if err := porcupine.VisualizePath(kvModel, info, vis); err != nil {
		t.Logf("visualization: %v", err)
	}
	var b strings.Builder
	for _, op := range history {
		fmt.Fprintf(&b, "client %d [%s, %s] %s\n", op.ClientId, time.Duration(op.Call), time.Duration(op.Return),
			kvModel.DescribeOperation(op.Input, op.Output))
	}
	hist := filepath.Join(dir, "history.txt")
	if err := os.WriteFile(hist, []byte(b.String()), 0o644); err != nil {
		t.Logf("history: %v", err)
	}
	t.Fatalf("history is not linearizable (%s); visualization: %s, history: %s", res, vis, hist)
}

// In-process nodes: the leader is stopped without a leave (c.Kill).
func TestControlLinearizableInProcess(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{ControlSize: 3})
	ctx := ctxTimeout(t, 90*time.Second)
	st := waitControl(ctx, t, c, 0, "", 3)
	leader := slices.IndexFunc(c.Agents, func(a *node.Agent) bool { return a.Name() == st.Leader })
	if leader < 0 {
		t.Fatalf("leader %q is not a node of the cluster", st.Leader)
	}
	clients := make([]*api.Client, len(c.Agents))
	for i := range c.Agents {
		clients[i] = c.Client(i)
	}
	checkLinearizable(t, ctx, clients, leader, func() {
		// Kill can hang (TestControlKillDuringConsistentReads); the node is
		// dead to its peers by then, so the history goes on regardless.
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.Kill(leader)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Logf("BUG: Kill of leader %s has not returned after 10s (see TestControlKillDuringConsistentReads)", st.Leader)
		}
	})
}

// Real processes: the leader's process gets SIGKILL, so requests in flight
// to it end with a broken connection and puts become ambiguous.
func TestControlLinearizableProcesses(t *testing.T) {
	c := startDevKilled(t, 3)
	ctx := ctxTimeout(t, 90*time.Second)
	st, err := waitStatus(ctx, devClient(t, c, 0), formed(3))
	if err != nil {
		t.Fatal(err)
	}
	leader := devIndex(c, st.Leader)
	if leader < 0 {
		t.Fatalf("leader %q is not a node of the mesh", st.Leader)
	}
	clients := make([]*api.Client, len(c.Nodes))
	for i := range c.Nodes {
		clients[i] = devClient(t, c, i)
	}
	checkLinearizable(t, ctx, clients, leader, func() {
		if err := c.Signal(leader, syscall.SIGKILL); err != nil {
			t.Error(err)
		}
	})
}

// Stopping a leader that is serving consistent reads returns promptly. A
// consistent read waits on raft's VerifyLeader future; one queued while
// raft shuts down is never answered (hashicorp/raft#498), and the p2p host
// waits for running handlers on Close: the handler must give up on its ctx.
func TestControlKillDuringConsistentReads(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{ControlSize: 3})
	ctx := ctxTimeout(t, 60*time.Second)
	st := waitControl(ctx, t, c, 0, "", 3)
	leader := slices.IndexFunc(c.Agents, func(a *node.Agent) bool { return a.Name() == st.Leader })
	if _, err := c.Client(leader).KVPut(ctx, "reads/k", []byte("v"), "", nil); err != nil {
		t.Fatal(err)
	}
	// Readers go through the followers, which forward over node streams to
	// the leader's query handler.
	var followers []*api.Client
	for i := range c.Agents {
		if i != leader {
			followers = append(followers, c.Client(i))
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served atomic.Int64
	for r := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				if _, err := followers[r%len(followers)].KVGet(rctx, "reads/k", api.KVQuery{Consistent: true}); err == nil {
					served.Add(1)
				}
				cancel()
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	if err := cluster.WaitFor(ctx, 10*time.Millisecond, func() error {
		if n := served.Load(); n < 200 {
			return fmt.Errorf("%d consistent reads served", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	began := time.Now()
	go func() {
		defer close(done)
		c.Kill(leader)
	}()
	select {
	case <-done:
		t.Logf("leader %s stopped in %s under consistent reads", st.Leader, time.Since(began).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatalf("Kill of leader %s, serving consistent reads, has not returned after 15s; stuck query handlers:\n%s",
			st.Leader, stacksWith("consensus.(*Server).serveQuery"))
	}
}

// stacksWith returns the stacks of the goroutines whose trace mentions fn.
func stacksWith(fn string) string {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
