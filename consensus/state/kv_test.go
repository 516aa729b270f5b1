package state

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-memdb"
)

func newTestStore(t *testing.T) *Store {
	t.Helper()
	s, err := NewStore()
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	return s
}

func u64(v uint64) *uint64 { return &v }

// fired reports whether any channel of ws is closed, without blocking:
// memdb closes watch channels inside Commit, so a write has fired them by
// the time it returns.
func fired(ws memdb.WatchSet) bool {
	for ch := range ws {
		select {
		case <-ch:
			return true
		default:
		}
	}
	return false
}

func TestValidateKey(t *testing.T) {
	cases := []struct {
		key     string
		wantErr string // substring; "" = valid
	}{
		{"a", ""},
		{"app/web/config.yaml", ""},
		{"A-Z_0.9/x", ""},
		{"..a/b..", ""},
		{strings.Repeat("k", MaxKeySize), ""},
		{"", "empty"},
		{strings.Repeat("k", MaxKeySize+1), "513 bytes long; the limit is 512"},
		{"/a", "starts with '/'"},
		{"a/", "ends with '/'"},
		{"/", "starts with '/'"},
		{"a//b", "empty segment at byte 2"},
		{"a/./b", `"." segment`},
		{"a/../b", `".." segment`},
		{".", `"." segment`},
		{"..", `".." segment`},
		{"a b", "character ' ' at byte 1"},
		{"a\x00b", `character '\x00'`},
		{"ключ", "is not allowed"},
		{"a:b", "':'"},
	}
	for _, c := range cases {
		t.Run(c.key, func(t *testing.T) {
			err := ValidateKey(c.key)
			checkValidation(t, err, "key", c.wantErr)
		})
	}
}

func TestValidateValue(t *testing.T) {
	cases := []struct {
		name    string
		size    int
		wantErr string
	}{
		{"empty", 0, ""},
		{"small", 10, ""},
		{"at limit", MaxValueSize, ""},
		{"over limit", MaxValueSize + 1, "524289 bytes long; the limit is 524288"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkValidation(t, ValidateValue(make([]byte, c.size)), "value", c.wantErr)
		})
	}
}

func TestValidateScope(t *testing.T) {
	cases := []struct {
		scope   string
		wantErr string
	}{
		{ScopeGlobal, ""},
		{"idc-1", ""},
		{"eu.west_2", ""},
		{strings.Repeat("s", MaxScopeSize), ""},
		{"", "empty"},
		{strings.Repeat("s", MaxScopeSize+1), "65 bytes long; the limit is 64"},
		{"a/b", "character '/'"},
		{"a b", "character ' '"},
	}
	for _, c := range cases {
		t.Run(c.scope, func(t *testing.T) {
			checkValidation(t, ValidateScope(c.scope), "scope", c.wantErr)
		})
	}
}

func checkValidation(t *testing.T, err error, field, wantErr string) {
	t.Helper()
	if wantErr == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want one containing %q", wantErr)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != field {
		t.Fatalf("error %v is not a ValidationError for %q", err, field)
	}
	if !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("error %q does not contain %q", err, wantErr)
	}
}

func TestKVSetCAS(t *testing.T) {
	s := newTestStore(t)

	// cas 0 creates.
	e, err := s.KVSet(10, "idc1", "a", []byte("v1"), u64(0))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if e.Version != 1 || e.CreateIndex != 10 || e.ModifyIndex != 10 || string(e.Value) != "v1" || e.Scope != "idc1" {
		t.Fatalf("created entry = %+v", e)
	}

	// cas 0 on an existing key conflicts.
	_, err = s.KVSet(11, "idc1", "a", []byte("x"), u64(0))
	wantConflict(t, err, 0, 1)

	// Wrong version conflicts; the right one updates.
	_, err = s.KVSet(12, "idc1", "a", []byte("x"), u64(7))
	wantConflict(t, err, 7, 1)
	e2, err := s.KVSet(13, "idc1", "a", []byte("v2"), u64(1))
	if err != nil {
		t.Fatalf("cas update: %v", err)
	}
	if e2.Version != 2 || e2.CreateIndex != 10 || e2.ModifyIndex != 13 {
		t.Fatalf("updated entry = %+v", e2)
	}

	// Unconditional update.
	e3, err := s.KVSet(14, "idc1", "a", []byte("v3"), nil)
	if err != nil || e3.Version != 3 {
		t.Fatalf("unconditional update: %+v, %v", e3, err)
	}

	// cas N on an absent key: Have 0.
	_, err = s.KVSet(15, "idc1", "missing", []byte("x"), u64(3))
	wantConflict(t, err, 3, 0)

	// The entry handed out first was not touched by later writes.
	if e.Version != 1 || string(e.Value) != "v1" {
		t.Fatalf("first entry mutated: %+v", e)
	}

	idx, got, err := s.KVGet(nil, "idc1", "a")
	if err != nil || got == nil || got.Version != 3 || string(got.Value) != "v3" {
		t.Fatalf("KVGet = %+v, %v", got, err)
	}
	if idx != 14 {
		t.Fatalf("kv index = %d, want 14 (failed writes must not bump it)", idx)
	}

	// The store keeps its own copy of the value.
	buf := []byte("mine")
	if _, err := s.KVSet(16, "idc1", "b", buf, nil); err != nil {
		t.Fatal(err)
	}
	buf[0] = 'X'
	if _, got, _ := s.KVGet(nil, "idc1", "b"); string(got.Value) != "mine" {
		t.Fatalf("stored value aliased the caller's slice: %q", got.Value)
	}
}

