package state

import (
	"bytes"
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// Request dedupe limits.
const (
	// RequestWindow is how many raft indexes a request record is kept:
	// RecordRequest at index N drops records older than N-RequestWindow. A
	// client retry arrives within seconds, far inside the window, and the
	// bound is on log positions rather than wall time so every server prunes
	// the same records.
	RequestWindow = 100_000

	// MaxRequestIDSize bounds a request id.
	MaxRequestIDSize = 256

	// MaxRequestResultSize bounds a recorded result; the FSM records results
	// without KV values, which stay far below it.
	MaxRequestResultSize = 1 << 20
)

// RequestRecord remembers the outcome of a request id so that a retried
// write applies once and its retry gets the first outcome. Records returned
// by the store are shared and must not be modified.
type RequestRecord struct {
	ID     string `json:"id"`
	Index  uint64 `json:"index"`  // raft index at which the request applied
	Result []byte `json:"result"` // encoded outcome, opaque to the store
}

// ValidateRequestID checks a request id: 1..MaxRequestIDSize bytes of
// printable ASCII without spaces (0x21-0x7E). UUIDs and similar tokens fit;
// the restriction keeps ids byte-exact through the JSON snapshot encoding,
// which would rewrite invalid UTF-8.
func ValidateRequestID(id string) error {
	if id == "" {
		return invalid("request id", "empty")
	}
	if len(id) > MaxRequestIDSize {
		return invalid("request id", "%d bytes long; the limit is %d", len(id), MaxRequestIDSize)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return invalid("request id", "byte %#02x at %d is not printable ASCII", c, i)
		}
	}
	return nil
}

// RequestSeen returns the record of request id, if it is still in the
// window.
func (s *Store) RequestSeen(id string) (*RequestRecord, bool) {
	if ValidateRequestID(id) != nil {
		return nil, false
	}
	txn := s.read(nil)
	defer txn.Abort()
	raw, err := txn.First(tableRequests, indexID, id)
	if err != nil || raw == nil {
		return nil, false
	}
	return raw.(*RequestRecord), true
}

// RecordRequest stores rec with Index set to idx (rec.Index is ignored) and,
// in the same transaction, drops every record older than idx-RequestWindow.
// Recording an id twice is an error: the caller checks RequestSeen first.
func (s *Store) RecordRequest(idx uint64, rec RequestRecord) error {
	if err := ValidateRequestID(rec.ID); err != nil {
		return err
	}
	if len(rec.Result) > MaxRequestResultSize {
		return invalid("request result", "%d bytes long; the limit is %d", len(rec.Result), MaxRequestResultSize)
	}
	return s.write(idx, func(txn *memdb.Txn) (bool, error) {
		raw, err := txn.First(tableRequests, indexID, rec.ID)
		if err != nil {
			return false, fmt.Errorf("state: request lookup %q: %w", rec.ID, err)
		}
		if raw != nil {
			return false, fmt.Errorf("state: request %q already recorded at index %d", rec.ID, raw.(*RequestRecord).Index)
		}
		if err := pruneRequestsTxn(txn, idx); err != nil {
			return false, err
		}
		r := &RequestRecord{ID: rec.ID, Index: idx, Result: bytes.Clone(rec.Result)}
		if err := txn.Insert(tableRequests, r); err != nil {
			return false, fmt.Errorf("state: record request %q: %w", rec.ID, err)
		}
		if err := bumpIndexTxn(txn, tableRequests, idx); err != nil {
			return false, err
		}
		return true, nil
	})
}

// pruneRequestsTxn deletes records with Index < idx-RequestWindow. It walks
// the index index from the oldest record and stops at the first one inside
// the window, so its cost is the number of records dropped.
func pruneRequestsTxn(txn *memdb.Txn, idx uint64) error {
	if idx <= RequestWindow {
		return nil
	}
	cutoff := idx - RequestWindow
	it, err := txn.Get(tableRequests, indexIndex)
	if err != nil {
		return fmt.Errorf("state: scan requests: %w", err)
	}
	var old []*RequestRecord
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*RequestRecord)
		if r.Index >= cutoff {
			break
		}
		old = append(old, r)
	}
	// Delete after the walk: memdb iterators must not see their own
	// transaction's deletes.
	for _, r := range old {
		if err := txn.Delete(tableRequests, r); err != nil {
			return fmt.Errorf("state: prune request %q: %w", r.ID, err)
		}
	}
	return nil
}
