package consensus

import (
	"testing"
	"time"
)

// BenchmarkFailover measures how long after the leader dies (killed, no
// leave) a write is accepted again, with herd's LAN defaults, Consul's
// timings and the tests' fast timings. It reports the mean and the worst
// case; each iteration starts a fresh 3-node group (not timed).
func BenchmarkFailover(b *testing.B) {
	var fast GroupConfig
	fastGroup(&fast)
	for _, bc := range []struct {
		name    string
		timings RaftTimings
	}{
		{"lan-defaults", DefaultRaftTimings()},
		{"fast", fast.Raft},
		// Consul's LAN timings, for comparison: 1s heartbeat and election
		// timeouts put the worst case near 3s.
		{"consul-1s", RaftTimings{HeartbeatTimeout: time.Second, ElectionTimeout: time.Second, LeaderLeaseTimeout: 500 * time.Millisecond}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var total, worst time.Duration
			b.StopTimer()
			for i := 0; i < b.N; i++ {
				c := startCluster(b, 3, 3, nil, func(g *GroupConfig) { g.Raft = bc.timings })
				old := c.waitConverged(30*time.Second, 3)
				c.mustSet("warm", "1")
				b.StartTimer()
				start := time.Now()
				old.kill()
				for {
					if l, err := c.leader(); err == nil {
						if _, err := set(l.group.Raft(), "after", "1"); err == nil {
							break
						}
					}
					if time.Since(start) > 30*time.Second {
						b.Fatal("no write accepted within 30s of the leader's death")
					}
					time.Sleep(5 * time.Millisecond) // poll interval
				}
				d := time.Since(start)
				b.StopTimer()
				total += d
				worst = max(worst, d)
				for _, n := range c.nodes {
					n.kill()
				}
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/failover")
			b.ReportMetric(worst.Seconds(), "max-s/failover")
		})
	}
}
