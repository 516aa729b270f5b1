package mesh

import (
	"bytes"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// A packet reaches memberlist whole, in a buffer of its own size rather
// than a slice of a 64 KiB one; streams go through too.
func TestTransportPacketsAndStreams(t *testing.T) {
	a, err := newTransport("127.0.0.1", 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	ip, port, err := a.FinalAdvertiseAddr("", 0)
	if err != nil || !ip.Equal([]byte{127, 0, 0, 1}) || port != a.port() || port == 0 {
		t.Fatalf("advertise %s:%d (%v), want 127.0.0.1:%d", ip, port, err, a.port())
	}
	addr := memberlist.Address{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	msg := bytes.Repeat([]byte("gossip"), 200)
	if _, err := a.WriteToAddress(msg, addr); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-a.PacketCh():
		if !bytes.Equal(p.Buf, msg) || cap(p.Buf) > 2*len(msg) {
			t.Fatalf("packet of %d bytes in a buffer of %d, want %d bytes", len(p.Buf), cap(p.Buf), len(msg))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no packet")
	}
	conn, err := a.DialAddressTimeout(addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	select {
	case in := <-a.StreamCh():
		in.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no stream")
	}
}
