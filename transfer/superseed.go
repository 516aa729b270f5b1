package transfer

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
)

// Super-seeding (after BEP 16). A node that holds a whole object does not
// tell a new peer so: it announces no pieces, then reveals a few at a time
// — those the fewest of its peers have or are being sent — and another
// each time the peer reports having one. Without it every fetcher asks the
// origin for whichever piece it wants next, and the origin, whose upload
// link is what bounds a push (the fluid bound is S/U_seed), sends the same
// pieces several times over (2.6 copies of a 200 MB file pushed to 20
// hosts) while pieces nobody has yet wait.
//
// anacrolix has no super-seeding, so it is done on the wire: every swarm
// connection goes through a seedConn. On a connection whose object this
// node holds whole when the handshake names it, the seedConn rewrites the
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

// BitTorrent wire constants (BEP 3, BEP 6).
const (
	btHandshakeLen = 68
	btMsgHave      = 4
	btMsgBitfield  = 5
	btMsgHaveAll   = 0x0e
	btMsgHaveNone  = 0x0f
	// btMaxInspect bounds a message buffered whole to be read: a bitfield
	// of 2^20 pieces. Longer ones are passed on unread.
	btMaxInspect = 1<<17 + 1
)

var btProtocol = []byte("\x13BitTorrent protocol")

// revealBook is a seeder's count, per piece of one object, of the peers
// connected to it that have the piece or have been shown it and not yet
// got it: the piece's copies in the swarm, as far as this seeder can see.
type revealBook struct {
	mu     sync.Mutex
	copies []int32
}

func newRevealBook(pieces int) *revealBook {
	return &revealBook{copies: make([]int32, pieces)}
}

// pick returns the piece with the fewest copies among those the peer
// neither has nor has been shown, scanning from start so that ties go to
// different pieces for different peers; -1 when there is none. The piece's
// count is raised: it is on its way.
func (b *revealBook) pick(has, shown []bool, start int) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.copies)
	best := -1
	for k := range n {
		i := (start + k) % n
		if has[i] || shown[i] {
			continue
		}
		if best < 0 || b.copies[i] < b.copies[best] {
			best = i
			if b.copies[i] == 0 {
				break
			}
		}
	}
	if best >= 0 {
		b.copies[best]++
	}
	return best
}

func (b *revealBook) add(i int, d int32) {
	b.mu.Lock()
	b.copies[i] += d
	b.mu.Unlock()
}

// wireCursor follows one direction of a BitTorrent connection: the
// handshake, then length-prefixed messages. Messages that its owner wants
// to read are collected whole; the rest pass in pieces.
type wireCursor struct {
	hs     []byte // the handshake, while it is shorter than btHandshakeLen
	hsDone bool
	hdr    [5]byte // length prefix and id of the current message
	nhdr   int
	left   int    // bytes of the current message still to pass unread
	msg    []byte // the current message, collected whole (prefix included)
	need   int    // total length of msg once complete
	broken bool   // not a BitTorrent stream: everything passes unread
}

// wireEvents are a cursor's callbacks. emit receives every byte to pass on,
// in order (nil when nothing is passed on); handshake the whole handshake;
// collect says whether a message with this id is to be read whole, and
// message receives it and returns what to pass on in its place.
type wireEvents struct {
	emit      func([]byte)
	handshake func([]byte)
	collect   func(id byte) bool
	message   func([]byte) []byte
}

func (w *wireCursor) atBoundary() bool {
	return w.hsDone && !w.broken && w.nhdr == 0 && w.left == 0 && w.msg == nil
}

