package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-memdb"
)

func persistBytes(t testing.TB, s *Store) string {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Persist(&buf); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	return buf.String()
}

// populatedStore returns a store with rows in every table, including edge
// cases of the encoding (nil and empty values, binary values, a max-size
// value, a replicated scope).
func populatedStore(t testing.TB) *Store {
	t.Helper()
	s, err := NewStore()
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.KVSet(1, ScopeGlobal, "cfg/a", []byte("hello"), nil)
	must(err)
	_, err = s.KVSet(2, ScopeGlobal, "cfg/a", []byte("hello again"), nil)
	must(err)
	_, err = s.KVSet(3, "idc1", "nil", nil, nil)
	must(err)
	_, err = s.KVSet(4, "idc1", "empty", []byte{}, nil)
	must(err)
	_, err = s.KVSet(5, "idc1", "bin", []byte{0, 1, 2, 0xff, '<', '&'}, nil)
	must(err)
	_, err = s.KVSet(6, "idc1", "big", bytes.Repeat([]byte{0xab}, MaxValueSize), nil)
	must(err)
	must(s.KVDelete(7, ScopeGlobal, "gone", nil))
	must(s.KVReplaceScope(8, "idc2", []*KVEntry{
		{Key: "r/x", Value: []byte("x"), Version: 4, CreateIndex: 40, ModifyIndex: 44},
	}, 44))
	must(s.RecordRequest(9, RequestRecord{ID: "req-<1>", Result: []byte(`{"index":9}`)}))
	must(s.RecordRequest(10, RequestRecord{ID: "req-2"}))
	return s
}

func TestPersistRestoreRoundTrip(t *testing.T) {
	orig := populatedStore(t)
	data := persistBytes(t, orig)

	restored := newTestStore(t)
	if err := restored.Restore(strings.NewReader(data)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if again := persistBytes(t, restored); again != data {
		t.Fatalf("persist of restored state differs (%d vs %d bytes)", len(again), len(data))
	}
	if restored.LatestIndex() != orig.LatestIndex() || restored.LatestIndex() != 10 {
		t.Fatalf("latest index %d, want %d", restored.LatestIndex(), orig.LatestIndex())
	}
	idx, e, err := restored.KVGet(nil, ScopeGlobal, "cfg/a")
	if err != nil || e == nil || string(e.Value) != "hello again" || e.Version != 2 || e.CreateIndex != 1 || idx != 8 {
		t.Fatalf("restored entry %+v idx %d err %v", e, idx, err)
	}
	if restored.ReplicatedIndex("idc2") != 44 {
		t.Fatal("replication table lost")
	}
	if rec, ok := restored.RequestSeen("req-<1>"); !ok || rec.Index != 9 || string(rec.Result) != `{"index":9}` {
		t.Fatalf("request record lost: %+v", rec)
	}
	// Writes continue from the restored versions.
	e, err = restored.KVSet(11, ScopeGlobal, "cfg/a", []byte("v3"), u64(2))
	if err != nil || e.Version != 3 {
		t.Fatalf("write after restore: %+v, %v", e, err)
	}

	// A snapshot taken before a write keeps the old state.
	snap := restored.Snapshot()
	if _, err := restored.KVSet(12, ScopeGlobal, "later", nil, nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	if snap.LatestIndex() != 11 || buf.String() == persistBytes(t, restored) {
		t.Fatal("snapshot saw a later write")
	}

	// An empty store round-trips too.
	empty := persistBytes(t, newTestStore(t))
	s := populatedStore(t)
	if err := s.Restore(strings.NewReader(empty)); err != nil {
		t.Fatal(err)
	}
	if persistBytes(t, s) != empty || s.LatestIndex() != 0 {
		t.Fatal("restoring an empty snapshot left state behind")
	}
}

func TestRestoreAbandons(t *testing.T) {
	s := populatedStore(t)
	data := persistBytes(t, s)
	abandon := s.AbandonCh()
	ws := memdb.NewWatchSet()
	if _, _, err := s.KVGet(ws, ScopeGlobal, "cfg/a"); err != nil {
		t.Fatal(err)
	}

	// A failed restore abandons nothing.
	if err := s.Restore(strings.NewReader("garbage")); err == nil {
		t.Fatal("garbage restored")
	}
	if fired(ws) {
		t.Fatal("failed restore fired watches")
	}

	if err := s.Restore(strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-abandon:
	default:
		t.Fatal("AbandonCh not closed by Restore")
	}
	if !fired(ws) {
		t.Fatal("a read's watch set did not fire on Restore")
	}
	if s.AbandonCh() == abandon {
		t.Fatal("AbandonCh not replaced")
	}
	// Watches taken after the restore work on the new state.
	ws2 := memdb.NewWatchSet()
	s.KVGet(ws2, ScopeGlobal, "cfg/a")
	if fired(ws2) {
		t.Fatal("fresh watch already fired")
	}
	if _, err := s.KVSet(20, ScopeGlobal, "cfg/a", nil, nil); err != nil {
		t.Fatal(err)
	}
	if !fired(ws2) {
		t.Fatal("watch on restored state did not fire")
	}
}

func TestRestoreCorrupt(t *testing.T) {
	good := []byte(persistBytes(t, populatedStore(t)))
	hdr := len(snapshotMagic) + 2

	mutate := func(fn func(b []byte) []byte) []byte {
		return fn(bytes.Clone(good))
	}
	// reseal recomputes the trailer so that content checks, not the
	// checksum, must catch the problem.
	reseal := func(body []byte) []byte {
		return append(body, sha256Sum(body)...)
	}
	record := func(kind uint8, payload string) []byte {
		var rh [5]byte
		rh[0] = kind
		binary.BigEndian.PutUint32(rh[1:], uint32(len(payload)))
		return append(rh[:], payload...)
	}
	snapshotOf := func(records ...[]byte) []byte {
		b := append([]byte(snapshotMagic), 0, snapshotVersion)
		for _, r := range records {
			b = append(b, r...)
		}
		var end [9]byte
		binary.BigEndian.PutUint64(end[1:], uint64(len(records)))
		return reseal(append(b, end[:]...))
	}
	kv := `{"key":"a","scope":"idc1","value":null,"version":1,"create_index":1,"modify_index":1}`

	cases := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"empty", nil, "truncated (reading header)"},
		{"short header", good[:5], "truncated (reading header)"},
		{"bad magic", mutate(func(b []byte) []byte { b[0] = 'X'; return b }), "bad magic"},
		{"wrong version", mutate(func(b []byte) []byte { b[hdr-1] = 9; return b }), "unsupported snapshot version 9"},
		{"flipped payload byte", mutate(func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b }), ""},
		{"flipped checksum byte", mutate(func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }), "checksum mismatch"},
		{"no checksum", good[:len(good)-32], "truncated (reading checksum)"},
		{"half checksum", good[:len(good)-16], "truncated (reading checksum)"},
		{"cut mid record", good[:hdr+40], "truncated"},
		{"cut before end", good[:len(good)-32-9], "truncated"},
		{"trailing byte", append(bytes.Clone(good), 0), "unexpected data after the checksum"},
		{"huge record length", snapshotOf(append([]byte{recordKV, 0xff, 0xff, 0xff, 0xff}, '{')), "the limit is"},
		{"unknown kind", snapshotOf(record(77, "{}")), "unknown record kind 77"},
		{"bad json", snapshotOf(record(recordKV, "{")), "decode kv row"},
		{"bad key", snapshotOf(record(recordKV, strings.Replace(kv, `"a"`, `"a//b"`, 1))), "invalid key"},
		{"version 0", snapshotOf(record(recordKV, strings.Replace(kv, `"version":1`, `"version":0`, 1))), "version 0"},
		{"duplicate row", snapshotOf(record(recordKV, kv), record(recordKV, kv)), "duplicate kv row"},
		{"unknown table", snapshotOf(record(recordIndex, `{"table":"nope","value":1}`)), `unknown table "nope"`},
		{"bad request id", snapshotOf(record(recordRequest, `{"id":"","index":1}`)), "invalid request id"},
		{"bad replication scope", snapshotOf(record(recordReplication, `{"scope":"a/b"}`)), "invalid scope"},
		{"count mismatch", func() []byte {
			b := snapshotOf(record(recordKV, kv))
			body := b[:len(b)-32]
			body[len(body)-1] = 2
			return reseal(body)
		}(), "end marker counts 2 records, stream held 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := populatedStore(t)
			before := persistBytes(t, s)
			abandon := s.AbandonCh()
			err := s.Restore(bytes.NewReader(c.data))
			if err == nil {
				t.Fatal("corrupt snapshot restored")
			}
			if !strings.HasPrefix(err.Error(), "state: restore snapshot: ") || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %q, want one containing %q", err, c.wantErr)
			}
			if persistBytes(t, s) != before {
				t.Fatal("failed restore changed the state")
			}
			select {
			case <-abandon:
				t.Fatal("failed restore closed AbandonCh")
			default:
			}
		})
	}

	// The hand-built snapshot helper itself produces a valid stream.
	s := newTestStore(t)
	if err := s.Restore(bytes.NewReader(snapshotOf(record(recordKV, kv)))); err != nil {
		t.Fatalf("valid hand-built snapshot: %v", err)
	}
}

