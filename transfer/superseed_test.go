package transfer

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func btHandshake(ih byte) []byte {
	hs := append([]byte(nil), btProtocol...)
	hs = append(hs, make([]byte, 8)...)
	hs = append(hs, bytes.Repeat([]byte{ih}, 20)...)
	return append(hs, bytes.Repeat([]byte{'p'}, 20)...)
}

func btMsg(id byte, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(1+len(payload)))
	return append(append(b, id), payload...)
}

// feedSplit feeds stream to a fresh cursor in random pieces and returns
// what it passed on and the messages it collected.
func feedSplit(t *testing.T, stream []byte, rng *rand.Rand, rewrite func([]byte) []byte) (out []byte, collected [][]byte, hs []byte) {
	t.Helper()
	var w wireCursor
	ev := wireEvents{
		emit:      func(b []byte) { out = append(out, b...) },
		handshake: func(h []byte) { hs = append([]byte(nil), h...) },
		collect:   func(id byte) bool { return id == btMsgHave || id == btMsgBitfield || id == btMsgHaveAll },
		message: func(m []byte) []byte {
			collected = append(collected, append([]byte(nil), m...))
			return rewrite(m)
		},
	}
	for b := stream; len(b) > 0; {
		n := 1 + rng.IntN(min(len(b), 40))
		w.feed(b[:n], ev)
		b = b[n:]
	}
	return out, collected, hs
}

func TestWireCursorSplits(t *testing.T) {
	piece := btMsg(7, append(make([]byte, 8), bytes.Repeat([]byte{9}, 300)...))
	stream := btHandshake(0xab)
	stream = append(stream, btMsg(20, []byte("d1:md6:ut_pexi1eee"))...)
	stream = append(stream, btMsg(btMsgHaveAll, nil)...)
	stream = append(stream, 0, 0, 0, 0) // keep-alive
	stream = append(stream, btMsg(btMsgHave, []byte{0, 0, 0, 3})...)
	stream = append(stream, piece...)
	stream = append(stream, btMsg(btMsgBitfield, []byte{0xff, 0x80})...)
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 1))
		out, got, hs := feedSplit(t, stream, rng, func(m []byte) []byte { return m })
		if !bytes.Equal(out, stream) {
			t.Fatalf("seed %d: pass-through changed the stream", seed)
		}
		if !bytes.Equal(hs, btHandshake(0xab)) {
			t.Fatalf("seed %d: handshake %x", seed, hs)
		}
		if len(got) != 3 || got[0][4] != btMsgHaveAll || got[1][4] != btMsgHave || got[2][4] != btMsgBitfield {
			t.Fatalf("seed %d: collected %x", seed, got)
		}
		// Rewriting replaces exactly the collected messages.
		out, _, _ = feedSplit(t, stream, rng, func(m []byte) []byte {
			if m[4] == btMsgHaveAll {
				return btMsg(btMsgHaveNone, nil)
			}
			return m
		})
		want := bytes.Replace(stream, btMsg(btMsgHaveAll, nil), btMsg(btMsgHaveNone, nil), 1)
		if !bytes.Equal(out, want) {
			t.Fatalf("seed %d: rewritten stream differs", seed)
		}
	}
}

func TestWireCursorForeignStream(t *testing.T) {
	stream := append([]byte("\x13BitTorrent protocoX"), bytes.Repeat([]byte{1}, 100)...)
	var w wireCursor
	var out []byte
	w.feed(stream, wireEvents{emit: func(b []byte) { out = append(out, b...) }})
	if !w.broken || !bytes.Equal(out, stream) {
		t.Fatalf("broken=%v, passed %d of %d bytes", w.broken, len(out), len(stream))
	}
}

func TestRevealBookPicksRarest(t *testing.T) {
	b := newRevealBook(6)
	b.copies = []int32{2, 0, 1, 1, 3, 1}
	b.had = []int32{2, 0, 1, 1, 3, 1}
	b.missing = 1
	has := []bool{false, false, false, true, false, false}
	shown := make([]bool, 6)
	if i := b.pick(nil, has, shown, 0); i != 1 {
		t.Fatalf("first pick %d, want 1 (no copies; piece 3 is had)", i)
	}
	shown[1] = true
	b.add(1, 0, 1) // it arrived: every piece is out
	if i := b.pick(nil, has, shown, 4); i != 5 {
		t.Fatalf("second pick from 4: %d, want 5 (one copy, first after 4)", i)
	}
	for i := range has {
		has[i] = true
	}
	if i := b.pick(nil, has, shown, 0); i != -1 {
		t.Fatalf("pick with nothing missing: %d", i)
	}
}

