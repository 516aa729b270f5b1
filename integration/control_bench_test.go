package integration_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-io/herd/integration/cluster"
	"github.com/herd-io/herd/node/api"
)

// leaderIndex returns the index of the agent that leads its IDC's group.
func leaderIndex(t testing.TB, c *cluster.Cluster, idc string) int {
	t.Helper()
	for i, a := range c.Agents {
		if a.IDC() == idc && a.Control().Group().IsLeader() {
			return i
		}
	}
	t.Fatalf("no leader in %s", idc)
	return -1
}

// startWriters runs write(1..total) across clients goroutines and sends
// the first error (or nil) on the returned channel once all have stopped.
func startWriters(clients, total int, write func(n int64) error) <-chan error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := next.Add(1); n <= int64(total); n = next.Add(1) {
				if err := write(n); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	out := make(chan error, 1)
	go func() { wg.Wait(); out <- first }()
	return out
}

// BenchmarkKVWrite measures committed writes per second in a 3-voter group
// through the HTTP API: one client or many (raft batches concurrent
// writes into one log append: group commit), sent to the leader's API or to
// a follower's, which forwards over node streams.
func BenchmarkKVWrite(b *testing.B) {
	c := cluster.New(b, 3, cluster.Options{ControlSize: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	waitControl(ctx, b, c, 0, "", 3)
	leader := leaderIndex(b, c, "dc1")
	follower := (leader + 1) % 3
	for _, via := range []struct {
		name string
		node int
	}{{"leader", leader}, {"follower", follower}} {
		for _, clients := range []int{1, 16} {
			b.Run(fmt.Sprintf("via=%s/clients=%d", via.name, clients), func(b *testing.B) {
				client := c.Client(via.node)
				b.ResetTimer()
				start := time.Now()
				err := <-startWriters(clients, b.N, func(n int64) error {
					key := fmt.Sprintf("bench/%s/%d/%d", via.name, clients, n)
					_, err := client.KVPut(ctx, key, []byte("v"), "", nil)
					return err
				})
				elapsed := time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "writes/s")
			})
		}
	}
}

// BenchmarkFailoverProcess kills -9 the leader process of a 3-node group of
// real agents and measures the time until a surviving node accepts a write
// again (target <= 3 s). The killed node is restarted between rounds.
func BenchmarkFailoverProcess(b *testing.B) {
	c := startDev(b, 3, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	clientOf := func(i int) *api.Client {
		cl, err := c.Client(i)
		if err != nil {
			b.Fatal(err)
		}
		return cl
	}
	leaderOf := func() int {
		var idx int
		err := cluster.WaitFor(ctx, 50*time.Millisecond, func() error {
			for i, n := range c.Nodes {
				if n.Exited() {
					continue
				}
				st, err := clientOf(i).ControlStatus(ctx, "")
				if err != nil {
					return err
				}
				if st.Leader == "" || len(st.Servers) != 3 {
					return fmt.Errorf("no stable group: %+v", st)
				}
				for j, m := range c.Nodes {
					if m.Name == st.Leader {
						idx = j
						return nil
					}
				}
			}
			return fmt.Errorf("no live node")
		})
		if err != nil {
			b.Fatal(err)
		}
		return idx
	}
	var total, worst time.Duration
	for i := 0; i < b.N; i++ {
		leader := leaderOf()
		survivor := (leader + 1) % 3
		if _, err := clientOf(survivor).KVPut(ctx, "failover/warm", []byte("x"), "", nil); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := c.Signal(leader, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		err := cluster.WaitFor(ctx, 10*time.Millisecond, func() error {
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
			defer wcancel()
			_, err := clientOf(survivor).KVPut(wctx, fmt.Sprintf("failover/%d", i), []byte("x"), "", nil)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		d := time.Since(start)
		total, worst = total+d, max(worst, d)
		b.StopTimer()
		if err := c.WaitExit(ctx, leader); err != nil {
			b.Fatal(err)
		}
		if err := c.Restart(leader); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/failover-mean")
	b.ReportMetric(worst.Seconds(), "s/failover-max")
}

// BenchmarkReplicationLag writes global objects in the primary IDC under
// load (8 clients) and measures, per write, the time until the second
// IDC's replica holds it.
func BenchmarkReplicationLag(b *testing.B) {
	c := cluster.New(b, 6, cluster.Options{IDCs: 2, ControlSize: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	waitControl(ctx, b, c, 0, "", 3)
	waitControl(ctx, b, c, 1, "", 3)
	dc2 := c.Agents[leaderIndex(b, c, "dc2")].Control().Store()
	primary := c.Client(0)

	type write struct {
		key   string
		acked time.Time
	}
	var mu sync.Mutex
	var writes []write
	b.ResetTimer()
	start := time.Now()
	finished := startWriters(8, b.N, func(n int64) error {
		key := fmt.Sprintf("lag/%d", n)
		if _, err := primary.KVPut(ctx, key, []byte("v"), "", nil); err != nil {
			return err
		}
		mu.Lock()
		writes = append(writes, write{key, time.Now()})
		mu.Unlock()
		return nil
	})
	// Sample the replica while the writers run and after: a key's lag is
	// the first time it is seen there minus its acknowledgement.
	seen := map[string]time.Time{}
	done := make(chan struct{})
	var writeErr error
	go func() { writeErr = <-finished; close(done) }()
	err := cluster.WaitFor(ctx, 2*time.Millisecond, func() error {
		_, entries, err := dc2.KVList(nil, "global", "lag/")
		if err != nil {
			return err
		}
		now := time.Now()
		for _, e := range entries {
			if _, ok := seen[e.Key]; !ok {
				seen[e.Key] = now
			}
		}
		select {
		case <-done:
		default:
			return fmt.Errorf("writers still running")
		}
		if len(seen) < b.N {
			return fmt.Errorf("replica has %d of %d", len(seen), b.N)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if writeErr != nil {
		b.Fatal(writeErr)
	}
	elapsed := time.Since(start)
	var lags []time.Duration
	for _, w := range writes {
		lags = append(lags, max(0, seen[w.key].Sub(w.acked)))
	}
	slices.Sort(lags)
	var sum time.Duration
	for _, l := range lags {
		sum += l
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "writes/s")
	b.ReportMetric(float64(sum.Milliseconds())/float64(len(lags)), "ms/lag-mean")
	b.ReportMetric(float64(lags[len(lags)*99/100].Milliseconds()), "ms/lag-p99")
}
