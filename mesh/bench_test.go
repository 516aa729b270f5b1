package mesh

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// mockCluster starts n meshes on an in-process memberlist.MockNetwork,
// through the Config.Memberlist hook, with memberlist's default LAN timings
// unless tune changes them.
//
// Two MockNetwork traps, both handled here:
//   - NewTransport writes plain maps that every send reads, so all
//     transports are created before any node starts.
//   - Sends are unbuffered channel sends into the peer's transport, and
//     memberlist answers pings from its receive loop. Two nodes pinging each
//     other at once block in each other's receive loop for good, and the
//     stall spreads until the pool freezes (about 100 nodes suffice). A
//     node that has shut down stops receiving, so every later send to it
//     blocks too. lossyTransport fixes both by draining each node's inbox
//     into a buffer that drops on overflow, as a UDP socket does.
func mockCluster(tb testing.TB, n int, tune func(*memberlist.Config)) []*Mesh {
	tb.Helper()
	network := &memberlist.MockNetwork{}
	stop := make(chan struct{})
	transports := make([]*lossyTransport, n)
	for i := range transports {
		transports[i] = newLossyTransport(network.NewTransport(fmt.Sprintf("node%d", i)), stop)
	}
	nodes := make([]*Mesh, 0, n)
	tb.Cleanup(func() {
		for _, m := range nodes {
			_ = m.Shutdown()
		}
		// memberlist's Shutdown does not wait for a send in flight; keep
		// draining until those sends are done, or they block for good.
		deadline := time.Now().Add(10 * time.Second)
		for len(memberlistGoroutines()) > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		close(stop)
	})
	for i := range n {
		cfg := DefaultConfig()
		cfg.Name = fmt.Sprintf("node%d", i)
		cfg.IDC = "dc1"
		cfg.SecretKey = testKey
		cfg.Logger = slog.New(slog.DiscardHandler)
		cfg.Meta = Meta{ID: "peer-" + cfg.Name}
		tr := transports[i]
		cfg.Memberlist = func(c *memberlist.Config) {
			c.Transport = tr
			if tune != nil {
				tune(c)
			}
		}
		m, err := New(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		nodes = append(nodes, m)
	}
	return nodes
}

// lossyTransport wraps a MockTransport so that receiving never blocks the
// sender: packets go into a bounded inbox and are dropped when it is full
// or the node has shut down; streams to a shut-down node are refused.
type lossyTransport struct {
	*memberlist.MockTransport
	packets chan *memberlist.Packet
	streams chan net.Conn
	closed  atomic.Bool
}

func newLossyTransport(mt *memberlist.MockTransport, stop <-chan struct{}) *lossyTransport {
	t := &lossyTransport{
		MockTransport: mt,
		packets:       make(chan *memberlist.Packet, 1024),
		streams:       make(chan net.Conn, 64),
	}
	go func() { // owned by the network: stops when stop closes
		for {
			select {
			case p := <-mt.PacketCh():
				if t.closed.Load() {
					continue
				}
				select {
				case t.packets <- p:
				default: // a full socket buffer drops
				}
			case c := <-mt.StreamCh():
				if t.closed.Load() {
					_ = c.Close()
					continue
				}
				select {
				case t.streams <- c:
				default:
					_ = c.Close()
				}
			case <-stop:
				return
			}
		}
	}()
	return t
}

func (t *lossyTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *lossyTransport) StreamCh() <-chan net.Conn           { return t.streams }
func (t *lossyTransport) Shutdown() error                     { t.closed.Store(true); return nil }

// joinAll joins every node to node0 and returns how long it took until
// every node saw all of them alive.
func joinAll(tb testing.TB, nodes []*Mesh, timeout time.Duration) time.Duration {
	tb.Helper()
	d, lagging := joinAndWait(tb, nodes, timeout)
	if lagging != "" {
		tb.Fatalf("no convergence after %s: %s", timeout, lagging)
	}
	return d
}

// joinAndWait joins every node to node0 and waits up to timeout until every
// node sees all alive. It returns the time taken, or, on timeout, what the
// slowest node still lacked.
func joinAndWait(tb testing.TB, nodes []*Mesh, timeout time.Duration) (time.Duration, string) {
	tb.Helper()
	start := time.Now()
	seed := nodes[0].LocalAddr()
	for _, m := range nodes[1:] {
		if _, err := m.Join([]string{seed}); err != nil {
			tb.Fatalf("join %s: %v", m.cfg.Name, err)
		}
	}
	deadline := start.Add(timeout)
	for {
		lagging, least := "", len(nodes)
		for _, m := range nodes {
			if got := m.table.numLive(); got < least {
				least = got
				lagging = fmt.Sprintf("%s sees %d of %d alive", m.cfg.Name, got, len(nodes))
			}
		}
		if lagging == "" {
			return time.Since(start), ""
		}
		if time.Now().After(deadline) {
			return time.Since(start), lagging
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// BenchmarkConverge measures how long N in-process nodes on a MockNetwork,
// each joining one seed, take until every node sees all N alive, with the
// agent's gossip settings. All N share this process's cores, so the larger
// sizes measure the machine as much as the protocol: a size that does not
// converge within HERD_CONVERGE_TIMEOUT (default 3m) is reported with the
// fraction reached instead of failing the run. 1,000 nodes run twice: with
// the agent's profile and with a CPU-saving scale profile.
func BenchmarkConverge(b *testing.B) {
	timeout := 3 * time.Minute
	if v := os.Getenv("HERD_CONVERGE_TIMEOUT"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			timeout = d
		}
	}
	// The scale profile trades detection speed for CPU: what a 1,000-node
	// pool sharing 2 cores needs to converge at all.
	scale := func(c *memberlist.Config) {
		c.EnableCompression = false
		c.GossipInterval = 500 * time.Millisecond
		c.ProbeInterval = 3 * time.Second
		c.ProbeTimeout = 1500 * time.Millisecond
		c.SuspicionMult = 6
	}
	for _, tc := range []struct {
		name string
		n    int
		tune func(*memberlist.Config)
	}{
		{"nodes=100", 100, nil},
		{"nodes=500", 500, nil},
		{"nodes=1000", 1000, nil},
		{"nodes=1000/profile=scale", 1000, scale},
	} {
		n := tc.n
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				nodes := mockCluster(b, n, tc.tune)
				d, lagging := joinAndWait(b, nodes, timeout)
				b.StopTimer()
				if lagging != "" {
					b.Logf("%d nodes did not converge within %s: %s", n, timeout, lagging)
					b.ReportMetric(0, "converged")
				} else {
					b.ReportMetric(d.Seconds(), "s/converge")
					b.ReportMetric(1, "converged")
				}
				for _, m := range nodes {
					_ = m.Shutdown()
				}
				b.StartTimer()
			}
		})
	}
}

// TestMockNetworkCluster keeps the benchmark's path working in every test
// run: the hook installs a MockNetwork transport, and labels spread.
func TestMockNetworkCluster(t *testing.T) {
	nodes := mockCluster(t, 20, fastTimings)
	joinAll(t, nodes, 20*time.Second)
	if err := nodes[7].SetLabels(map[string]string{"role": "x"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		for _, m := range nodes {
			if mem, _ := m.Member("node7"); mem.Labels["role"] != "x" {
				return false, m.cfg.Name + " has not seen node7's label"
			}
		}
		return true, ""
	})
}
