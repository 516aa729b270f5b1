package transfer

import (
	"sync"
	"time"
)

// Download yielding, the receiving side of the upload slots (slots.go).
// Slots pass first come first served, so at any moment some nodes hold
// more senders' slots than their download link can take while others
// wait in the senders' queues: in a 200 MB push to 20 hosts, hosts
// received between 2 and 12 MB/s of their 12. A node whose download link
// is full therefore gives back the slot of its slowest sender: it tells
// that peer it is not interested, which passes the slot on, and tells it
// it is interested again once the link has room. anacrolix keeps its own
// interest; herd only changes what the peer is told, as the slots do with
// chokes.
//
// Measured (20 hosts × 200 MB over 100 Mbit links, 11 paired runs in two
// blocks): 0.7 s faster on average, 9 pairs of 11 faster; 25.8 s on
// average with yielding in both blocks, while the runs without took 26.9 s
// in the first block and 25.9 s in the second.

const (
	yieldTick   = 250 * time.Millisecond
	yieldWindow = 4 // ticks: rates are taken over the last second
	// yieldFull is the share of the highest download rate seen at which
	// the link counts as full; below yieldRoom a yielded peer is told
	// interested again.
	yieldFull = 0.9
	yieldRoom = 0.85
	// yieldSettle: the peak must have held this long before anything is
	// given back. While a download ramps up every rate is the peak.
	yieldSettle = 2 * time.Second
	yieldGap    = 500 * time.Millisecond // between two slots given back
	yieldKeep   = 3                      // senders serving a node before it gives one back
)

// downloadYield watches a Swarm's download rate and gives back slots.
type downloadYield struct {
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	conns  map[*swarmConn]*connRx
	recent rxWindow // bytes received per tick
	peak   float64  // bytes/s
	peakAt time.Time
	last   time.Time // a slot was last given back
}

// connRx is one connection's received piece bytes, per tick.
type connRx struct {
	seen      int64
	recent    rxWindow
	yieldedAt time.Time // when its slot was last given back
}

// rxWindow holds the bytes received in each of the last yieldWindow ticks.
type rxWindow []int64

// push adds one tick's bytes and returns the window's total.
func (w *rxWindow) push(v int64) int64 {
	*w = append(*w, v)
	if len(*w) > yieldWindow {
		*w = (*w)[1:]
	}
	var sum int64
	for _, x := range *w {
		sum += x
	}
	return sum
}

func newDownloadYield() *downloadYield {
	y := &downloadYield{stop: make(chan struct{}), done: make(chan struct{}), conns: map[*swarmConn]*connRx{}}
	go y.run()
	return y
}

func (y *downloadYield) close() {
	if y == nil {
		return
	}
	close(y.stop)
	<-y.done
}

func (y *downloadYield) add(c *swarmConn) {
	if y == nil {
		return
	}
	y.mu.Lock()
	y.conns[c] = &connRx{}
	y.mu.Unlock()
}

func (y *downloadYield) remove(c *swarmConn) {
	if y == nil {
		return
	}
	y.mu.Lock()
	delete(y.conns, c)
	y.mu.Unlock()
}

func (y *downloadYield) run() {
	defer close(y.done)
	tick := time.NewTicker(yieldTick)
	defer tick.Stop()
	for {
		select {
		case <-y.stop:
			return
		case now := <-tick.C:
			if c, yield := y.tick(now); c != nil {
				c.setYielded(yield)
			}
		}
	}
}

// tick takes one sample of every connection and returns the one to give
// back (yield) or to ask again (!yield), if any.
func (y *downloadYield) tick(now time.Time) (*swarmConn, bool) {
	y.mu.Lock()
	defer y.mu.Unlock()
	var total int64
	var slowest, oldest *swarmConn
	var slowestRx int64
	var oldestAt time.Time
	serving := 0 // senders unchoking this node, not yielded
	for c, r := range y.conns {
		got := c.rxBytes.Load()
		d := got - r.seen
		r.seen = got
		total += d
		rx := r.recent.push(d)
		c.mu.Lock()
		yielded, active := c.yielded, !c.peerChoking && c.localInterested
		c.mu.Unlock()
		switch {
		case yielded:
			if oldest == nil || r.yieldedAt.Before(oldestAt) {
				oldest, oldestAt = c, r.yieldedAt
			}
		case active:
			serving++
			if slowest == nil || rx < slowestRx {
				slowest, slowestRx = c, rx
			}
		}
	}
	sum := y.recent.push(total)
	rate := float64(sum) * float64(time.Second) / float64(yieldTick*time.Duration(len(y.recent)))
	if rate > y.peak {
		if rate > y.peak*1.05 {
			y.peakAt = now
		}
		y.peak = rate
	}
	switch {
	case y.peak == 0:
	case rate >= yieldFull*y.peak && serving >= yieldKeep && now.Sub(y.last) >= yieldGap && now.Sub(y.peakAt) >= yieldSettle:
		y.last = now
		y.conns[slowest].yieldedAt = now
		return slowest, true
	case rate < yieldRoom*y.peak && oldest != nil:
		return oldest, false
	}
	return nil, false
}

// setYielded tells the peer this node is not interested (yield) or is
// again, unless anacrolix has since said either itself.
func (c *swarmConn) setYielded(yield bool) {
	c.mu.Lock()
	if c.closed || c.yielded == yield {
		c.mu.Unlock()
		return
	}
	c.yielded = yield
	c.tellInterest = -1
	if !yield {
		c.tellInterest = 1
	}
	c.mu.Unlock()
	go c.flush()
}
