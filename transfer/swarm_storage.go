package transfer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// swarmStorage is the anacrolix storage adapter: every torrent in the
// Swarm's client is one store object, read from the store when complete
// and written to DATA/content/partial/<sha256>/data while fetching. It
// replaces anacrolix's file storage, which would (with its defaults) use
// ".part" files whose completion is only inferred per whole file at
// startup, share a bolt DB opened with NoSync, and close that DB when any
// storage client closes.
type swarmStorage struct{ s *Swarm }

var _ storage.ClientImpl = swarmStorage{}

// OpenTorrent opens the object registered for infoHash by Seed or Fetch.
func (st swarmStorage) OpenTorrent(_ context.Context, info *metainfo.Info, infoHash metainfo.Hash) (storage.TorrentImpl, error) {
	e := st.s.entryByInfoHash(infoHash)
	if e == nil {
		return storage.TorrentImpl{}, fmt.Errorf("transfer: no object registered for info hash %s", infoHash.HexString())
	}
	var f *os.File
	var err error
	if e.complete() {
		f, err = os.Open(st.s.store.objectBase(e.obj.SHA256))
	} else {
		f, err = openPartial(e.partialPath(), e.obj.Size)
	}
	if err != nil {
		return storage.TorrentImpl{}, fmt.Errorf("transfer: open storage for %s: %w", e.obj.SHA256, err)
	}
	ft := &fileTorrent{e: e, db: st.s.db}
	ft.f.Store(f)
	e.storage.Store(ft)
	return storage.TorrentImpl{Piece: ft.piece, Close: ft.close}, nil
}

// openPartial opens (creating, sized, sparse) a partial download.
func openPartial(path string, size int64) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err == nil && fi.Size() != size {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// reservePartial creates (or, resuming, reopens) the partial download of
// an object of size bytes at path and allocates its blocks up front, so
// that a disk too small for it fails the fetch at once with ErrNoSpace
// instead of part-way through. Filesystems that cannot preallocate keep a
// sparse file.
func reservePartial(path string, size int64) error {
	f, err := openPartial(path, size)
	if err != nil {
		return fmt.Errorf("partial download %s: %w", path, kinded(err))
	}
	defer f.Close()
	if size == 0 {
		return nil
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, size)
	switch {
	case err == nil, errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
		return nil
	case classify(err) == ErrNoSpace:
		free := "unknown"
		if n, ok := freeBytes(filepath.Dir(path)); ok {
			free = humanBytes(n)
		}
		return withKind(ErrNoSpace, err, "no space left on device for the partial download %s (needs %s, %s free)",
			path, humanBytes(size), free)
	default:
		return fmt.Errorf("partial download %s: preallocate: %w", path, err)
	}
}

// fileTorrent is one open object. The file handle stays valid when the
// partial file is renamed into the store (or into DEST) on completion.
type fileTorrent struct {
	e    *swarmEntry
	db   *bbolt.DB
	f    atomic.Pointer[os.File]
	mu   sync.Mutex
	done bool
}

// swap serves the object from f from now on (the store's copy, once an
// object moved out to DEST is copied back).
func (t *fileTorrent) swap(f *os.File) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		f.Close()
		return
	}
	old := t.f.Swap(f)
	time.AfterFunc(dropCloseDelay, func() { old.Close() }) // reads in flight finish
}

func (t *fileTorrent) piece(p metainfo.Piece) storage.PieceImpl {
	return filePiece{t: t, off: p.Offset(), index: p.Index()}
}

// dropCloseDelay is how long a dropped torrent's file stays open.
const dropCloseDelay = 30 * time.Second

// close runs when the torrent is dropped. The descriptor is closed a little
// later, not now: anacrolix v1.61.0 panics (PeerConn.servePeerRequest,
// "panicif.True") when the read for a peer request that was in flight at
// Drop fails, as it would on a closed file; the request is abandoned
// quietly when the read succeeds.
func (t *fileTorrent) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return nil
	}
	t.done = true
	f := t.f.Load()
	time.AfterFunc(dropCloseDelay, func() { f.Close() })
	return nil
}

type filePiece struct {
	t     *fileTorrent
	off   int64
	index int
}

var _ storage.PieceImpl = filePiece{}

func (p filePiece) ReadAt(b []byte, off int64) (int, error) { return p.t.f.Load().ReadAt(b, p.off+off) }

func (p filePiece) WriteAt(b []byte, off int64) (int, error) {
	if p.t.e.complete() {
		return 0, errors.New("transfer: write to a complete object")
	}
	return p.t.f.Load().WriteAt(b, p.off+off)
}

// MarkComplete persists a verified piece: the data is synced first, so a
// crash never leaves a piece recorded complete whose bytes were lost.
func (p filePiece) MarkComplete() error {
	if p.t.e.complete() {
		return nil
	}
	if err := p.t.f.Load().Sync(); err != nil {
		return fmt.Errorf("sync piece %d: %w", p.index, err)
	}
	if err := setPieceDone(p.t.db, p.t.e.obj.SHA256, p.index, true); err != nil {
		return err
	}
	if w := p.t.e.work.Load(); w != nil {
		w.add(p.index)
	}
	return nil
}

func (p filePiece) MarkNotComplete() error {
	if p.t.e.complete() {
		return nil
	}
	return setPieceDone(p.t.db, p.t.e.obj.SHA256, p.index, false)
}

// Completion is always known (Ok): a piece never recorded is missing, not
// "unknown", so anacrolix does not hash a fresh sparse file piece by piece.
func (p filePiece) Completion() storage.Completion {
	if p.t.e.complete() {
		return storage.Completion{Ok: true, Complete: true}
	}
	done, err := pieceDone(p.t.db, p.t.e.obj.SHA256, p.index)
	return storage.Completion{Ok: err == nil, Complete: done, Err: err}
}

// The completion DB: bucket "pieces" / <sha256> / uint32 piece index -> {}.
var piecesBucket = []byte("pieces")

func openCompletionDB(path string) (*bbolt.DB, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("transfer: open piece completion db %s: %w", path, err)
	}
	return db, nil
}

func pieceKey(i int) []byte {
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], uint32(i))
	return k[:]
}

func setPieceDone(db *bbolt.DB, sha string, i int, done bool) error {
	return db.Update(func(tx *bbolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(piecesBucket)
		if err != nil {
			return err
		}
		b, err := root.CreateBucketIfNotExists([]byte(sha))
		if err != nil {
			return err
		}
		if done {
			return b.Put(pieceKey(i), []byte{1})
		}
		return b.Delete(pieceKey(i))
	})
}

func pieceDone(db *bbolt.DB, sha string, i int) (done bool, err error) {
	err = db.View(func(tx *bbolt.Tx) error {
		if root := tx.Bucket(piecesBucket); root != nil {
			if b := root.Bucket([]byte(sha)); b != nil {
				done = b.Get(pieceKey(i)) != nil
			}
		}
		return nil
	})
	return done, err
}

// forgetPieces drops an object's completion records (after it is committed
// to the store or abandoned).
func forgetPieces(db *bbolt.DB, sha string) error {
	return db.Update(func(tx *bbolt.Tx) error {
		root := tx.Bucket(piecesBucket)
		if root == nil || root.Bucket([]byte(sha)) == nil {
			return nil
		}
		return root.DeleteBucket([]byte(sha))
	})
}