func (w *wireCursor) feed(b []byte, ev wireEvents) {
	emit := func(p []byte) {
		if ev.emit != nil && len(p) > 0 {
			ev.emit(p)
		}
	}
	for len(b) > 0 {
		switch {
		case w.broken:
			emit(b)
			return
		case !w.hsDone:
			take := min(btHandshakeLen-len(w.hs), len(b))
			w.hs = append(w.hs, b[:take]...)
			emit(b[:take])
			b = b[take:]
			if n := min(len(w.hs), len(btProtocol)); !bytes.Equal(w.hs[:n], btProtocol[:n]) {
				w.broken = true // an encrypted or foreign stream
				continue
			}
			if len(w.hs) == btHandshakeLen {
				w.hsDone = true
				if ev.handshake != nil {
					ev.handshake(w.hs)
				}
			}
		case w.left > 0:
			take := min(w.left, len(b))
			emit(b[:take])
			w.left -= take
			b = b[take:]
		case w.msg != nil:
			take := min(w.need-len(w.msg), len(b))
			w.msg = append(w.msg, b[:take]...)
			b = b[take:]
			if len(w.msg) == w.need {
				m := w.msg
				w.msg = nil
				emit(ev.message(m))
			}
		default:
			want := 4
			if w.nhdr >= 4 {
				want = 5
			}
			take := min(want-w.nhdr, len(b))
			copy(w.hdr[w.nhdr:], b[:take])
			w.nhdr += take
			b = b[take:]
			if w.nhdr < want {
				continue
			}
			length := int(binary.BigEndian.Uint32(w.hdr[:4]))
			if length == 0 { // keep-alive
				emit(w.hdr[:4])
				w.nhdr = 0
				continue
			}
			if w.nhdr < 5 {
				continue
			}
			w.nhdr = 0
			if length <= btMaxInspect && ev.collect != nil && ev.collect(w.hdr[4]) {
				w.msg = append(make([]byte, 0, 4+length), w.hdr[:]...)
				w.need = 4 + length
				if len(w.msg) == w.need {
					m := w.msg
					w.msg = nil
					emit(ev.message(m))
				}
				continue
			}
			emit(w.hdr[:])
			w.left = length - 1
		}
	}
}

// connMode is what a seedConn does with its connection.
type connMode int32

const (
	modeUndecided connMode = iota
	modePass               // not a seeding connection: bytes pass untouched
	modeSeed               // super-seeding
)

// seedConn is a swarm connection seen through super-seeding (see the top
// of this file). Read and Write run on anacrolix's reader and writer
// goroutines; Have messages revealed from the reader side are written by a
// short goroutine of their own, at a message boundary of the outgoing
// stream.
type seedConn struct {
	net.Conn
	s *Swarm

	mode atomic.Int32 // connMode

	wmu  sync.Mutex // serialises writes to Conn; guards out and obuf
	out  wireCursor
	obuf []byte

	in wireCursor // the reader goroutine's own

	mu        sync.Mutex // guards what follows
	book      *revealBook
	announced bool // the rewritten announcement went out: Haves may follow
	has       []bool
	shown     []bool
	missing   int   // shown pieces the peer does not have yet
	pending   []int // shown pieces whose Have is not written yet
	start     int
	closed    bool
	early     []byte // the peer's piece messages read before the mode was known
}

func newSeedConn(c net.Conn, s *Swarm) *seedConn {
	return &seedConn{Conn: c, s: s}
}

func (c *seedConn) modeNow() connMode { return connMode(c.mode.Load()) }

