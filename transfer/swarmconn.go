package transfer

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
)

// swarmConn is one connection of the Swarm's anacrolix client, seen on the
// wire: the Swarm's own listener and dialer wrap every connection in one,
// so that herd can super-seed (superseed.go) and ration its upload between
// peers (slots.go), neither of which anacrolix does. Read and Write run on
// anacrolix's reader and writer goroutines. Messages herd adds (Have,
// Choke, Unchoke) go out at a message boundary of the outgoing stream:
// with anacrolix's next Write, or from a short goroutine of their own.
type swarmConn struct {
	net.Conn
	s     *Swarm
	slots *uploadSlots // nil: anacrolix chokes and unchokes as it likes

	wmu sync.Mutex // serialises writes to Conn; guards out
	out wireCursor

	in wireCursor // the reader goroutine's own

	mu          sync.Mutex // guards what follows
	decided     bool       // this node's handshake went out: seed is final
	seed        *seeding   // nil: not super-seeding
	early       []byte     // the peer's announcements read before decided
	peerHas     []bool     // the pieces the peer announced; nil: object not known
	peerMissing int        // false entries in peerHas
	interested  bool       // the peer's, as it last declared
	served      bool       // anacrolix would serve the peer: it wrote Unchoke last
	choked      bool       // the peer's state as the slots want it
	toldChoked  bool       // the peer's state as it was last told
	closed      bool

	// Download yielding (yield.go).
	rxBytes         atomic.Int64 // piece bytes read from the peer
	peerChoking     bool         // the peer's choke, as it last said
	localInterested bool         // anacrolix's interest, as it last wrote it
	yielded         bool         // the peer was told this node is not interested
	tellInterest    int8         // to write: 1 Interested, -1 NotInterested
}

func newSwarmConn(c net.Conn, s *Swarm) *swarmConn {
	tuneSocket(c, s.cc)
	// A connection starts choked on both sides (BEP 3).
	sc := &swarmConn{Conn: c, s: s, slots: s.slots, choked: true, toldChoked: true, peerChoking: true}
	s.yield.add(sc)
	return sc
}

// Write passes anacrolix's outgoing bytes on: its announcement rewritten
// when super-seeding, its chokes replaced by the slots', herd's pending
// messages added at the end when the stream is between messages.
func (c *swarmConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.out.broken {
		return c.Conn.Write(p)
	}
	sp := splice{in: p}
	var pieceBytes int64
	c.out.feed(p, wireEvents{
		emit:      sp.emit,
		handshake: c.decide,
		collect:   c.collectOut,
		message:   c.rewriteOut,
		header: func(id byte, length int) {
			pieceBytes += btPieceData(id, length)
			if id == btMsgInterested || id == btMsgUninterested {
				// anacrolix speaks for itself: whatever yielding told
				// the peer is superseded.
				c.mu.Lock()
				c.localInterested = id == btMsgInterested
				c.yielded, c.tellInterest = false, 0
				c.mu.Unlock()
			}
		},
	})
	var extra []byte
	if c.out.atBoundary() {
		extra = c.appendPending(nil)
	}
	bufs := net.Buffers(sp.result(extra))
	if _, err := bufs.WriteTo(c.Conn); err != nil {
		return 0, err
	}
	if pieceBytes > 0 && c.slots != nil {
		c.slots.sent(c, pieceBytes)
	}
	return len(p), nil
}

func (c *swarmConn) collectOut(id byte) bool {
	switch id {
	case btMsgHaveAll, btMsgBitfield:
		return true
	case btMsgChoke, btMsgUnchoke:
		return c.slots != nil
	}
	return false
}

// rewriteOut takes the outgoing messages collectOut asked for.
func (c *swarmConn) rewriteOut(m []byte) []byte {
	switch m[4] {
	case btMsgChoke, btMsgUnchoke:
		c.wantChanged(func() { c.served = m[4] == btMsgUnchoke })
		return nil // the slots choke and unchoke
	}
	return c.rewriteAnnouncement(m)
}

