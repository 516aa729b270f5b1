package transfer

import (
	"os"
	"sync"
)

// pieceMirror copies an object's pieces into a Staging as they verify
// (see InstallTo). Piece completions arrive on anacrolix's hashing
// goroutines, which must not wait for a copy: they queue the piece, and
// the mirror's own goroutine copies it from the partial file.
type pieceMirror struct {
	st   *Staging
	src  *os.File
	obj  Object
	wake chan struct{}
	done chan struct{}

	mu      sync.Mutex
	queue   []int
	stopped bool
}

// startMirror mirrors e's verified pieces into st until the returned stop
// is called, which copies what is still queued before it returns.
func startMirror(e *swarmEntry, st *Staging) (stop func()) {
	src, err := os.Open(e.partialPath())
	if err != nil {
		return func() {} // Commit copies everything
	}
	m := &pieceMirror{st: st, src: src, obj: e.obj, wake: make(chan struct{}, 1), done: make(chan struct{})}
	e.mirror.Store(m)
	// Pieces verified before now (a resumed fetch) are never announced.
	completeRuns(e.t, func(first, count int) {
		for i := first; i < first+count; i++ {
			m.add(i)
		}
	})
	go m.run()
	return func() {
		e.mirror.CompareAndSwap(m, nil)
		m.mu.Lock()
		m.stopped = true
		m.mu.Unlock()
		m.signal()
		<-m.done
		src.Close()
	}
}

// add queues verified piece i for copying.
func (m *pieceMirror) add(i int) {
	m.mu.Lock()
	if !m.stopped {
		m.queue = append(m.queue, i)
	}
	m.mu.Unlock()
	m.signal()
}

func (m *pieceMirror) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *pieceMirror) run() {
	defer close(m.done)
	for range m.wake {
		for {
			m.mu.Lock()
			if len(m.queue) == 0 {
				stopped := m.stopped
				m.mu.Unlock()
				if stopped {
					return
				}
				break
			}
			i := m.queue[0]
			m.queue = m.queue[1:]
			m.mu.Unlock()
			off := int64(i) * m.obj.PieceLength
			n := min(m.obj.PieceLength, m.obj.Size-off)
			if n <= 0 {
				continue
			}
			if err := m.st.CopyRange(m.src, off, n); err != nil {
				return // kept by st: Commit reports it
			}
		}
	}
}
