package state

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"
)

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// FuzzRestore feeds arbitrary bytes to Restore: it must never panic, a
// failure must leave the state as it was, and anything it accepts must
// persist and restore again identically.
func FuzzRestore(f *testing.F) {
	s, err := NewStore()
	if err != nil {
		f.Fatal(err)
	}
	s.KVSet(1, ScopeGlobal, "a", []byte("v"), nil)
	s.KVSet(2, "idc1", "b/c", nil, nil)
	s.RecordRequest(3, RequestRecord{ID: "r", Result: []byte("{}")})
	s.KVReplaceScope(4, "idc2", []*KVEntry{{Key: "x", Version: 2, CreateIndex: 1, ModifyIndex: 2}}, 9)
	var good bytes.Buffer
	if err := s.Persist(&good); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:good.Len()/2])
	f.Add([]byte(snapshotMagic + "\x00\x01"))
	f.Add([]byte{})

	// before is what every fuzz store holds until a Restore succeeds.
	before, err := NewStore()
	if err != nil {
		f.Fatal(err)
	}
	before.KVSet(1, "idc1", "keep", []byte("me"), nil)
	var want bytes.Buffer
	if err := before.Persist(&want); err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := NewStore()
		if err != nil {
			t.Fatal(err)
		}
		st.KVSet(1, "idc1", "keep", []byte("me"), nil)
		if err := st.Restore(bytes.NewReader(data)); err != nil {
			var after bytes.Buffer
			st.Persist(&after)
			if !bytes.Equal(after.Bytes(), want.Bytes()) {
				t.Fatalf("failed restore (%v) changed the state", err)
			}
			return
		}
		var once, twice bytes.Buffer
		if err := st.Persist(&once); err != nil {
			t.Fatal(err)
		}
		st2, _ := NewStore()
		if err := st2.Restore(bytes.NewReader(once.Bytes())); err != nil {
			t.Fatalf("re-restore of an accepted snapshot: %v", err)
		}
		st2.Persist(&twice)
		if !bytes.Equal(once.Bytes(), twice.Bytes()) {
			t.Fatal("persist is not stable across restore")
		}
	})
}

// FuzzValidateKey checks ValidateKey never panics and that every key it
// accepts meets the documented rules and can be written and read back.
func FuzzValidateKey(f *testing.F) {
	for _, k := range []string{"a", "a/b", "a//b", "/a", "a/", ".", "..", "a/../b", "a b", "x.y-z_0", strings.Repeat("k", 513)} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, k string) {
		if err := ValidateKey(k); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		if len(k) == 0 || len(k) > MaxKeySize || k[0] == '/' || k[len(k)-1] == '/' {
			t.Fatalf("accepted %q", k)
		}
		for _, seg := range strings.Split(k, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted %q with segment %q", k, seg)
			}
			for i := 0; i < len(seg); i++ {
				if !keyChar(seg[i]) {
					t.Fatalf("accepted %q with byte %q", k, seg[i])
				}
			}
		}
		s, _ := NewStore()
		if _, err := s.KVSet(1, ScopeGlobal, k, []byte("v"), nil); err != nil {
			t.Fatalf("valid key %q refused by KVSet: %v", k, err)
		}
		_, list, err := s.KVList(nil, ScopeGlobal, k)
		if err != nil || len(list) != 1 || list[0].Key != k {
			t.Fatalf("valid key %q not listed by its own prefix: %v, %v", k, list, err)
		}
	})
}
