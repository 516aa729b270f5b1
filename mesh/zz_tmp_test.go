package mesh

import (
	"testing"
	"time"
)

func BenchmarkConvergeTmp1000(b *testing.B) {
	for i := 0; i < b.N; i++ {
		nodes := mockCluster(b, 1000, nil)
		d := joinAll(b, nodes, 5*time.Minute)
		b.ReportMetric(d.Seconds(), "s/converge")
	}
}
