package transfer

import (
	"crypto/md5"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The cache answers an unchanged file from its fingerprint and notices
// every kind of change: rewrite in place, replacement, chmod.
func TestDigestCache(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenDigestCache(filepath.Join(dir, "digests.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	path := filepath.Join(dir, "f")
	data := []byte("hello herd")
	sum := md5.Sum(data)
	want := hex.EncodeToString(sum[:])
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * settle) // let the file's times settle: the cache trusts only later records
	if err := c.Record(path, want); err != nil {
		t.Fatal(err)
	}
	if md5, _, ok := c.lookup(path); !ok || md5 != want {
		t.Fatalf("unchanged file: %q %v", md5, ok)
	}
	if same, err := c.CheckIdentical(path, int64(len(data)), want); err != nil || !same {
		t.Fatalf("identical: %v %v", same, err)
	}
	if same, _ := c.CheckIdentical(path, int64(len(data)), "00000000000000000000000000000000"); same {
		t.Fatal("a different md5 was called identical")
	}
	for name, change := range map[string]func() error{
		"rewrite": func() error { return os.WriteFile(path, []byte("HELLO herd"), 0o644) },
		"chmod":   func() error { return os.Chmod(path, 0o600) },
		"replace": func() error {
			tmp := path + ".new"
			if err := os.WriteFile(tmp, data, 0o644); err != nil {
				return err
			}
			return os.Rename(tmp, path)
		},
	} {
		time.Sleep(2 * settle)
		if err := c.record(path, want, false); err != nil {
			t.Fatal(err)
		}
		if err := change(); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := c.lookup(path); ok {
			t.Errorf("%s: the cache still trusts the old record", name)
		}
	}
}