// readErrAfter returns the data, then err.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestRestoreReadError(t *testing.T) {
	good := []byte(persistBytes(t, populatedStore(t)))
	boom := errors.New("disk on fire")
	s := newTestStore(t)
	err := s.Restore(&errReader{data: good[:100], err: boom})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v does not wrap the read error", err)
	}
}

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after < len(p) {
		return 0, errors.New("sink full")
	}
	w.after -= len(p)
	return len(p), nil
}

func TestPersistWriteError(t *testing.T) {
	s := populatedStore(t)
	if err := s.Persist(&failWriter{after: 10}); err == nil || !strings.Contains(err.Error(), "sink full") {
		t.Fatalf("Persist to a failing writer: %v", err)
	}
}

// TestStoreConcurrent runs writes, reads, snapshots and restores at once;
// under -race it checks the store's sharing rules.
func TestStoreConcurrent(t *testing.T) {
	s := populatedStore(t)
	data := persistBytes(t, s)
	const n = 200
	var wg sync.WaitGroup
	wg.Add(4)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			if _, err := s.KVSet(uint64(100+i), "idc1", fmt.Sprintf("k/%d", i%7), []byte("v"), nil); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			ws := memdb.NewWatchSet()
			_, list, err := s.KVList(ws, "idc1", "k/")
			if err != nil {
				t.Error(err)
				return
			}
			for _, e := range list {
				_ = len(e.Value) + int(e.Version) // read fields racing with writers
			}
			s.KVGet(ws, ScopeGlobal, "cfg/a")
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < n/10; i++ {
			if err := s.Persist(io.Discard); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < n/10; i++ {
			if err := s.Restore(strings.NewReader(data)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
}