// While pieces are on their way to their only peer, no piece is shown
// twice: the seeder's upload goes to pieces the swarm lacks. Once every
// piece is had, the peers shown nothing are woken and get the rarest.
func TestRevealBookShowsNothingTwiceUntilAllAreOut(t *testing.T) {
	b := newRevealBook(3)
	none := make([]bool, 3)
	var got []int
	for range 3 {
		got = append(got, b.pick(nil, none, none, 0))
	}
	if !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("first picks %v, want each piece once", got)
	}
	d := &swarmConn{}
	if i := b.pick(d, none, none, 0); i != -1 {
		t.Fatalf("pick %d while every piece is on its way, want none", i)
	}
	b.add(0, 0, 1)
	b.add(1, 0, 1)
	if !b.waiters[d] {
		t.Fatal("the peer shown nothing is no longer waiting")
	}
	b.add(2, 0, 1) // the last piece is out: d is woken
	if len(b.waiters) != 0 {
		t.Fatal("waiters not woken when the last piece arrived")
	}
	b.add(1, 1, 1) // piece 1 now has two copies
	if i := b.pick(d, none, none, 0); i != 0 {
		t.Fatalf("pick %d after every piece is out, want 0 (fewest copies)", i)
	}
}

// A peer waiting on a piece that went to another peer and never arrived
// is woken once the piece has been on its way for the grace, and is shown
// it: a stuck peer does not hold up the rest.
func TestRevealBookRechecksStuckPieces(t *testing.T) {
	b := newRevealBook(2)
	b.grace = 50 * time.Millisecond
	woke := make(chan *swarmConn, 4)
	b.wake = func(c *swarmConn) { woke <- c }
	none := make([]bool, 2)
	stuck, other, d, gone := &swarmConn{}, &swarmConn{}, &swarmConn{}, &swarmConn{}
	if i := b.pick(stuck, none, none, 0); i != 0 {
		t.Fatalf("stuck peer shown %d, want 0", i)
	}
	if i := b.pick(other, none, none, 0); i != 1 {
		t.Fatalf("other peer shown %d, want 1", i)
	}
	b.add(1, 0, 1) // piece 1 arrived; piece 0 never will
	if i := b.pick(d, none, none, 0); i != -1 {
		t.Fatalf("pick %d while piece 0 is on its way, want none", i)
	}
	if i := b.pick(gone, none, none, 0); i != -1 {
		t.Fatalf("pick %d while piece 0 is on its way, want none", i)
	}
	b.forget(gone) // its connection closed: no wake
	select {
	case c := <-woke:
		if c != d {
			t.Fatalf("woke %p, want the waiting peer %p", c, d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting peer was never woken")
	}
	if i := b.pick(d, none, none, 0); i != 0 {
		t.Fatalf("after the grace the waiting peer was shown %d, want the stuck piece 0", i)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.recheck) != 0 || len(b.waiters) != 0 {
		t.Fatalf("left %d rechecks, %d waiters", len(b.recheck), len(b.waiters))
	}
}

// FuzzWireCursor: any byte stream, split anywhere, passes through a cursor
// unchanged when nothing is rewritten, and never panics it.
func FuzzWireCursor(f *testing.F) {
	f.Add(append(btHandshake(1), btMsg(btMsgBitfield, []byte{0xf0})...), uint64(1))
	f.Add([]byte("\x13BitTorrent protocol"), uint64(2))
	f.Add(append(btHandshake(2), 0xff, 0xff, 0xff, 0xff, 5, 1), uint64(3))
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 7))
		out, _, _ := feedSplit(t, stream, rng, func(m []byte) []byte { return m })
		// A message still being collected at the end is held back.
		if !bytes.HasPrefix(stream, out) {
			t.Fatalf("output is not a prefix of the input")
		}
	})
}
