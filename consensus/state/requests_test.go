package state

import (
	"fmt"
	"strings"
	"testing"
)

func TestRequestDedupe(t *testing.T) {
	s := newTestStore(t)
	if _, ok := s.RequestSeen("r1"); ok {
		t.Fatal("empty store saw r1")
	}
	res := []byte(`{"index":5}`)
	if err := s.RecordRequest(5, RequestRecord{ID: "r1", Index: 999, Result: res}); err != nil {
		t.Fatal(err)
	}
	res[0] = 'X' // the store copied it
	rec, ok := s.RequestSeen("r1")
	if !ok || rec.ID != "r1" || rec.Index != 5 || string(rec.Result) != `{"index":5}` {
		t.Fatalf("RequestSeen = %+v, %v", rec, ok)
	}
	if err := s.RecordRequest(6, RequestRecord{ID: "r1"}); err == nil || !strings.Contains(err.Error(), "already recorded at index 5") {
		t.Fatalf("second record of r1: %v", err)
	}
	for _, bad := range []string{"", "has space", "nul\x00", strings.Repeat("x", MaxRequestIDSize+1)} {
		if err := s.RecordRequest(7, RequestRecord{ID: bad}); err == nil {
			t.Fatalf("id %q accepted", bad)
		}
	}
	if err := s.RecordRequest(7, RequestRecord{ID: "big", Result: make([]byte, MaxRequestResultSize+1)}); err == nil {
		t.Fatal("oversized result accepted")
	}
}

func TestRequestPruning(t *testing.T) {
	// Two stores fed the same log end with the same records: pruning depends
	// only on indexes.
	build := func() *Store {
		s := newTestStore(t)
		for _, idx := range []uint64{1, 2, 3, 50, 60} {
			if err := s.RecordRequest(idx, RequestRecord{ID: fmt.Sprintf("r%d", idx)}); err != nil {
				t.Fatal(err)
			}
		}
		// Cutoff = 100_050 - RequestWindow = 50: records at 1, 2, 3 go,
		// 50 stays (the window is inclusive at its edge).
		if err := s.RecordRequest(50+RequestWindow, RequestRecord{ID: "late"}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := build(), build()
	for _, s := range []*Store{a, b} {
		for _, id := range []string{"r1", "r2", "r3"} {
			if _, ok := s.RequestSeen(id); ok {
				t.Fatalf("%s not pruned", id)
			}
		}
		for _, id := range []string{"r50", "r60", "late"} {
			if _, ok := s.RequestSeen(id); !ok {
				t.Fatalf("%s pruned", id)
			}
		}
	}
	if persistBytes(t, a) != persistBytes(t, b) {
		t.Fatal("same log, different state")
	}
	// A pruned id can be recorded again.
	if err := a.RecordRequest(51+RequestWindow, RequestRecord{ID: "r1"}); err != nil {
		t.Fatal(err)
	}
}