// Write passes anacrolix's outgoing bytes on, rewritten on a seeding
// connection.
func (c *seedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.modeNow() == modePass {
		return c.Conn.Write(p)
	}
	c.obuf = c.obuf[:0]
	c.out.feed(p, wireEvents{
		emit:      func(b []byte) { c.obuf = append(c.obuf, b...) },
		handshake: c.decide,
		collect:   func(id byte) bool { return id == btMsgHaveAll || id == btMsgBitfield },
		message:   c.rewriteAnnouncement,
	})
	if c.out.broken {
		c.pass()
	}
	c.obuf = c.appendPending(c.obuf)
	if _, err := c.Conn.Write(c.obuf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Read passes the peer's bytes on and, on a seeding connection, notes the
// pieces the peer reports having.
func (c *seedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.modeNow() != modePass {
		c.in.feed(p[:n], wireEvents{
			collect: func(id byte) bool {
				return id == btMsgHave || id == btMsgBitfield || id == btMsgHaveAll || id == btMsgHaveNone
			},
			message: c.peerAnnounced,
		})
		if c.in.broken {
			c.pass()
		}
	}
	return n, err
}

// Close returns the peer's pieces to the book: they leave with it.
func (c *seedConn) Close() error {
	c.mu.Lock()
	if !c.closed && c.book != nil {
		for i := range c.has {
			if c.has[i] || c.shown[i] {
				c.book.add(i, -1)
			}
		}
	}
	c.closed = true
	c.mu.Unlock()
	return c.Conn.Close()
}

// pass turns the connection into a plain one for good.
func (c *seedConn) pass() { c.mode.Store(int32(modePass)) }

// decide picks the mode from this node's own handshake, which names the
// object: super-seed it if this node held the object whole before this
// process fetched anything of it (an origin, or a holder from an earlier
// push).
func (c *seedConn) decide(hs []byte) {
	var ih [20]byte
	copy(ih[:], hs[28:48])
	e := c.s.entryByInfoHash(ih)
	if e == nil || !e.complete() || e.fetched.Load() {
		c.pass()
		return
	}
	book := e.revealBook()
	if len(book.copies) == 0 {
		c.pass()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(book.copies)
	c.book, c.has, c.shown = book, make([]bool, n), make([]bool, n)
	c.start = rand.IntN(n)
	c.mode.Store(int32(modeSeed))
	if c.early != nil { // the peer announced before this node's handshake went out
		early := c.early
		c.early = nil
		c.noteLocked(early)
	}
}

// rewriteAnnouncement hides that this node has every piece.
func (c *seedConn) rewriteAnnouncement(m []byte) []byte {
	if c.modeNow() != modeSeed {
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
	c.mu.Lock()
	c.announced = true
	c.topUpLocked()
	c.mu.Unlock()
	return out
}

// peerAnnounced takes a Have, Bitfield, HaveAll or HaveNone from the peer.
func (c *seedConn) peerAnnounced(m []byte) []byte {
	c.mu.Lock()
	if c.modeNow() == modeUndecided {
		c.early = append(c.early, m...)
		c.mu.Unlock()
		return nil
	}
	c.noteLocked(m)
	flush := len(c.pending) > 0
	c.mu.Unlock()
	if flush {
		go c.flush()
	}
	return nil
}

// noteLocked records the pieces announced by the peer's messages in b
// (whole messages, prefixes included) and reveals more.
func (c *seedConn) noteLocked(b []byte) {
	if c.book == nil || c.closed {
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
			for i := range c.has {
				c.gotLocked(i)
			}
		case btMsgBitfield:
			for i := range c.has {
				if i/8 < len(m)-5 && m[5+i/8]&(0x80>>(i%8)) != 0 {
					c.gotLocked(i)
				}
			}
		}
	}
	c.topUpLocked()
}

func (c *seedConn) gotLocked(i int) {
	if i < 0 || i >= len(c.has) || c.has[i] {
		return
	}
	c.has[i] = true
	if c.shown[i] {
		c.missing-- // counted in the book when it was shown
		return
	}
	c.book.add(i, 1)
}

// topUpLocked reveals pieces until the peer is missing revealAhead of them.
func (c *seedConn) topUpLocked() {
	if !c.announced || c.closed {
		return
	}
	for c.missing < revealAhead {
		i := c.book.pick(c.has, c.shown, c.start)
		if i < 0 {
			return
		}
		c.shown[i] = true
		c.missing++
		c.pending = append(c.pending, i)
	}
}

// appendPending appends the Have messages not yet written, if the outgoing
// stream is between messages. wmu is held.
func (c *seedConn) appendPending(b []byte) []byte {
	if !c.out.atBoundary() {
		return b
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, i := range c.pending {
		b = binary.BigEndian.AppendUint32(b, 5)
		b = append(b, btMsgHave)
		b = binary.BigEndian.AppendUint32(b, uint32(i))
	}
	c.pending = c.pending[:0]
	return b
}

// flush writes pending Haves now, unless anacrolix is in the middle of a
// message (its next Write then carries them). An error is left for
// anacrolix's next use of the connection to find.
func (c *seedConn) flush() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if b := c.appendPending(nil); len(b) > 0 {
		c.Conn.Write(b)
	}
}

// seedListener wraps accepted connections in seedConns.
type seedListener struct {
	net.Listener
	s *Swarm
}

func (l seedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newSeedConn(c, l.s), nil
}
