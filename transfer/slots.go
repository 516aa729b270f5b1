package transfer

import (
	"slices"
	"sync"
	"time"
)

// Upload slots. anacrolix unchokes every interested peer, so a node's
// upload link is shared by all of them at once: with 20 peers each gets a
// twentieth of it, a 4 MiB piece takes ~7 s to reach any one of them on a
// 100 Mbit link, and nobody can pass a piece on before it is whole. The
// swarm then fills slowly (the first 5 s of a 200 MB push to 20 hosts ran
// at the origin's rate alone) and many requests race, so that chunks
// arrive twice (3.4 copies of the file).
//
// A node therefore unchokes only a few peers at a time (classic BitTorrent
// has four upload slots), first come first served: a peer that declares
// interest waits for a slot, holds it until it has been sent slotBytes or
// has asked for nothing for slotIdle, then queues again. This is done on
// the wire, like super-seeding: each swarmConn drops the Choke and Unchoke
// messages anacrolix writes (anacrolix serves whatever an unchoked peer
// asks) and writes the slots' own.

const (
	// DefaultUploadSlots is how many peers a node uploads to at once.
	// Measured on 20 hosts with 100 Mbit links, 200 MB: 4 slots 28.3 s,
	// 6 slots 27.2 s, 8 slots 27.5 s; unlimited (anacrolix's way) 31.5 s.
	DefaultUploadSlots = 6
	// slotBytes is what a peer is sent before its slot passes on: one
	// piece of the smallest length herd makes. A slot measured in time
	// instead splits pieces between holders early in a push, when whole
	// pieces are what lets peers pass them on: 1 / 1.5 / 2 s slots took
	// 27.1 / 27.0 / 27.7 s where slots of 4 MiB took 25.2-27.0 s (median
	// 25.5 s) in the same hour.
	slotBytes = pieceLenSmall
	// slotIdle is how long a peer may hold a slot without being sent
	// anything. Since swarm sockets hold little unsent data
	// (swarmNotSentLowat), "sent" follows the wire: a slot passes to a
	// waiting peer when its holder asks for nothing, and also when its
	// flow carries less than swarmNotSentLowat in slotIdle. Measured, 200 MB to 20
	// hosts, rounds alternating in the same hour: 500 ms 25.8 s on average
	// (8 runs); 350 / 250 / 200 ms 24.5 / 24.6 / 24.4 s (3, 8 and 3 runs);
	// 150 / 100 ms 25.1 / 25.4 s (3 runs each).
	slotIdle = 250 * time.Millisecond
)

// uploadSlots hands a Swarm's upload slots to its connections.
type uploadSlots struct {
	max  int
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	held    map[*swarmConn]*slotHold
	waiting []*swarmConn // interested, unchoked by anacrolix, in arrival order
}

type slotHold struct {
	sent int64
	last time.Time // granted or last sent to
}

// newUploadSlots starts the slots' idle check; close stops it.
func newUploadSlots(max int) *uploadSlots {
	u := &uploadSlots{max: max, stop: make(chan struct{}), done: make(chan struct{}), held: map[*swarmConn]*slotHold{}}
	go u.run()
	return u
}

func (u *uploadSlots) close() {
	close(u.stop)
	<-u.done
}

func (u *uploadSlots) run() {
	defer close(u.done)
	tick := time.NewTicker(slotIdle / 5)
	defer tick.Stop()
	for {
		select {
		case <-u.stop:
			return
		case now := <-tick.C:
			u.mu.Lock()
			if len(u.waiting) > 0 { // else an idle holder would be handed its slot back
				for c, h := range u.held {
					if now.Sub(h.last) >= slotIdle {
						u.releaseLocked(c)
					}
				}
				u.grantLocked()
			}
			u.mu.Unlock()
		}
	}
}

// want says whether c's peer may be served now: it is interested and
// anacrolix would serve it. A peer that stops wanting loses its slot or
// its place in the queue.
func (u *uploadSlots) want(c *swarmConn, on bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	_, holding := u.held[c]
	queued := u.queuedLocked(c)
	switch {
	case on && !holding && queued < 0:
		u.waiting = append(u.waiting, c)
	case !on && holding:
		delete(u.held, c)
		c.setChoked(true)
	case !on && queued >= 0:
		u.waiting = slices.Delete(u.waiting, queued, queued+1)
	}
	u.grantLocked()
}

// sent counts piece bytes written to c's peer.
func (u *uploadSlots) sent(c *swarmConn, n int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	h, ok := u.held[c]
	if !ok {
		return // requests it made while it held a slot, still served
	}
	h.sent += n
	h.last = time.Now()
	if h.sent >= slotBytes && len(u.waiting) > 0 {
		u.releaseLocked(c)
		u.grantLocked()
	}
}

// drop forgets a closed connection.
func (u *uploadSlots) drop(c *swarmConn) { u.want(c, false) }

// releaseLocked chokes a holder and queues it again: it still wants.
func (u *uploadSlots) releaseLocked(c *swarmConn) {
	delete(u.held, c)
	c.setChoked(true)
	u.waiting = append(u.waiting, c)
}

func (u *uploadSlots) grantLocked() {
	for len(u.held) < u.max && len(u.waiting) > 0 {
		c := u.waiting[0]
		u.waiting = u.waiting[1:]
		u.held[c] = &slotHold{last: time.Now()}
		c.setChoked(false)
	}
}

func (u *uploadSlots) queuedLocked(c *swarmConn) int { return slices.Index(u.waiting, c) }
