package transfer

import (
	"net"
	"testing"
	"time"
)

// The node gives back the slot of its slowest sender once its download
// rate has settled at its peak, one at a time and never below yieldKeep
// senders, and asks again the one it gave back first when the rate falls.
func TestDownloadYieldPolicy(t *testing.T) {
	y := &downloadYield{conns: map[*swarmConn]*connRx{}}
	var conns []*swarmConn
	for range 5 {
		c := &swarmConn{localInterested: true}
		conns = append(conns, c)
		y.add(c)
	}
	// Each tick the senders deliver 100, 200, ... 500 KB: 1.5 MB a tick.
	now := time.Unix(1000, 0)
	step := func(scale float64) (*swarmConn, bool) {
		now = now.Add(yieldTick)
		for i, c := range conns {
			c.rxBytes.Add(int64(scale * float64(i+1) * 100e3))
		}
		c, yield := y.tick(now)
		if c != nil {
			c.yielded = yield // what setYielded records
		}
		return c, yield
	}
	// Ramping up (every tick a new peak), then holding: nothing is given
	// back until the peak has held for yieldSettle.
	for i, scale := range []float64{0.2, 0.4, 0.6, 0.8, 1} {
		if c, _ := step(scale); c != nil {
			t.Fatalf("tick %d of the ramp: %p acted on", i, c)
		}
	}
	settled := now.Add(yieldSettle)
	var given []*swarmConn
	var at []time.Time
	for now.Before(settled.Add(3 * time.Second)) {
		if c, yield := step(1); c != nil {
			if !yield {
				t.Fatal("asked again while the link is full")
			}
			given = append(given, c)
			at = append(at, now)
		}
	}
	// The slowest first, yieldGap apart, none before the peak settled,
	// and only while yieldKeep senders serve: 5 senders leave 2.
	if len(given) != 3 || given[0] != conns[0] || given[1] != conns[1] || given[2] != conns[2] {
		t.Fatalf("gave back %v, want the three slowest (%p, %p, %p)", given, conns[0], conns[1], conns[2])
	}
	if at[0].Before(settled) || at[1].Sub(at[0]) < yieldGap || at[2].Sub(at[1]) < yieldGap {
		t.Fatalf("gave back at %v, settled %v", at, settled)
	}
	// The rate falls well below the peak: the first given back is asked again.
	var asked *swarmConn
	for range 2 * yieldWindow {
		if c, yield := step(0.5); c != nil && !yield {
			asked = c
			break
		}
	}
	if asked != conns[0] {
		t.Fatalf("asked %p again, want %p (given back first)", asked, conns[0])
	}
}

// setYielded writes NotInterested, then Interested, at a message boundary;
// anacrolix's own interest message supersedes it.
func TestSwarmConnYieldOnTheWire(t *testing.T) {
	local, remote := net.Pipe()
	defer remote.Close()
	c := &swarmConn{Conn: local, s: &Swarm{}, choked: true, toldChoked: true}
	defer c.Close()
	got := make(chan []byte, 16)
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := remote.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- append([]byte(nil), buf[:n]...)
		}
	}()
	var seen []byte
	// read returns what was written since the last read, once it is n bytes.
	read := func(n int) []byte {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for len(seen) < n {
			select {
			case b := <-got:
				seen = append(seen, b...)
			case <-timeout:
				t.Fatalf("have %x, want %d bytes", seen, n)
			}
		}
		out := seen[:n]
		seen = seen[n:]
		return out
	}
	hs := btHandshake(0x33)
	if _, err := c.Write(append(hs, btMsg(btMsgInterested, nil)...)); err != nil {
		t.Fatal(err)
	}
	if b := read(len(hs) + 5); string(b) != string(append(hs, btMsg(btMsgInterested, nil)...)) {
		t.Fatalf("wrote %x", b)
	}
	c.setYielded(true)
	if b := read(5); string(b) != string(btMsg(btMsgUninterested, nil)) {
		t.Fatalf("yield wrote %x, want NotInterested", b)
	}
	c.setYielded(false)
	if b := read(5); string(b) != string(btMsg(btMsgInterested, nil)) {
		t.Fatalf("asking again wrote %x, want Interested", b)
	}
	c.setYielded(true)
	read(5)
	// anacrolix says NotInterested itself: the connection is no longer
	// yielded, so nothing asks for it again.
	if _, err := c.Write(btMsg(btMsgUninterested, nil)); err != nil {
		t.Fatal(err)
	}
	read(5)
	c.mu.Lock()
	yielded, interested := c.yielded, c.localInterested
	c.mu.Unlock()
	if yielded || interested {
		t.Fatalf("after anacrolix's NotInterested: yielded %v, interested %v", yielded, interested)
	}
}
