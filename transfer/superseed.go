package transfer

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"time"
)

// Super-seeding (after BEP 16). A node that holds a whole object does not
// tell a new peer so: it announces no pieces, then reveals a few at a time
// — pieces nobody has first, then the rarest (see revealBook) — and another
// each time the peer reports having one. Without it every fetcher asks the
// origin for whichever piece it wants next, and the origin, whose upload
// link is what bounds a push (the fluid bound is S/U_seed), sends the same
// pieces several times over (2.6 copies of a 200 MB file pushed to 20
// hosts) while pieces nobody has yet wait.
//
// anacrolix has no super-seeding, so it is done on the wire: every swarm
// connection goes through a swarmConn. On a connection whose object this
// node holds whole when the handshake names it, the swarmConn rewrites the
// node's opening announcement (HaveAll becomes HaveNone, a full bitfield
// an empty one) and injects Have messages. anacrolix on the seeding side
// still believes the peer knows everything and serves any request.
// Connections of objects still being fetched pass through untouched: a
// fetcher announces its pieces as they verify, as usual. So do those of an
// object this process fetched itself: once a push is under way its
// fetchers hold every piece between them, and a host that just finished
// should hand out whatever its peers lack, not one piece at a time (BEP
// 16 keeps super-seeding for the initial seeder too; measured: the last
// host of a 200 MB push to 20 finished ~1 s sooner).

// revealAhead is how many revealed pieces a peer may be missing at once.
// The seeder's upload is split between the pieces in flight, and nobody
// can pass a piece on before it is whole: with one each, 20 peers get
// their first piece after 20 pieces' time (two each took twice that, and a
// 200 MB push to 20 hosts 37 s instead of 33 s).
const revealAhead = 1

// revealBook is a seeder's count, per piece of one object, of the peers
// connected to it that have the piece or have been shown it and not yet
// got it (copies: the piece's copies in the swarm, as far as this seeder
// can see), and of those that have it (had).
//
// The seeder's upload bounds the push: the fluid bound is the time to send
// each piece once. So until every piece is had by some peer, the seeder
// shows only pieces never shown before (a piece slow to arrive is shown
// again after inFlightGrace), and only then the rarest. Counting shown and
// had pieces alike, it sent copies of pieces peers already had while the
// last pieces waited: in a 200 MB push to 20 hosts the last piece was
// first had after 26.6 s of a 29.7 s push.
type revealBook struct {
	mu      sync.Mutex
	copies  []int32
	had     []int32
	shownAt []time.Time         // when each piece was first shown
	missing int                 // pieces nobody has
	waiters map[*swarmConn]bool // found nothing to show while pieces were on their way
	// recheck holds, per waiter, the timer that wakes it when the piece it
	// waits on has been on its way for grace (see pick).
	recheck map[*swarmConn]*time.Timer
	grace   time.Duration      // inFlightGrace; shorter in tests
	wake    func(c *swarmConn) // (*swarmConn).topUp; a probe in tests
}

func newRevealBook(pieces int) *revealBook {
	return &revealBook{copies: make([]int32, pieces), had: make([]int32, pieces), shownAt: make([]time.Time, pieces),
		missing: pieces, waiters: map[*swarmConn]bool{}, recheck: map[*swarmConn]*time.Timer{},
		grace: inFlightGrace, wake: (*swarmConn).topUp}
}

