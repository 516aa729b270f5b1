package state

import (
	"bytes"
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// ScopeGlobal is the scope of keys shared by every IDC. Any other scope is
// an IDC name and holds that IDC's own keys.
const ScopeGlobal = "global"

// Limits enforced by ValidateKey, ValidateValue and ValidateScope.
const (
	MaxKeySize   = 512       // bytes
	MaxValueSize = 512 << 10 // bytes (512 KiB)
	MaxScopeSize = 64        // bytes, the same limit mesh puts on IDC names
)

// KVEntry is one key in one scope. Entries returned by the store are shared
// and must not be modified.
type KVEntry struct {
	Key         string `json:"key"`
	Scope       string `json:"scope"` // ScopeGlobal or an IDC name
	Value       []byte `json:"value"`
	Version     uint64 `json:"version"`      // 1 on create, +1 on every update
	CreateIndex uint64 `json:"create_index"` // raft index of creation (in the writing IDC's log)
	ModifyIndex uint64 `json:"modify_index"` // raft index of the last update (same log)
}

// ValidationError reports input the store refuses. The FSM turns it into a
// bad_request result; its text names the offending field and the rule.
type ValidationError struct {
	Field   string // "key", "value", "scope", "prefix", "entry", "request id", ...
	Problem string
}

func (e *ValidationError) Error() string { return "invalid " + e.Field + ": " + e.Problem }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// CASConflictError reports a check-and-set whose expected version did not
// match. Have is 0 when the key does not exist.
type CASConflictError struct {
	Scope, Key string
	Want, Have uint64
}

func (e *CASConflictError) Error() string {
	switch {
	case e.Want == 0:
		return fmt.Sprintf("cas conflict on %s/%s: want the key absent, it exists at version %d", e.Scope, e.Key, e.Have)
	case e.Have == 0:
		return fmt.Sprintf("cas conflict on %s/%s: want version %d, the key does not exist", e.Scope, e.Key, e.Want)
	default:
		return fmt.Sprintf("cas conflict on %s/%s: want version %d, have %d", e.Scope, e.Key, e.Want, e.Have)
	}
}

// keyChar reports whether c may appear inside a key segment (and a scope).
func keyChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// ValidateKey checks a key: 1..MaxKeySize bytes of segments separated by
// '/', each segment made of [A-Za-z0-9._-] and neither empty, "." nor "..",
// with no leading or trailing '/'. The rules keep keys usable as path
// fragments in URLs and on disk.
func ValidateKey(k string) error {
	switch {
	case k == "":
		return invalid("key", "empty")
	case len(k) > MaxKeySize:
		return invalid("key", "%d bytes long; the limit is %d", len(k), MaxKeySize)
	case k[0] == '/':
		return invalid("key", "%q starts with '/'", k)
	case k[len(k)-1] == '/':
		return invalid("key", "%q ends with '/'", k)
	}
	start := 0
	for i := 0; i <= len(k); i++ {
		if i < len(k) && k[i] != '/' {
			if !keyChar(k[i]) {
				return invalid("key", "%q: character %q at byte %d is not allowed (letters, digits, '.', '_', '-' and '/' between segments)", k, k[i], i)
			}
			continue
		}
		switch seg := k[start:i]; seg {
		case "":
			return invalid("key", "%q has an empty segment at byte %d", k, start)
		case ".", "..":
			return invalid("key", "%q has a %q segment at byte %d", k, seg, start)
		}
		start = i + 1
	}
	return nil
}

// ValidateValue checks a value: at most MaxValueSize bytes, any content.
func ValidateValue(v []byte) error {
	if len(v) > MaxValueSize {
		return invalid("value", "%d bytes long; the limit is %d (512 KiB)", len(v), MaxValueSize)
	}
	return nil
}

// ValidateScope checks a scope: ScopeGlobal or an IDC name, 1..MaxScopeSize
// bytes of [A-Za-z0-9._-] (the rule mesh applies to IDC names).
func ValidateScope(s string) error {
	if s == "" {
		return invalid("scope", "empty (use %q or an IDC name)", ScopeGlobal)
	}
	if len(s) > MaxScopeSize {
		return invalid("scope", "%d bytes long; the limit is %d", len(s), MaxScopeSize)
	}
	for i := 0; i < len(s); i++ {
		if !keyChar(s[i]) {
			return invalid("scope", "%q: character %q at byte %d is not allowed (letters, digits, '.', '_', '-')", s, s[i], i)
		}
	}
	return nil
}

// validatePrefix checks a KVList prefix: any leading part of a valid key,
// including "" and a trailing '/'.
func validatePrefix(p string) error {
	if len(p) > MaxKeySize {
		return invalid("prefix", "%d bytes long; the limit is %d", len(p), MaxKeySize)
	}
	for i := 0; i < len(p); i++ {
		if p[i] != '/' && !keyChar(p[i]) {
			return invalid("prefix", "%q: character %q at byte %d can never match a key", p, p[i], i)
		}
	}
	return nil
}

func validateScopeKey(scope, key string) error {
	if err := ValidateScope(scope); err != nil {
		return err
	}
	return ValidateKey(key)
}

// checkCAS compares the version a caller expects (nil = no condition, 0 =
// absent) with the current entry (nil = absent).
func checkCAS(scope, key string, cas *uint64, cur *KVEntry) error {
	if cas == nil {
		return nil
	}
	var have uint64
	if cur != nil {
		have = cur.Version
	}
	if *cas != have {
		return &CASConflictError{Scope: scope, Key: key, Want: *cas, Have: have}
	}
	return nil
}

func kvGetTxn(txn *memdb.Txn, scope, key string) (*KVEntry, error) {
	raw, err := txn.First(tableKV, indexID, scope, key)
	if err != nil {
		return nil, fmt.Errorf("state: kv lookup %s/%s: %w", scope, key, err)
	}
	if raw == nil {
		return nil, nil
	}
	return raw.(*KVEntry), nil
}

// KVGet returns the entry for key in scope, or nil if absent, with the kv
// table index. ws (may be nil) gains a channel that fires when the key is
// created, changed or deleted. For an absent key the channel sits on the
// nearest node of the radix tree and may also fire for neighbouring writes;
// blocking queries re-check the index, so an early wake only costs a re-run.
func (s *Store) KVGet(ws memdb.WatchSet, scope, key string) (uint64, *KVEntry, error) {
	if err := validateScopeKey(scope, key); err != nil {
		return 0, nil, err
	}
	txn := s.read(ws)
	defer txn.Abort()
	watch, raw, err := txn.FirstWatch(tableKV, indexID, scope, key)
	if err != nil {
		return 0, nil, fmt.Errorf("state: kv lookup %s/%s: %w", scope, key, err)
	}
	ws.Add(watch)
	idx := tableIndexTxn(txn, tableKV)
	if raw == nil {
		return idx, nil, nil
	}
	return idx, raw.(*KVEntry), nil
}

// KVList returns the entries of scope whose key starts with prefix ("" for
// all), sorted by key, with the kv table index. ws (may be nil) gains a
// channel that fires when any key under the prefix changes.
func (s *Store) KVList(ws memdb.WatchSet, scope, prefix string) (uint64, []*KVEntry, error) {
	if err := ValidateScope(scope); err != nil {
		return 0, nil, err
	}
	if err := validatePrefix(prefix); err != nil {
		return 0, nil, err
	}
	txn := s.read(ws)
	defer txn.Abort()
	entries, watch, err := kvListTxn(txn, scope, prefix)
	if err != nil {
		return 0, nil, err
	}
	ws.Add(watch)
	return tableIndexTxn(txn, tableKV), entries, nil
}

// kvListTxn walks the id index under (scope, prefix). The radix tree yields
// keys in byte order, and since keys never contain NUL the terminator the
// indexer appends does not disturb it, so the result is sorted by key.
func kvListTxn(txn *memdb.Txn, scope, prefix string) ([]*KVEntry, <-chan struct{}, error) {
	it, err := txn.Get(tableKV, indexID+"_prefix", scope, prefix)
	if err != nil {
		return nil, nil, fmt.Errorf("state: kv list %s/%s: %w", scope, prefix, err)
	}
	var out []*KVEntry
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*KVEntry))
	}
	return out, it.WatchCh(), nil
}

