package transfer

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// testConn is a swarmConn with no connection: before a handshake nothing
// is ever written, so the slots' choke changes stay pending.
func testConn(u *uploadSlots) *swarmConn {
	return &swarmConn{slots: u, choked: true, toldChoked: true}
}

func (c *swarmConn) isChoked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.choked
}

func TestUploadSlotsFirstComeFirstServed(t *testing.T) {
	u := newUploadSlots(2)
	defer u.close()
	a, b, c, d := testConn(u), testConn(u), testConn(u), testConn(u)
	for _, x := range []*swarmConn{a, b, c, d} {
		u.want(x, true)
	}
	if a.isChoked() || b.isChoked() || !c.isChoked() || !d.isChoked() {
		t.Fatalf("want a and b unchoked first: %v %v %v %v", a.isChoked(), b.isChoked(), c.isChoked(), d.isChoked())
	}
	// a is sent a whole slot's worth: c, first in the queue, takes over
	// and a queues again behind d.
	u.sent(a, slotBytes-1)
	if a.isChoked() {
		t.Fatal("a lost its slot before slotBytes")
	}
	u.sent(a, 1)
	if !a.isChoked() || c.isChoked() {
		t.Fatal("after slotBytes the slot did not pass from a to c")
	}
	// b stops wanting: d takes its slot.
	u.want(b, false)
	if !b.isChoked() || d.isChoked() {
		t.Fatal("b's slot did not pass to d")
	}
	// c closes: a, queued again, is served.
	u.drop(c)
	if a.isChoked() {
		t.Fatal("a was not served again after c left")
	}
	// A holder alone keeps its slot however much it is sent.
	u2 := newUploadSlots(1)
	defer u2.close()
	e := testConn(u2)
	u2.want(e, true)
	u2.sent(e, 10*slotBytes)
	if e.isChoked() {
		t.Fatal("a holder with nobody waiting lost its slot")
	}
}

func TestUploadSlotsIdleHolderPassesOn(t *testing.T) {
	u := newUploadSlots(1)
	defer u.close()
	a, b := testConn(u), testConn(u)
	u.want(a, true)
	u.want(b, true)
	deadline := time.Now().Add(10 * slotIdle)
	for b.isChoked() {
		if time.Now().After(deadline) {
			t.Fatal("an idle holder kept its slot")
		}
		time.Sleep(slotIdle / 10)
	}
	if !a.isChoked() {
		t.Fatal("both unchoked with one slot")
	}
}

// On the wire: the Unchoke anacrolix writes is dropped; the slot's own
// goes out once the peer is interested; piece data passes uncopied.
func TestSwarmConnSlotsOnTheWire(t *testing.T) {
	u := newUploadSlots(1)
	defer u.close()
	local, remote := net.Pipe()
	defer remote.Close()
	c := &swarmConn{Conn: local, s: &Swarm{}, slots: u, choked: true, toldChoked: true}
	defer c.Close()

	got := make(chan []byte, 64)
	go func() {
		buf := make([]byte, 1<<16)
		for {
			n, err := remote.Read(buf)
			if n > 0 {
				got <- bytes.Clone(buf[:n])
			}
			if err != nil {
				close(got)
				return
			}
		}
	}()
	var seen []byte
	waitFor := func(want []byte) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for !bytes.Contains(seen, want) {
			select {
			case b, ok := <-got:
				if !ok {
					t.Fatalf("connection closed; have %x, want %x", seen, want)
				}
				seen = append(seen, b...)
			case <-timeout:
				t.Fatalf("have %x, want %x", seen, want)
			}
		}
	}
	hs := btHandshake(0x11)
	if _, err := c.Write(hs); err != nil {
		t.Fatal(err)
	}
	waitFor(hs)
	// anacrolix unchokes the peer: dropped, the peer is not interested.
	keepAlive := []byte{0, 0, 0, 0}
	if _, err := c.Write(append(btMsg(btMsgUnchoke, nil), keepAlive...)); err != nil {
		t.Fatal(err)
	}
	waitFor(keepAlive)
	if bytes.Contains(seen[len(hs):], btMsg(btMsgUnchoke, nil)) {
		t.Fatal("anacrolix's Unchoke went out")
	}
	// The peer (its handshake first) declares interest: the slot unchokes it.
	c.in.feed(btHandshake(0x11), wireEvents{})
	c.in.feed(btMsg(btMsgInterested, nil), wireEvents{collect: collectIn, message: c.readIn})
	waitFor(btMsg(btMsgUnchoke, nil))
	// A piece message passes as it is.
	piece := btMsg(btMsgPiece, append(make([]byte, 8), bytes.Repeat([]byte{7}, 1000)...))
	if _, err := c.Write(piece); err != nil {
		t.Fatal(err)
	}
	waitFor(piece)
}

// A peer that has every piece wants nothing from this node, whatever it
// declares: it gives up its slot when its last piece is announced, and a
// peer complete from the start never gets one.
func TestSlotsSkipCompletePeers(t *testing.T) {
	var ih metainfo.Hash
	copy(ih[:], bytes.Repeat([]byte{0x22}, 20))
	obj := Object{Size: 3 * pieceLenSmall, PieceLength: pieceLenSmall} // 3 pieces, not held here
	sw := &Swarm{byIH: map[metainfo.Hash]*swarmEntry{ih: {obj: obj}}}
	u := newUploadSlots(1)
	defer u.close()
	held := func() int {
		u.mu.Lock()
		defer u.mu.Unlock()
		return len(u.held) + len(u.waiting)
	}
	open := func(announce []byte) *swarmConn {
		local, remote := net.Pipe()
		t.Cleanup(func() { remote.Close() })
		go io.Copy(io.Discard, remote)
		c := &swarmConn{Conn: local, s: sw, slots: u, choked: true, toldChoked: true}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(append(btHandshake(0x22), btMsg(btMsgUnchoke, nil)...)); err != nil { // anacrolix would serve it
			t.Fatal(err)
		}
		ev := wireEvents{collect: collectIn, message: c.readIn}
		c.in.feed(btHandshake(0x22), ev)
		c.in.feed(append(announce, btMsg(btMsgInterested, nil)...), ev)
		return c
	}
	c := open(btMsg(btMsgBitfield, []byte{0b1100_0000})) // pieces 0 and 1
	waitFor(t, "the interested peer to get the slot", 5*time.Second, func() bool { return held() == 1 })
	c.in.feed(btMsg(btMsgHave, []byte{0, 0, 0, 2}), wireEvents{collect: collectIn, message: c.readIn})
	waitFor(t, "the complete peer to give the slot up", 5*time.Second, func() bool { return held() == 0 })
	if !c.isChoked() {
		t.Fatal("the complete peer is still unchoked")
	}
	open(btMsg(btMsgHaveAll, nil))
	if n := held(); n != 0 {
		t.Fatalf("a peer complete from the start holds or waits for a slot (%d)", n)
	}
}

func TestSpliceUnchangedIsTheInput(t *testing.T) {
	p := []byte("0123456789")
	s := splice{in: p}
	s.emit(p[:4])
	s.emit(p[4:])
	out := s.result(nil)
	if len(out) != 1 || &out[0][0] != &p[0] || len(out[0]) != len(p) {
		t.Fatalf("unchanged output is not the input itself: %q", out)
	}
	s = splice{in: p}
	s.emit(p[:4])
	s.emit([]byte("xx")) // not from the input: copied
	s.emit(p[6:])
	var all []byte
	for _, b := range s.result([]byte("!")) {
		all = append(all, b...)
	}
	if string(all) != "0123xx6789!" {
		t.Fatalf("spliced %q", all)
	}
}
