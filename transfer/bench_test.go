package transfer

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// benchFile writes a size-byte pseudo-random file once per benchmark.
func benchFile(b *testing.B, size int) string {
	b.Helper()
	chunk := randomBytes(64<<20, 1)
	p := b.TempDir() + "/big.bin"
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	for off := 0; off < size; off += len(chunk) {
		f.Write(chunk[:min(len(chunk), size-off)])
	}
	f.Close()
	return p
}

// BenchmarkPrepare measures `herd file add`: one pass that hashes
// (SHA-256, MD5, piece SHA-1s) and copies a 1 GiB file into the store.
func BenchmarkPrepare(b *testing.B) {
	const size = 1 << 30
	p := benchFile(b, size)
	st := newStore(b)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		obj, err := st.AddFile(context.Background(), p, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		st.Remove(obj.SHA256)
		b.StartTimer()
	}
}

// BenchmarkHashOnly is BenchmarkPrepare without the copy: the hashing
// pipeline alone over a (page-cached) 1 GiB file.
func BenchmarkHashOnly(b *testing.B) {
	const size = 1 << 30
	p := benchFile(b, size)
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		f, _ := os.Open(p)
		if _, err := hashStream(context.Background(), f, nil, PieceLength(size), size, nil); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// BenchmarkSwarm: 1 seeder + 5 leechers, 64 MiB, in-process over loopback.
// Bytes/s is object size × leechers / wall time.
func BenchmarkSwarm(b *testing.B) {
	const n = 5
	data := randomBytes(64<<20, 30)
	for b.Loop() {
		b.StopTimer()
		seeder, obj := seeded(b, "127.0.4.1", data, nil)
		mi, _ := seeder.store.MetaInfo(obj.SHA256)
		peers := []Peer{{Addr: seeder.Addr(), Name: "seeder"}}
		var ls []*Swarm
		for i := range n {
			l := newTestSwarm(b, newStore(b), fmt.Sprintf("127.0.4.%d", i+2), nil)
			ls = append(ls, l)
			peers = append(peers, Peer{Addr: l.Addr(), Name: fmt.Sprint("l", i)})
		}
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for _, l := range ls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := l.Fetch(context.Background(), obj, mi, peers, nil); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(n*len(data))/time.Since(start).Seconds()/1e6, "MB/s-delivered")
		b.StopTimer()
		seeder.Close()
		for _, l := range ls {
			l.Close()
		}
		b.StartTimer()
	}
}
