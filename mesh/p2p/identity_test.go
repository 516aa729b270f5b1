package p2p

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIdentityCreateAndReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	key, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	path := filepath.Join(dir, KeyFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Fatalf("mode = %04o, want 0600", mode)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("data dir holds %d entries, want just %s (temp file left behind?)", len(entries), KeyFile)
	}
	first, _ := os.ReadFile(path)

	again, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if !key.Equals(again) {
		t.Fatal("reloaded key differs")
	}
	if second, _ := os.ReadFile(path); string(second) != string(first) {
		t.Fatal("reload rewrote the key file")
	}

	// The peer ID survives a restart of the host.
	var ids []string
	for range 2 {
		k, err := LoadOrCreateIdentity(dir)
		if err != nil {
			t.Fatal(err)
		}
		h := newTestHost(t, func(c *Config) { c.PrivKey = k })
		ids = append(ids, h.ID().String())
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if ids[0] != ids[1] {
		t.Fatalf("peer ID changed across restarts: %s != %s", ids[0], ids[1])
	}
	if _, err := ParsePeerID(ids[0]); err != nil {
		t.Fatalf("ParsePeerID(%s): %v", ids[0], err)
	}
}

func TestIdentityRefusesBadFiles(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	good := func(t *testing.T) []byte {
		dir := t.TempDir()
		if _, err := LoadOrCreateIdentity(dir); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, KeyFile))
		return b
	}

	tests := []struct {
		name string
		data func(t *testing.T) []byte
		mode os.FileMode
		want string
	}{
		{"garbage", func(*testing.T) []byte { return []byte("not a key at all\n") }, 0o600, "not a PEM-encoded key"},
		{"empty", func(*testing.T) []byte { return nil }, 0o600, "not a PEM-encoded key"},
		{"wrong PEM type", func(*testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}})
		}, 0o600, `want "PRIVATE KEY"`},
		{"bad DER", func(*testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: []byte{1, 2, 3}})
		}, 0o600, "bad PKCS #8 key"},
		{"ecdsa key", func(*testing.T) []byte {
			return pem.EncodeToMemory(&pem.Block{Type: pemType, Bytes: ecDER})
		}, 0o600, "want ed25519"},
		{"trailing data", func(t *testing.T) []byte { return append(good(t), "junk"...) }, 0o600, "trailing data"},
		{"readable by group", good, 0o640, "chmod 600"},
		{"readable by all", good, 0o644, "chmod 600"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, KeyFile)
			if err := os.WriteFile(path, tt.data(t), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			before, _ := os.ReadFile(path)
			_, err := LoadOrCreateIdentity(dir)
			if err == nil {
				t.Fatal("LoadOrCreateIdentity accepted a bad key file")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want it to name %s and say %q", err, path, tt.want)
			}
			if after, _ := os.ReadFile(path); string(after) != string(before) {
				t.Fatal("a bad key file was modified")
			}
		})
	}
}

func TestParsePeerID(t *testing.T) {
	h := newTestHost(t, nil)
	if id, err := ParsePeerID(h.ID().String()); err != nil || id != h.ID() {
		t.Fatalf("ParsePeerID round trip = %s, %v", id, err)
	}
	for _, s := range []string{"", "Qm", "12D3KooWnot-base58!", "hello"} {
		if _, err := ParsePeerID(s); err == nil {
			t.Errorf("ParsePeerID(%q) succeeded", s)
		}
	}
}
