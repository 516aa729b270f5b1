package consensus_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/herd-io/herd/consensus"
)

func TestEncodeDecodeCommand(t *testing.T) {
	cas := uint64(3)
	cases := []struct {
		name string
		typ  consensus.MessageType
		id   string
		body any
	}{
		{"set with id", consensus.KVSetType, "req-1", consensus.KVSetRequest{Scope: "global", Key: "a", Value: []byte{0, 1}, CAS: &cas}},
		{"delete without id", consensus.KVDeleteType, "", consensus.KVDeleteRequest{Scope: "idc1", Key: "a"}},
		{"flagged unknown", 77 | consensus.IgnoreUnknownTypeFlag, "x", map[string]int{"n": 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := consensus.EncodeCommand(c.typ, c.id, c.body)
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != byte(c.typ) {
				t.Fatalf("type byte %d, want %d", b[0], c.typ)
			}
			typ, id, body, err := consensus.DecodeCommand(b)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(c.body)
			if typ != c.typ || id != c.id || !bytes.Equal(body, want) {
				t.Fatalf("decoded (%v, %q, %s), want (%v, %q, %s)", typ, id, body, c.typ, c.id, want)
			}
		})
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	cases := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"empty", nil, "empty"},
		{"type only", []byte{0}, "kv-set command"},
		{"bad json", append([]byte{1}, `{"id":`...), "kv-delete command"},
		{"no body", append([]byte{2}, `{"id":"a"}`...), "no body"},
		{"not an object", append([]byte{0}, `[1,2]`...), "cannot unmarshal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, _, err := consensus.DecodeCommand(c.data)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, c.wantErr)
			}
		})
	}
	if _, err := consensus.EncodeCommand(consensus.KVSetType, "has space", struct{}{}); err == nil {
		t.Fatal("invalid request id encoded")
	}
	if _, err := consensus.EncodeCommand(consensus.KVSetType, "", make(chan int)); err == nil {
		t.Fatal("unencodable body encoded")
	}
}

func TestMessageTypeString(t *testing.T) {
	for typ, want := range map[consensus.MessageType]string{
		consensus.KVSetType:                                   "kv-set",
		consensus.KVDeleteType:                                "kv-delete",
		consensus.KVReplicateType:                             "kv-replicate",
		consensus.KVSetType | consensus.IgnoreUnknownTypeFlag: "kv-set+ignore",
		42:  "type-42",
		170: "type-42+ignore",
	} {
		if got := typ.String(); got != want {
			t.Errorf("%d: %q, want %q", uint8(typ), got, want)
		}
	}
}

// FuzzDecodeCommand checks DecodeCommand never panics and that whatever it
// accepts encodes back to a command that decodes the same.
func FuzzDecodeCommand(f *testing.F) {
	seed, _ := consensus.EncodeCommand(consensus.KVSetType, "r1", consensus.KVSetRequest{Scope: "global", Key: "k", Value: []byte("v")})
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x82, '{', '}'})
	f.Add(append([]byte{1}, `{"body":null}`...))
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, id, body, err := consensus.DecodeCommand(data)
		if err != nil {
			return
		}
		if len(body) == 0 {
			t.Fatal("accepted a command without body")
		}
		var v any
		if json.Unmarshal(body, &v) != nil {
			t.Fatalf("body %q is not JSON", body)
		}
		if id != "" && strings.ContainsAny(id, " \x00") {
			// Encode would refuse such an id; the FSM answers bad_request.
			return
		}
		again, err := consensus.EncodeCommand(typ, id, body)
		if err != nil {
			return // e.g. an id the encoder refuses
		}
		typ2, id2, body2, err := consensus.DecodeCommand(again)
		if err != nil || typ2 != typ || id2 != id {
			t.Fatalf("re-decode: (%v, %q, %v), want (%v, %q)", typ2, id2, err, typ, id)
		}
		var v2 any
		if json.Unmarshal(body2, &v2) != nil {
			t.Fatal("re-encoded body is not JSON")
		}
	})
}