// Read passes the peer's bytes on, noting its interest and the pieces it
// reports having.
func (c *swarmConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.in.broken {
		c.in.feed(p[:n], wireEvents{collect: collectIn, message: c.readIn, header: c.readHeader})
	}
	return n, err
}

// readHeader counts the piece bytes the peer sends and notes its chokes
// (download yielding, yield.go).
func (c *swarmConn) readHeader(id byte, length int) {
	if n := btPieceData(id, length); n > 0 {
		c.rxBytes.Add(n)
	}
	if id == btMsgChoke || id == btMsgUnchoke {
		c.mu.Lock()
		c.peerChoking = id == btMsgChoke
		c.mu.Unlock()
	}
}

func collectIn(id byte) bool {
	switch id {
	case btMsgHave, btMsgBitfield, btMsgHaveAll, btMsgHaveNone, btMsgInterested, btMsgUninterested:
		return true
	}
	return false
}

func (c *swarmConn) readIn(m []byte) []byte {
	switch m[4] {
	case btMsgInterested, btMsgUninterested:
		if c.slots != nil {
			c.wantChanged(func() { c.interested = m[4] == btMsgInterested })
		}
	default:
		c.peerAnnounced(m)
	}
	return nil // Read passes the bytes on itself
}

// wantChanged records (in set, under mu) the peer's interest or whether
// anacrolix would serve it, and tells the slots whether both hold. A peer
// with every piece never wants a slot, whatever it declares: anacrolix
// does not always tell a peer it lost interest once it is complete, and
// such peers held slots of later pushes (1 GB to 10 hosts after a 200 MB
// push: 249 s instead of 116–138 s).
func (c *swarmConn) wantChanged(set func()) {
	c.mu.Lock()
	set()
	want := c.served && c.interested && !c.peerSeedLocked()
	c.mu.Unlock()
	c.slots.want(c, want)
}

// Close gives up the connection's slot and returns the peer's pieces to
// the super-seeding book.
func (c *swarmConn) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.unseedLocked()
	}
	c.closed = true
	c.mu.Unlock()
	c.s.yield.remove(c)
	if c.slots != nil {
		c.slots.drop(c)
	}
	return c.Conn.Close()
}

// setChoked records what the slots want the peer told.
func (c *swarmConn) setChoked(choked bool) {
	c.mu.Lock()
	c.choked = choked
	tell := c.choked != c.toldChoked && !c.closed
	c.mu.Unlock()
	if tell {
		go c.flush()
	}
}

// appendPending appends herd's messages not yet written. The outgoing
// stream is between messages and wmu is held.
func (c *swarmConn) appendPending(b []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tellInterest != 0 {
		id := byte(btMsgInterested)
		if c.tellInterest < 0 {
			id = btMsgUninterested
		}
		b = append(b, 0, 0, 0, 1, id)
		c.tellInterest = 0
	}
	if c.choked != c.toldChoked {
		id := byte(btMsgUnchoke)
		if c.choked {
			id = btMsgChoke
		}
		b = append(b, 0, 0, 0, 1, id)
		c.toldChoked = c.choked
	}
	if c.seed != nil {
		for _, i := range c.seed.pending {
			b = binary.BigEndian.AppendUint32(b, 5)
			b = append(b, btMsgHave)
			b = binary.BigEndian.AppendUint32(b, uint32(i))
		}
		c.seed.pending = c.seed.pending[:0]
	}
	return b
}

// flush writes pending messages now, unless anacrolix is in the middle of
// a message (its next Write then carries them). An error is left for
// anacrolix's next use of the connection to find.
func (c *swarmConn) flush() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.out.atBoundary() {
		return
	}
	if b := c.appendPending(nil); len(b) > 0 {
		c.Conn.Write(b)
	}
}

// swarmListener wraps accepted connections in swarmConns.
type swarmListener struct {
	net.Listener
	s *Swarm
}

func (l swarmListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newSwarmConn(c, l.s), nil
}