// pick returns the piece to show c's peer, which neither has nor has been
// shown it: one never shown, else (once every piece is had by someone) the
// one with the fewest copies; scanning from start so that ties go to
// different pieces for different peers. It returns -1 when there is none,
// and also while every piece is shown but some are still on their way to
// their only peer: showing those to a second peer would split the
// seeder's upload between two copies of one piece. c is then woken (see
// add) when the last of them arrives. A piece still not had inFlightGrace
// after it was shown may be shown again: its peer may be slow or gone. So
// c is also woken when the piece it waits on has been on its way that
// long: without that, a peer stuck on the last pieces nobody has would
// leave every other peer waiting for as long as its connection lived. The
// piece's count is raised: it is on its way.
func (b *revealBook) pick(c *swarmConn, has, shown []bool, start int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.copies)
	best := -1
	less := func(i, j int) bool {
		if (b.had[i] == 0) != (b.had[j] == 0) {
			return b.had[i] == 0
		}
		return b.copies[i] < b.copies[j]
	}
	for k := range n {
		i := (start + k) % n
		if has[i] || shown[i] {
			continue
		}
		if best < 0 || less(i, best) {
			best = i
			if b.copies[i] == 0 {
				break
			}
		}
	}
	if best >= 0 && b.copies[best] > 0 && b.missing > 0 &&
		(b.had[best] > 0 || time.Since(b.shownAt[best]) < b.grace) {
		b.waiters[c] = true
		if b.had[best] == 0 {
			b.recheckLocked(c, time.Until(b.shownAt[best].Add(b.grace)))
		}
		return -1
	}
	if best >= 0 {
		if b.copies[best] == 0 {
			b.shownAt[best] = time.Now()
		}
		b.copies[best]++
	}
	return best
}

// recheckLocked wakes waiter c after d, unless a wake is already due.
func (b *revealBook) recheckLocked(c *swarmConn, d time.Duration) {
	if c == nil || b.recheck[c] != nil {
		return
	}
	b.recheck[c] = time.AfterFunc(max(d, 0), func() {
		b.mu.Lock()
		delete(b.recheck, c)
		waiting := b.waiters[c]
		delete(b.waiters, c)
		b.mu.Unlock()
		if waiting {
			b.wake(c)
		}
	})
}

// inFlightGrace is how long a piece shown to one peer has to arrive before
// the seeder shows it to another too: four times what a 4 MiB piece takes
// at a sixth of a 100 Mbit link.
const inFlightGrace = 8 * time.Second

// add changes piece i's copies by d, and its holders by had. When the
// last piece nobody had arrives, the peers that were shown nothing are
// woken: every piece is out, and the seeder helps with the rarest.
func (b *revealBook) add(i int, d, had int32) {
	b.mu.Lock()
	before := b.had[i]
	b.copies[i] += d
	b.had[i] += had
	switch {
	case before == 0 && b.had[i] > 0:
		b.missing--
	case before > 0 && b.had[i] == 0:
		b.missing++
	}
	var wake []*swarmConn
	if b.missing == 0 && len(b.waiters) > 0 {
		for c := range b.waiters {
			wake = append(wake, c)
			b.stopRecheckLocked(c)
		}
		clear(b.waiters)
	}
	b.mu.Unlock()
	for _, c := range wake {
		go b.wake(c)
	}
}

// forget drops c from the waiters.
func (b *revealBook) forget(c *swarmConn) {
	b.mu.Lock()
	delete(b.waiters, c)
	b.stopRecheckLocked(c)
	b.mu.Unlock()
}

func (b *revealBook) stopRecheckLocked(c *swarmConn) {
	if t := b.recheck[c]; t != nil {
		t.Stop()
		delete(b.recheck, c)
	}
}

// seeding is a swarmConn's super-seeding state, set when the handshake
// names an object this node held whole before the push. Guarded by the
// connection's mu.
type seeding struct {
	book      *revealBook
	announced bool // the rewritten announcement went out: Haves may follow
	shown     []bool
	missing   int   // shown pieces the peer does not have yet
	pending   []int // shown pieces whose Have is not written yet
	start     int
}

// decide learns the object from this node's own handshake, which names
// it, and starts super-seeding if this node held the object whole before
// this process fetched anything of it (an origin, or a holder from an
// earlier push).
func (c *swarmConn) decide(hs []byte) {
	var ih [20]byte
	copy(ih[:], hs[28:48])
	c.mu.Lock()
	defer c.mu.Unlock()
	c.decided = true
	if e := c.s.entryByInfoHash(ih); e != nil {
		n := e.pieces()
		c.peerHas, c.peerMissing = make([]bool, n), n
		if n > 0 && e.complete() && !e.fetched.Load() {
			c.seed = &seeding{book: e.revealBook(), shown: make([]bool, n), start: rand.IntN(n)}
		}
	}
	if c.early != nil { // the peer announced before this node's handshake went out
		early := c.early
		c.early = nil
		c.noteLocked(early)
	}
}

