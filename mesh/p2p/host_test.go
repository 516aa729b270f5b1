package p2p

import (
	"runtime"
	"strings"
	"testing"
)

// A host speaks TCP only: libp2p's QUIC machinery must not keep goroutines
// of its own (two per host, each waking every 30 s: thousands in a
// thousand-node test fleet).
func TestHostRunsNoQUICGoroutines(t *testing.T) {
	newTestHost(t, nil)
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "/quicreuse.") {
			t.Fatalf("a QUIC goroutine runs although TCP is the only transport:\n%s", g)
		}
	}
}