func wantConflict(t *testing.T, err error, want, have uint64) {
	t.Helper()
	var ce *CASConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a CASConflictError", err)
	}
	if ce.Want != want || ce.Have != have {
		t.Fatalf("conflict want/have = %d/%d, want %d/%d", ce.Want, ce.Have, want, have)
	}
}

func TestKVSetRejects(t *testing.T) {
	s := newTestStore(t)
	cases := []struct {
		name       string
		idx        uint64
		scope, key string
		value      []byte
	}{
		{"bad key", 1, "idc1", "a//b", nil},
		{"bad scope", 1, "", "a", nil},
		{"big value", 1, "idc1", "a", make([]byte, MaxValueSize+1)},
		{"index zero", 0, "idc1", "a", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := s.KVSet(c.idx, c.scope, c.key, c.value, nil); err == nil {
				t.Fatal("no error")
			}
		})
	}
	if s.LatestIndex() != 0 {
		t.Fatalf("rejected writes changed the index to %d", s.LatestIndex())
	}
}

func TestKVDelete(t *testing.T) {
	s := newTestStore(t)
	if err := s.KVDelete(1, "idc1", "absent", nil); err != nil {
		t.Fatalf("delete absent without cas: %v", err)
	}
	if err := s.KVDelete(2, "idc1", "absent", u64(0)); err != nil {
		t.Fatalf("delete absent with cas 0: %v", err)
	}
	wantConflict(t, s.KVDelete(3, "idc1", "absent", u64(1)), 1, 0)
	if s.LatestIndex() != 0 {
		t.Fatalf("no-op deletes bumped the index to %d", s.LatestIndex())
	}

	if _, err := s.KVSet(4, "idc1", "k", []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	wantConflict(t, s.KVDelete(5, "idc1", "k", u64(0)), 0, 1)
	wantConflict(t, s.KVDelete(6, "idc1", "k", u64(2)), 2, 1)
	if err := s.KVDelete(7, "idc1", "k", u64(1)); err != nil {
		t.Fatalf("cas delete: %v", err)
	}
	idx, got, err := s.KVGet(nil, "idc1", "k")
	if err != nil || got != nil || idx != 7 {
		t.Fatalf("after delete: idx %d entry %+v err %v", idx, got, err)
	}
	// Re-creating starts at version 1 with a new CreateIndex.
	e, err := s.KVSet(8, "idc1", "k", nil, u64(0))
	if err != nil || e.Version != 1 || e.CreateIndex != 8 {
		t.Fatalf("re-create: %+v, %v", e, err)
	}
}

func TestKVListPrefixSorted(t *testing.T) {
	s := newTestStore(t)
	keys := []string{"b", "a/z", "a", "a/b/c", "a-b", "a/b", "ab", "c/d"}
	for i, k := range keys {
		if _, err := s.KVSet(uint64(i+1), "idc1", k, []byte(k), nil); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a", "a-b", "a/b", "a/b/c", "a/z", "ab", "b", "c/d"}},
		{"a/", []string{"a/b", "a/b/c", "a/z"}},
		{"a/b", []string{"a/b", "a/b/c"}},
		{"c", []string{"c/d"}},
		{"zz", nil},
	}
	for _, c := range cases {
		t.Run(c.prefix, func(t *testing.T) {
			idx, got, err := s.KVList(nil, "idc1", c.prefix)
			if err != nil {
				t.Fatal(err)
			}
			if idx != uint64(len(keys)) {
				t.Fatalf("index = %d", idx)
			}
			var names []string
			for _, e := range got {
				names = append(names, e.Key)
			}
			if strings.Join(names, ",") != strings.Join(c.want, ",") {
				t.Fatalf("list %q = %v, want %v", c.prefix, names, c.want)
			}
		})
	}
	if _, _, err := s.KVList(nil, "idc1", "a b"); err == nil {
		t.Fatal("prefix with a space accepted")
	}
}

func TestKVScopeIsolation(t *testing.T) {
	s := newTestStore(t)
	mustSet := func(idx uint64, scope, key, val string) {
		t.Helper()
		if _, err := s.KVSet(idx, scope, key, []byte(val), nil); err != nil {
			t.Fatal(err)
		}
	}
	mustSet(1, ScopeGlobal, "k", "g")
	mustSet(2, "idc1", "k", "one")
	mustSet(3, "idc10", "k", "ten")

	for scope, want := range map[string]string{ScopeGlobal: "g", "idc1": "one", "idc10": "ten"} {
		_, e, err := s.KVGet(nil, scope, "k")
		if err != nil || e == nil || string(e.Value) != want || e.Version != 1 {
			t.Fatalf("%s: %+v, %v", scope, e, err)
		}
		_, list, err := s.KVList(nil, scope, "")
		if err != nil || len(list) != 1 || list[0].Scope != scope {
			t.Fatalf("%s list: %+v, %v", scope, list, err)
		}
	}
	if err := s.KVDelete(4, "idc1", "k", nil); err != nil {
		t.Fatal(err)
	}
	if _, e, _ := s.KVGet(nil, "idc10", "k"); e == nil {
		t.Fatal("deleting idc1/k removed idc10/k")
	}
	if _, e, _ := s.KVGet(nil, ScopeGlobal, "k"); e == nil {
		t.Fatal("deleting idc1/k removed global/k")
	}
}

func TestKVWatch(t *testing.T) {
	s := newTestStore(t)
	for i, k := range []string{"watched", "dir/a"} {
		if _, err := s.KVSet(uint64(i+1), "idc1", k, []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	set := func(idx uint64, scope, key string) {
		t.Helper()
		if _, err := s.KVSet(idx, scope, key, []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
	}

	getWS := memdb.NewWatchSet()
	if _, _, err := s.KVGet(getWS, "idc1", "watched"); err != nil {
		t.Fatal(err)
	}
	listWS := memdb.NewWatchSet()
	if _, _, err := s.KVList(listWS, "idc1", "dir/"); err != nil {
		t.Fatal(err)
	}
	absentWS := memdb.NewWatchSet()
	if _, _, err := s.KVGet(absentWS, "idc1", "later"); err != nil {
		t.Fatal(err)
	}

	// Writes to other keys and scopes leave watches on existing data quiet.
	// (A watch on an absent key sits on the nearest tree node and may wake
	// early; blocking queries re-check the index, so only its firing on
	// creation matters.)
	set(3, "idc1", "other")
	set(4, "idc2", "watched")
	set(5, "idc2", "dir/a")
	if fired(getWS) || fired(listWS) {
		t.Fatalf("unrelated writes fired watches: get %v list %v", fired(getWS), fired(listWS))
	}

	set(6, "idc1", "watched")
	if !fired(getWS) {
		t.Fatal("update of a watched key did not fire")
	}
	if fired(listWS) {
		t.Fatal("list watch fired for a key outside its prefix")
	}
	set(7, "idc1", "later")
	if !fired(absentWS) {
		t.Fatal("creation of a watched absent key did not fire")
	}
	set(8, "idc1", "dir/x")
	if !fired(listWS) {
		t.Fatal("write under a watched prefix did not fire")
	}

	delWS := memdb.NewWatchSet()
	if _, _, err := s.KVGet(delWS, "idc1", "watched"); err != nil {
		t.Fatal(err)
	}
	if err := s.KVDelete(9, "idc1", "watched", nil); err != nil {
		t.Fatal(err)
	}
	if !fired(delWS) {
		t.Fatal("delete of a watched key did not fire")
	}
}

func TestKVReplaceScope(t *testing.T) {
	s := newTestStore(t)
	for i, k := range []string{"keep", "update", "delete"} {
		if _, err := s.KVSet(uint64(i+1), "idc2", k, []byte("old"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.KVSet(4, "idc1", "update", []byte("other scope"), nil); err != nil {
		t.Fatal(err)
	}
	_, keep, _ := s.KVGet(nil, "idc2", "keep")

	keepWS, updWS, delWS := memdb.NewWatchSet(), memdb.NewWatchSet(), memdb.NewWatchSet()
	s.KVGet(keepWS, "idc2", "keep")
	s.KVGet(updWS, "idc2", "update")
	s.KVGet(delWS, "idc2", "delete")

	in := []*KVEntry{
		{Key: "update", Scope: "idc2", Value: []byte("new"), Version: 9, CreateIndex: 100, ModifyIndex: 250},
		{Key: "add", Value: []byte("added"), Version: 1, CreateIndex: 260, ModifyIndex: 260}, // empty Scope is allowed
		{Key: "keep", Scope: "idc2", Value: []byte("old"), Version: keep.Version, CreateIndex: keep.CreateIndex, ModifyIndex: keep.ModifyIndex},
	}
	if err := s.KVReplaceScope(20, "idc2", in, 300); err != nil {
		t.Fatalf("replace: %v", err)
	}
	in[0].Value[0] = 'X' // the store copied the input

	idx, got, err := s.KVList(nil, "idc2", "")
	if err != nil {
		t.Fatal(err)
	}
	if idx != 20 {
		t.Fatalf("kv index = %d, want 20", idx)
	}
	want := []KVEntry{
		{Key: "add", Scope: "idc2", Value: []byte("added"), Version: 1, CreateIndex: 260, ModifyIndex: 260},
		{Key: "keep", Scope: "idc2", Value: []byte("old"), Version: 1, CreateIndex: 1, ModifyIndex: 1},
		{Key: "update", Scope: "idc2", Value: []byte("new"), Version: 9, CreateIndex: 100, ModifyIndex: 250},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries: %+v", len(got), got)
	}
	for i := range want {
		if g := got[i]; g.Key != want[i].Key || g.Scope != want[i].Scope || !bytes.Equal(g.Value, want[i].Value) ||
			g.Version != want[i].Version || g.CreateIndex != want[i].CreateIndex || g.ModifyIndex != want[i].ModifyIndex {
			t.Fatalf("entry %d = %+v, want %+v", i, *g, want[i])
		}
	}
	if s.ReplicatedIndex("idc2") != 300 || s.ReplicatedIndex("idc1") != 0 {
		t.Fatalf("replicated index idc2=%d idc1=%d", s.ReplicatedIndex("idc2"), s.ReplicatedIndex("idc1"))
	}
	if fired(keepWS) {
		t.Fatal("unchanged key was rewritten")
	}
	if !fired(updWS) || !fired(delWS) {
		t.Fatal("updated or deleted key did not fire")
	}
	if _, e, _ := s.KVGet(nil, "idc1", "update"); e == nil || string(e.Value) != "other scope" {
		t.Fatalf("other scope touched: %+v", e)
	}

	// An empty set clears the scope.
	if err := s.KVReplaceScope(21, "idc2", nil, 301); err != nil {
		t.Fatal(err)
	}
	if _, got, _ := s.KVList(nil, "idc2", ""); len(got) != 0 {
		t.Fatalf("scope not cleared: %+v", got)
	}
	if s.ReplicatedIndex("idc2") != 301 {
		t.Fatal("replicated index not advanced")
	}
}

func TestKVReplaceScopeRejects(t *testing.T) {
	cases := []struct {
		name    string
		entries []*KVEntry
	}{
		{"nil entry", []*KVEntry{nil}},
		{"other scope", []*KVEntry{{Key: "a", Scope: "idc9", Version: 1}}},
		{"bad key", []*KVEntry{{Key: "a//b", Version: 1}}},
		{"version 0", []*KVEntry{{Key: "a"}}},
		{"duplicate", []*KVEntry{{Key: "a", Version: 1}, {Key: "a", Version: 2}}},
		{"big value", []*KVEntry{{Key: "a", Version: 1, Value: make([]byte, MaxValueSize+1)}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTestStore(t)
			if _, err := s.KVSet(1, "idc2", "old", []byte("v"), nil); err != nil {
				t.Fatal(err)
			}
			err := s.KVReplaceScope(2, "idc2", c.entries, 5)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v is not a ValidationError", err)
			}
			if _, e, _ := s.KVGet(nil, "idc2", "old"); e == nil {
				t.Fatal("rejected replace changed the scope")
			}
			if s.ReplicatedIndex("idc2") != 0 {
				t.Fatal("rejected replace recorded an index")
			}
		})
	}
}
