// Package state is the control group's replicated state: a go-memdb store
// that the raft FSM writes and every read path (blocking queries, the KV API,
// replication) reads. It is pure: no raft, no clock, no network; the only I/O
// is the snapshot stream of Persist and Restore.
//
// Rules every method follows:
//   - a write is one memdb transaction that also sets the written tables'
//     entries in the index table to the raft index of the write;
//   - a read takes an optional memdb.WatchSet, adds the channels that fire
//     when its answer may change (plus AbandonCh), and returns the table index
//     so a blocking query knows when to re-run;
//   - objects handed out are shared with the store and never mutated by it
//     (writes insert fresh copies); callers must not mutate them either.
package state

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-memdb"
)

// Store is the state store. It is safe for concurrent use; writes are
// serialized (raft applies them from one goroutine anyway).
type Store struct {
	// writeMu serializes writes with each other and with Restore's swap,
	// so no write lands in a database that Restore is about to discard.
	writeMu sync.Mutex

	// gen is the current database and its abandon channel. Reads load it
	// without locking; Restore replaces it as a whole.
	gen atomic.Pointer[generation]
}

// generation pairs a memdb with the channel closed when it is replaced.
// Watch channels of a replaced memdb never fire again, which is why every
// read also adds abandonCh to its watch set.
type generation struct {
	db        *memdb.MemDB
	abandonCh chan struct{}
}

// NewStore returns an empty store.
func NewStore() (*Store, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("state: create memdb: %w", err)
	}
	s := &Store{}
	s.gen.Store(&generation{db: db, abandonCh: make(chan struct{})})
	return s, nil
}

// AbandonCh returns a channel that is closed when Restore replaces the whole
// state. A blocking query waiting on it must re-run against the new state.
// Reads already add it to their watch set.
func (s *Store) AbandonCh() <-chan struct{} {
	return s.gen.Load().abandonCh
}

// LatestIndex returns the highest raft index written to any table, 0 for an
// empty store.
func (s *Store) LatestIndex() uint64 {
	txn := s.gen.Load().db.Txn(false)
	defer txn.Abort()
	return latestIndexTxn(txn)
}

// Snapshot is a point-in-time, read-only copy of the state. Taking one is
// cheap (memdb is immutable underneath), so the FSM takes it on the apply
// goroutine and persists it while applies continue.
type Snapshot struct {
	db *memdb.MemDB
}

// Snapshot returns a point-in-time copy of the state.
func (s *Store) Snapshot() *Snapshot {
	return &Snapshot{db: s.gen.Load().db.Snapshot()}
}

// LatestIndex returns the highest raft index written to any table as of the
// snapshot.
func (sn *Snapshot) LatestIndex() uint64 {
	txn := sn.db.Txn(false)
	defer txn.Abort()
	return latestIndexTxn(txn)
}

// read opens a read transaction on the current database and adds its
// abandon channel to ws (nil ws is allowed).
func (s *Store) read(ws memdb.WatchSet) *memdb.Txn {
	g := s.gen.Load()
	ws.Add(g.abandonCh)
	return g.db.Txn(false)
}

// write runs fn in one write transaction of the current database and commits
// if fn succeeds. fn returns whether it changed anything; when it did not,
// the transaction is aborted so that watchers do not wake for nothing.
func (s *Store) write(idx uint64, fn func(txn *memdb.Txn) (changed bool, err error)) error {
	if idx == 0 {
		return errors.New("state: raft index 0 is not a valid write index")
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	txn := s.gen.Load().db.Txn(true)
	defer txn.Abort()
	changed, err := fn(txn)
	if err != nil {
		return err
	}
	if changed {
		txn.Commit()
	}
	return nil
}

// tableIndexTxn returns the raft index of the last write to table.
func tableIndexTxn(txn *memdb.Txn, table string) uint64 {
	raw, err := txn.First(tableIndex, indexID, table)
	if err != nil || raw == nil {
		// An error here means the schema lacks the index table, which
		// NewStore would have refused; treat it like "never written".
		return 0
	}
	return raw.(*indexEntry).Value
}

// bumpIndexTxn records idx as the last write to table. Raft indexes only
// grow, but a replayed lower index must not move a blocking query's
// reference point backwards, so the larger value wins.
func bumpIndexTxn(txn *memdb.Txn, table string, idx uint64) error {
	if cur := tableIndexTxn(txn, table); cur >= idx {
		return nil
	}
	if err := txn.Insert(tableIndex, &indexEntry{Table: table, Value: idx}); err != nil {
		return fmt.Errorf("state: update index of table %s: %w", table, err)
	}
	return nil
}

// latestIndexTxn returns the highest table index.
func latestIndexTxn(txn *memdb.Txn) uint64 {
	it, err := txn.Get(tableIndex, indexID)
	if err != nil {
		return 0
	}
	var max uint64
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if v := raw.(*indexEntry).Value; v > max {
			max = v
		}
	}
	return max
}