// rewriteAnnouncement hides that this node has every piece.
func (c *swarmConn) rewriteAnnouncement(m []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seed == nil {
		return m
	}
	out := m
	switch m[4] {
	case btMsgHaveAll:
		out = []byte{0, 0, 0, 1, btMsgHaveNone}
	case btMsgBitfield:
		out = make([]byte, len(m))
		copy(out, m[:5])
	}
	c.seed.announced = true
	c.topUpLocked()
	return out
}

// peerAnnounced takes a Have, Bitfield, HaveAll or HaveNone from the peer.
func (c *swarmConn) peerAnnounced(m []byte) {
	c.mu.Lock()
	if !c.decided {
		c.early = append(c.early, m...)
		c.mu.Unlock()
		return
	}
	wasSeed := c.peerSeedLocked()
	c.noteLocked(m)
	seedNow := c.peerSeedLocked()
	flush := c.seed != nil && len(c.seed.pending) > 0
	c.mu.Unlock()
	if flush {
		go c.flush()
	}
	if seedNow != wasSeed && c.slots != nil {
		c.wantChanged(func() {}) // a peer with every piece wants nothing
	}
}

// noteLocked records the pieces announced by the peer's messages in b
// (whole messages, prefixes included) and, when super-seeding, reveals
// more.
func (c *swarmConn) noteLocked(b []byte) {
	if c.closed {
		return
	}
	for len(b) >= 5 {
		length := int(binary.BigEndian.Uint32(b[:4]))
		if length < 1 || 4+length > len(b) {
			return
		}
		m := b[:4+length]
		b = b[4+length:]
		switch m[4] {
		case btMsgHave:
			if length == 5 {
				c.gotLocked(int(binary.BigEndian.Uint32(m[5:9])))
			}
		case btMsgHaveAll:
			for i := range c.peerHas {
				c.gotLocked(i)
			}
		case btMsgBitfield:
			for i := range c.peerHas {
				if i/8 < len(m)-5 && m[5+i/8]&(0x80>>(i%8)) != 0 {
					c.gotLocked(i)
				}
			}
		}
	}
	c.topUpLocked()
}

// gotLocked records that the peer has piece i.
func (c *swarmConn) gotLocked(i int) {
	if i < 0 || i >= len(c.peerHas) || c.peerHas[i] {
		return
	}
	c.peerHas[i] = true
	c.peerMissing--
	sd := c.seed
	if sd == nil {
		return
	}
	if sd.shown[i] {
		sd.missing--
		sd.book.add(i, 0, 1) // a copy since it was shown
		return
	}
	sd.book.add(i, 1, 1)
}

// peerSeedLocked reports whether the peer has announced every piece: it
// wants nothing from this node.
func (c *swarmConn) peerSeedLocked() bool { return c.peerHas != nil && c.peerMissing == 0 }

// topUpLocked reveals pieces until the peer is missing revealAhead of them.
func (c *swarmConn) topUpLocked() {
	sd := c.seed
	if sd == nil || !sd.announced || c.closed {
		return
	}
	for sd.missing < revealAhead {
		i := sd.book.pick(c, c.peerHas, sd.shown, sd.start)
		if i < 0 {
			return
		}
		sd.shown[i] = true
		sd.missing++
		sd.pending = append(sd.pending, i)
	}
}

// topUp reveals what the peer may be shown now, and writes it.
func (c *swarmConn) topUp() {
	c.mu.Lock()
	c.topUpLocked()
	flush := c.seed != nil && len(c.seed.pending) > 0
	c.mu.Unlock()
	if flush {
		c.flush()
	}
}

// unseedLocked returns the peer's pieces to the book: they leave with it.
func (c *swarmConn) unseedLocked() {
	if c.seed == nil {
		return
	}
	c.seed.book.forget(c)
	for i, has := range c.peerHas {
		var had int32
		if has {
			had = -1
		}
		if has || c.seed.shown[i] {
			c.seed.book.add(i, -1, had)
		}
	}
}
