package integration_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/herd-io/herd/integration/cluster"
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

// Four clients put and read (consistently) three keys through random nodes
// of a three-voter group while its leader is killed half way; the history
// of calls and answers must be linearizable.
func TestControlLinearizableAcrossLeaderKill(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{ControlSize: 3})
	ctx := ctxTimeout(t, 90*time.Second)
	st := waitControl(ctx, t, c, 0, "", 3)
	leader := -1
	for i, a := range c.Agents {
		if a.Name() == st.Leader {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatalf("leader %q is not a node of the cluster", st.Leader)
	}
	clients := make([]*api.Client, len(c.Agents))
	for i := range c.Agents {
		clients[i] = c.Client(i)
	}

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

	var (
		mu      sync.Mutex
		history []porcupine.Operation
		pending []int // indexes of puts with unknown outcome
		failedR int   // reads that failed (left out: a read changes nothing)
		okAfter int   // operations answered after the kill
	)
	var killedAt atomic.Int64
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
	c.Kill(leader)
	t.Logf("killed leader %s at %s", st.Leader, time.Duration(killedAt.Load()).Round(time.Millisecond))
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
