package transfer

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DigestCache remembers the MD5 of files this agent installed, keyed by
// path and guarded by a stat fingerprint (device, inode, size, mtime,
// ctime). A re-push of an identical file then costs one stat per host
// instead of reading the whole destination; any change to the file (a
// write, a chmod, a replacement) changes the fingerprint and the file is
// hashed again. rsync's quick check makes the same bet on size and mtime;
// ctime and the inode make it much harder to fool.
type DigestCache struct {
	db *bolt.DB
}

var bucketDigests = []byte("digests")

// fingerprint is what must not have changed for a cached MD5 to hold.
type fingerprint struct {
	Dev, Ino       uint64
	Size           int64
	MtimeNs        int64
	CtimeNs        int64
	MD5            string
	RecordedUnixNs int64
	Installed      bool // recorded by the install itself (see Record)
}

// OpenDigestCache opens (creating) the cache at path.
func OpenDigestCache(path string) (*DigestCache, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("digest cache %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketDigests)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("digest cache %s: %w", path, err)
	}
	return &DigestCache{db: db}, nil
}

// Close closes the cache.
func (c *DigestCache) Close() error { return c.db.Close() }

func statFingerprint(path string) (fingerprint, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fingerprint{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.Mode().IsRegular() {
		return fingerprint{}, fmt.Errorf("%s: not a regular file", path)
	}
	return fingerprint{
		Dev: uint64(st.Dev), Ino: st.Ino, Size: fi.Size(),
		MtimeNs: st.Mtim.Nano(), CtimeNs: st.Ctim.Nano(),
	}, nil
}

// Record notes that path now holds content with md5hex: call it right
// after installing. The record is trusted at once, because this agent has
// just written and renamed the file: only a foreign write of the same size
// within the same file-time tick as that rename (a few milliseconds) could
// go unnoticed, the window rsync's quick check also leaves.
func (c *DigestCache) Record(path, md5hex string) error {
	return c.record(path, md5hex, true)
}

func (c *DigestCache) record(path, md5hex string, installed bool) error {
	if c == nil {
		return nil
	}
	fp, err := statFingerprint(path)
	if err != nil {
		return err
	}
	fp.MD5, fp.RecordedUnixNs, fp.Installed = md5hex, time.Now().UnixNano(), installed
	v, err := json.Marshal(fp)
	if err != nil {
		return err
	}
	return c.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketDigests).Put([]byte(path), v) })
}

// settle is how long after a file's last change a record of it must have
// been made to be trusted: file times tick in jiffies, so a write right
// after the recording could leave them unchanged.
const settle = 10 * time.Millisecond

// lookup returns the cached MD5 and size of path if its fingerprint still
// matches.
func (c *DigestCache) lookup(path string) (string, int64, bool) {
	var fp fingerprint
	found := false
	_ = c.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketDigests).Get([]byte(path)); v != nil {
			found = json.Unmarshal(v, &fp) == nil
		}
		return nil
	})
	if !found {
		return "", 0, false
	}
	now, err := statFingerprint(path)
	if err != nil {
		return "", 0, false
	}
	if now.Dev != fp.Dev || now.Ino != fp.Ino || now.Size != fp.Size || now.MtimeNs != fp.MtimeNs ||
		now.CtimeNs != fp.CtimeNs || (!fp.Installed && fp.RecordedUnixNs-now.CtimeNs < int64(settle)) {
		return "", 0, false
	}
	return fp.MD5, now.Size, true
}

// CheckIdentical is the package-level CheckIdentical, answered from the
// cache when the file is unchanged since this agent installed it.
func (c *DigestCache) CheckIdentical(dest string, size int64, md5hex string) (bool, error) {
	if c != nil {
		if md5, have, ok := c.lookup(dest); ok {
			return md5 == strings.ToLower(md5hex) && have == size, nil
		}
	}
	same, err := CheckIdentical(dest, size, md5hex)
	if err == nil && same && c != nil {
		_ = c.record(dest, md5hex, false) // hashed anyway: the next check is a stat
	}
	return same, err
}