// KVSet writes value to key in scope at raft index idx and returns the new
// entry. cas: nil writes unconditionally, 0 only creates (the key must not
// exist), N only updates version N. A mismatch returns *CASConflictError.
func (s *Store) KVSet(idx uint64, scope, key string, value []byte, cas *uint64) (*KVEntry, error) {
	var out *KVEntry
	err := s.KVWrite(idx, func(w *KVWriter) error {
		var err error
		out, err = w.Set(scope, key, value, cas)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// KVDelete removes key from scope at raft index idx. Deleting an absent key
// without cas succeeds and changes nothing. cas follows KVSet: 0 requires
// the key to be absent (a no-op that fails if it exists), N requires
// version N.
func (s *Store) KVDelete(idx uint64, scope, key string, cas *uint64) error {
	return s.KVWrite(idx, func(w *KVWriter) error { return w.Delete(scope, key, cas) })
}

// KVWriter is one write transaction over the kv table at one raft index.
// Commands built on the KV (see consensus.RegisterCommand) read and write
// several keys through it; either every change lands or, when the function
// given to KVWrite fails, none does. Reads see the transaction's own writes.
type KVWriter struct {
	txn     *memdb.Txn
	idx     uint64
	changed bool
}

// KVWrite runs fn in one transaction at raft index idx and commits its
// changes if fn returns nil.
func (s *Store) KVWrite(idx uint64, fn func(w *KVWriter) error) error {
	return s.write(idx, func(txn *memdb.Txn) (bool, error) {
		w := &KVWriter{txn: txn, idx: idx}
		if err := fn(w); err != nil {
			return false, err
		}
		if w.changed {
			if err := bumpIndexTxn(txn, tableKV, idx); err != nil {
				return false, err
			}
		}
		return w.changed, nil
	})
}

// Index returns the raft index the transaction writes at.
func (w *KVWriter) Index() uint64 { return w.idx }

// Get returns the entry for key in scope, nil when absent.
func (w *KVWriter) Get(scope, key string) (*KVEntry, error) {
	if err := validateScopeKey(scope, key); err != nil {
		return nil, err
	}
	return kvGetTxn(w.txn, scope, key)
}

// List returns the entries of scope under prefix, sorted by key.
func (w *KVWriter) List(scope, prefix string) ([]*KVEntry, error) {
	if err := ValidateScope(scope); err != nil {
		return nil, err
	}
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	out, _, err := kvListTxn(w.txn, scope, prefix)
	return out, err
}

// Set writes value to key with KVSet's cas rules and returns the new entry.
func (w *KVWriter) Set(scope, key string, value []byte, cas *uint64) (*KVEntry, error) {
	if err := validateScopeKey(scope, key); err != nil {
		return nil, err
	}
	if err := ValidateValue(value); err != nil {
		return nil, err
	}
	cur, err := kvGetTxn(w.txn, scope, key)
	if err != nil {
		return nil, err
	}
	if err := checkCAS(scope, key, cas, cur); err != nil {
		return nil, err
	}
	// A fresh object: the one readers hold stays as it was.
	e := &KVEntry{
		Key:         key,
		Scope:       scope,
		Value:       bytes.Clone(value),
		Version:     1,
		CreateIndex: w.idx,
		ModifyIndex: w.idx,
	}
	if cur != nil {
		e.Version = cur.Version + 1
		e.CreateIndex = cur.CreateIndex
	}
	if err := w.txn.Insert(tableKV, e); err != nil {
		return nil, fmt.Errorf("state: kv insert %s/%s: %w", scope, key, err)
	}
	w.changed = true
	return e, nil
}

// Delete removes key with KVDelete's cas rules.
func (w *KVWriter) Delete(scope, key string, cas *uint64) error {
	if err := validateScopeKey(scope, key); err != nil {
		return err
	}
	cur, err := kvGetTxn(w.txn, scope, key)
	if err != nil {
		return err
	}
	if err := checkCAS(scope, key, cas, cur); err != nil {
		return err
	}
	if cur == nil {
		return nil
	}
	if err := w.txn.Delete(tableKV, cur); err != nil {
		return fmt.Errorf("state: kv delete %s/%s: %w", scope, key, err)
	}
	w.changed = true
	return nil
}

// KVReplaceScope makes scope hold exactly entries, keeping each entry's
// Version, CreateIndex and ModifyIndex from the source IDC, and records
// sourceIndex as the scope's ReplicatedIndex. Entries must name scope (or
// leave Scope empty) and have distinct, valid keys; the store keeps copies.
// Unchanged keys are not rewritten, so their watchers stay quiet.
func (s *Store) KVReplaceScope(idx uint64, scope string, entries []*KVEntry, sourceIndex uint64) error {
	if err := ValidateScope(scope); err != nil {
		return err
	}
	want := make(map[string]*KVEntry, len(entries))
	for i, e := range entries {
		if e == nil {
			return invalid("entry", "entry %d is nil", i)
		}
		if e.Scope != "" && e.Scope != scope {
			return invalid("entry", "entry %d (%q) is in scope %q, not %q", i, e.Key, e.Scope, scope)
		}
		if err := ValidateKey(e.Key); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		if err := ValidateValue(e.Value); err != nil {
			return fmt.Errorf("entry %d (%q): %w", i, e.Key, err)
		}
		if e.Version == 0 {
			return invalid("entry", "entry %d (%q) has version 0", i, e.Key)
		}
		if _, dup := want[e.Key]; dup {
			return invalid("entry", "key %q appears twice", e.Key)
		}
		c := *e
		c.Scope = scope
		c.Value = bytes.Clone(e.Value)
		want[e.Key] = &c
	}
	return s.write(idx, func(txn *memdb.Txn) (bool, error) {
		existing, _, err := kvListTxn(txn, scope, "")
		if err != nil {
			return false, err
		}
		for _, cur := range existing {
			w, keep := want[cur.Key]
			if !keep {
				if err := txn.Delete(tableKV, cur); err != nil {
					return false, fmt.Errorf("state: kv delete %s/%s: %w", scope, cur.Key, err)
				}
				continue
			}
			if sameEntry(cur, w) {
				delete(want, cur.Key)
			}
		}
		// Insert in entry order, not map order: memdb does not care, but
		// nothing in a write path should depend on map iteration.
		for _, e := range entries {
			w, ok := want[e.Key]
			if !ok {
				continue
			}
			if err := txn.Insert(tableKV, w); err != nil {
				return false, fmt.Errorf("state: kv insert %s/%s: %w", scope, w.Key, err)
			}
		}
		rep := &replicationEntry{Scope: scope, SourceIndex: sourceIndex, ModifyIndex: idx}
		if err := txn.Insert(tableReplication, rep); err != nil {
			return false, fmt.Errorf("state: record replication of %s: %w", scope, err)
		}
		if err := bumpIndexTxn(txn, tableKV, idx); err != nil {
			return false, err
		}
		if err := bumpIndexTxn(txn, tableReplication, idx); err != nil {
			return false, err
		}
		return true, nil
	})
}

func sameEntry(a, b *KVEntry) bool {
	return a.Version == b.Version && a.CreateIndex == b.CreateIndex &&
		a.ModifyIndex == b.ModifyIndex && bytes.Equal(a.Value, b.Value)
}

// ReplicatedIndex returns the source index recorded by the last
// KVReplaceScope of scope, 0 if the scope was never replicated.
func (s *Store) ReplicatedIndex(scope string) uint64 {
	txn := s.read(nil)
	defer txn.Abort()
	raw, err := txn.First(tableReplication, indexID, scope)
	if err != nil || raw == nil {
		return 0
	}
	return raw.(*replicationEntry).SourceIndex
}
