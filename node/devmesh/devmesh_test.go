package devmesh

import (
	"net"
	"strconv"
	"testing"
)

// FreePorts hands out distinct ports, each free for TCP and UDP, and keeps
// out of the kernel's ephemeral range, where any process's outgoing
// connection could take a port before the agent binds it.
func TestFreePortsQuietAndDistinct(t *testing.T) {
	lo, hi := quietPortRange()
	ports, err := FreePorts(40)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d handed out twice in %v", p, ports)
		}
		seen[p] = true
		if hi > lo && (p < lo || p >= hi) {
			t.Fatalf("port %d is outside the quiet range %d..%d", p, lo, hi)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is not free for TCP: %v", p, err)
		}
		l.Close()
	}
}
