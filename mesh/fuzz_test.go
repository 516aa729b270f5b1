package mesh

import (
	"bytes"
	"maps"
	"reflect"
	"slices"
	"testing"
)

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []Meta{
		{},
		{ID: "12D3KooWGzh2r8dZ3Ux7HLZ5MD4DBm3pF4ApYzoGvMzVBrwNLa3C", IDC: "dc1", Zone: "a", Roles: []string{"voter"}, API: "10.0.0.1:7070", P2P: "/ip4/10.0.0.1/tcp/7071", Version: "1.0"},
	} {
		b, _ := EncodeMeta(m)
		f.Add(b)
		f.Add(append([]byte{2}, b[1:]...))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			return
		}
		enc, err := EncodeMeta(m)
		if err != nil {
			t.Fatalf("decoded meta %+v does not encode: %v", m, err)
		}
		again, err := DecodeMeta(enc)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip: %+v -> %+v, %v", m, again, err)
		}
		if b[0] == metaVersion1 && !bytes.Equal(enc, b) {
			t.Fatalf("version 1 is not canonical: %x re-encodes to %x", b, enc)
		}
	})
}

func FuzzParseLabels(f *testing.F) {
	for _, s := range []string{"", "role=web", " a = b , c= ", "k8s.io/arch=amd64,owner=ops@x.com", "a=b,a=c", "idc=x", "a=b,,", "=", "a b=c", "a=\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLabels(s)
		if err != nil {
			return
		}
		if err := ValidateLabels(l); err != nil {
			t.Fatalf("ParseLabels(%q) = %v, which ValidateLabels rejects: %v", s, l, err)
		}
		again, err := ParseLabels(formatLabels(l))
		if err != nil || !maps.Equal(again, l) {
			t.Fatalf("formatted labels %q do not re-parse: %v, %v", formatLabels(l), again, err)
		}
	})
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{
		"", "role=web,env in (prod,staging),!canary,zone!=b,k==v,k notin (a,b),k",
		"a in ()", "a in (b,)", "! a", "a!b", "in in (in)", "k=", "a=b c", "a (", strings64(),
	} {
		f.Add(s)
	}
	attrs := []map[string]string{
		nil,
		{"role": "web", "env": "prod", "name": "n1", "status": "alive"},
		{"k": "", "canary": "1", "zone": "b"},
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			return
		}
		canon := sel.String()
		again, err := ParseSelector(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, s, err)
		}
		if again.String() != canon || !slices.EqualFunc(again.reqs, sel.reqs, func(a, b requirement) bool {
			return a.key == b.key && a.op == b.op && slices.Equal(a.values, b.values)
		}) {
			t.Fatalf("%q: canonical form %q re-parses differently", s, canon)
		}
		for _, a := range attrs {
			if sel.Matches(a) != again.Matches(a) {
				t.Fatalf("%q and its canonical form disagree on %v", s, a)
			}
		}
	})
}

func strings64() string { return string(bytes.Repeat([]byte("k"), 64)) }

func FuzzDecodeMessage(f *testing.F) {
	seeds := []struct {
		t messageType
		v any
	}{
		{msgNodeState, &nodeStateMsg{Name: "n1", Version: 1, Labels: map[string]string{"a": "b"}, Health: Health{Load1: 1.5}}},
		{msgUserEvent, &userEventMsg{LTime: 1, Name: "e", Payload: []byte("p"), Origin: "n1"}},
		{msgPushPull, &pushPullMsg{EventLTime: 4, States: []nodeStateMsg{{Name: "n", Version: 2}}}},
	}
	for _, s := range seeds {
		b, _ := encodeMessage(s.t, s.v)
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte("\x01null"))
	f.Add([]byte{250, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, v, err := decodeMessage(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to a stable form.
		enc, err := encodeMessage(typ, v)
		if err != nil {
			t.Fatalf("decoded %T does not encode: %v", v, err)
		}
		typ2, v2, err := decodeMessage(enc)
		if err != nil || typ2 != typ {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		enc2, _ := encodeMessage(typ2, v2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc, enc2)
		}
	})
}
