package mesh

import (
	"reflect"
	"strings"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	tests := []Meta{
		{},
		{IDC: "dc1"},
		{
			ID:      "12D3KooWGzh2r8dZ3Ux7HLZ5MD4DBm3pF4ApYzoGvMzVBrwNLa3C",
			IDC:     "dc1",
			Zone:    "rack-7",
			Roles:   []string{"voter", "seed"},
			API:     "10.0.0.1:7070",
			P2P:     "/ip4/10.0.0.1/tcp/7071",
			Version: "1.2.3",
		},
		{Roles: []string{""}},
		{ID: "ünïcödé"},
	}
	for _, m := range tests {
		b, err := EncodeMeta(m)
		if err != nil {
			t.Fatalf("EncodeMeta(%+v): %v", m, err)
		}
		got, err := DecodeMeta(b)
		if err != nil {
			t.Fatalf("DecodeMeta(EncodeMeta(%+v)): %v", m, err)
		}
		if len(m.Roles) == 0 {
			m.Roles = nil
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip = %+v, want %+v", got, m)
		}
	}
	full, _ := EncodeMeta(tests[2])
	if len(full) > 150 {
		t.Errorf("a typical meta takes %d bytes; the encoding is meant to be compact", len(full))
	}
}

func TestEncodeMetaLimits(t *testing.T) {
	if _, err := EncodeMeta(Meta{API: strings.Repeat("a", 600)}); err == nil || !strings.Contains(err.Error(), "512") || !strings.Contains(err.Error(), "bytes") {
		t.Errorf("oversized meta: %v", err)
	}
	// Exactly at the limit is fine: 1 version + 6 one-byte lengths + 1 role count = 8,
	// and a 504-byte field needs a 2-byte length.
	if _, err := EncodeMeta(Meta{API: strings.Repeat("a", 503)}); err != nil {
		t.Errorf("meta of exactly 512 bytes: %v", err)
	}
	if _, err := EncodeMeta(Meta{API: strings.Repeat("a", 504)}); err == nil {
		t.Error("meta of 513 bytes accepted")
	}
	if _, err := EncodeMeta(Meta{Zone: "\xff"}); err == nil || !strings.Contains(err.Error(), "zone") {
		t.Errorf("invalid UTF-8: %v", err)
	}
}

func TestDecodeMetaErrors(t *testing.T) {
	good, _ := EncodeMeta(Meta{ID: "id", IDC: "dc1", Roles: []string{"voter"}})
	v2 := append([]byte{2}, good[1:]...)
	v2 = append(v2, 0xde, 0xad) // fields a later version appended
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"empty", nil, "empty"},
		{"version 0", []byte{0}, "version 0"},
		{"truncated", good[:len(good)-3], "overruns"},
		{"no fields", []byte{1}, "bad length prefix"},
		{"trailing", append(append([]byte{}, good...), 0), "trailing"},
		{"huge length", []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f}, "overruns"},
		{"huge role count", []byte{1, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x03}, "role count"},
		{"bad varint", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "bad length prefix"},
		{"bad utf8", []byte{1, 1, 0xff, 0, 0, 0, 0, 0}, "UTF-8"},
		{"too big", make([]byte, 513), "more than the limit"},
		{"later version", v2, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DecodeMeta(tc.in)
			if tc.wantErr == "" {
				if err != nil || m.ID != "id" || len(m.Roles) != 1 {
					t.Errorf("DecodeMeta = %+v, %v", m, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("DecodeMeta(%x) = %v, want %q", tc.in, err, tc.wantErr)
			}
		})
	}
}
