package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"golang.org/x/sys/unix"
)

// Object describes one complete object in the content store.
type Object struct {
	// SHA256 is the object's identity: 64 lowercase hex digits.
	SHA256 string `json:"sha256"`
	// MD5 (hex) is what `herd push` compares against a destination file.
	MD5 string `json:"md5"`
	// Size in bytes.
	Size int64 `json:"size"`
	// PieceLength is the torrent piece length (see PieceLength).
	PieceLength int64 `json:"piece_length"`
	// InfoHash (hex) is the BitTorrent v1 info hash of the object's
	// metainfo. The info's name is the SHA-256, not Name, so the same bytes
	// always make the same swarm whatever they were called when added.
	InfoHash string `json:"info_hash"`
	// Name is the file name the object was added under; a directory
	// destination receives the file under this name.
	Name string `json:"name"`
}

// Store is a content-addressed object store on local disk:
//
//	DIR/objects/ab/<sha256>          the bytes, read-only (0444)
//	DIR/objects/ab/<sha256>.torrent  bencoded metainfo
//	DIR/objects/ab/<sha256>.json     the Object record; written last, so an
//	                                 object exists exactly when it exists
//	DIR/partial/                     swarm downloads in progress (see Swarm)
//	DIR/tmp/                         uploads and copies in progress
//
// Objects are immutable once committed. A Store is safe for concurrent use
// within one process.
type Store struct {
	dir string
	mu  sync.Mutex // serialises commits and removals
}

// OpenStore opens (creating if needed) the store rooted at dir, typically
// DATA/content. Leftover temporary files from a crash are removed; partial
// swarm downloads are kept for resume.
func OpenStore(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("transfer: store directory is empty")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("transfer: store directory %q: %w", dir, err)
	}
	s := &Store{dir: abs}
	for _, d := range []string{s.objectsDir(), s.partialDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("transfer: open store: %w", err)
		}
	}
	if ents, err := os.ReadDir(s.tmpDir()); err == nil {
		for _, e := range ents {
			os.RemoveAll(filepath.Join(s.tmpDir(), e.Name()))
		}
	}
	return s, nil
}

// Dir returns the store's root directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) objectsDir() string { return filepath.Join(s.dir, "objects") }
func (s *Store) partialDir() string { return filepath.Join(s.dir, "partial") }
func (s *Store) tmpDir() string     { return filepath.Join(s.dir, "tmp") }

// objectBase returns DIR/objects/ab/<sha>; sha must be valid.
func (s *Store) objectBase(sha string) string {
	return filepath.Join(s.objectsDir(), sha[:2], sha)
}

// Path returns the path of the complete object sha256, or "" if sha256 is
// not a valid hash. The file exists only if Get reports the object.
func (s *Store) Path(sha256 string) string {
	if !ValidSHA256(sha256) {
		return ""
	}
	return s.objectBase(sha256)
}

// Get returns the object's record; ok is false if it is not in the store.
func (s *Store) Get(sha256 string) (Object, bool, error) {
	if err := checkSHA256(sha256); err != nil {
		return Object{}, false, err
	}
	b, err := os.ReadFile(s.objectBase(sha256) + ".json")
	if errors.Is(err, fs.ErrNotExist) {
		return Object{}, false, nil
	}
	if err != nil {
		return Object{}, false, fmt.Errorf("transfer: read object %s: %w", sha256, err)
	}
	var o Object
	if err := json.Unmarshal(b, &o); err != nil {
		return Object{}, false, fmt.Errorf("transfer: decode object %s: %w", sha256, err)
	}
	if o.SHA256 != sha256 {
		return Object{}, false, fmt.Errorf("transfer: object record %s names %q", sha256, o.SHA256)
	}
	return o, true, nil
}

// List returns every object, sorted by SHA-256.
func (s *Store) List() ([]Object, error) {
	var out []Object
	shards, err := os.ReadDir(s.objectsDir())
	if err != nil {
		return nil, fmt.Errorf("transfer: list store: %w", err)
	}
	for _, sh := range shards {
		if !sh.IsDir() || len(sh.Name()) != 2 {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(s.objectsDir(), sh.Name()))
		if err != nil {
			return nil, fmt.Errorf("transfer: list store: %w", err)
		}
		for _, e := range ents {
			sha, ok := strings.CutSuffix(e.Name(), ".json")
			if !ok || !ValidSHA256(sha) {
				continue
			}
			o, ok, err := s.Get(sha)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, o)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SHA256 < out[j].SHA256 })
	return out, nil
}

// Remove deletes an object. The record goes first, so a crash leaves at
// worst unreferenced bytes, never a record without bytes.
func (s *Store) Remove(sha256 string) error {
	if err := checkSHA256(sha256); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	base := s.objectBase(sha256)
	if err := os.Remove(base + ".json"); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("transfer: remove %s: %w", sha256, ErrNotFound)
		}
		return fmt.Errorf("transfer: remove %s: %w", sha256, err)
	}
	var errs []error
	for _, p := range []string{base + ".torrent", base} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("transfer: remove %s: %w", sha256, err)
	}
	return nil
}

// MetaInfo returns the object's torrent metainfo.
func (s *Store) MetaInfo(sha256 string) (*metainfo.MetaInfo, error) {
	if err := checkSHA256(sha256); err != nil {
		return nil, err
	}
	mi, err := metainfo.LoadFromFile(s.objectBase(sha256) + ".torrent")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("transfer: metainfo %s: %w", sha256, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("transfer: metainfo %s: %w", sha256, err)
	}
	return mi, nil
}

// MetaInfoBytes returns the object's bencoded metainfo, as shipped to
// other nodes.
func (s *Store) MetaInfoBytes(sha256 string) ([]byte, error) {
	if err := checkSHA256(sha256); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.objectBase(sha256) + ".torrent")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("transfer: metainfo %s: %w", sha256, ErrNotFound)
	}
	return b, err
}

// AddFile adds the file at path, named after its base name. The file is
// read once: SHA-256, MD5 and the piece hashes are computed in the same
// pass that copies it into the store. Where the filesystem supports it
// (btrfs, XFS) the copy is a reflink clone and the pass reads the clone.
// The source is never hard-linked: a later in-place edit of the source
// would silently change a content-addressed object.
func (s *Store) AddFile(ctx context.Context, path string, progress func(done, total int64)) (Object, error) {
	src, err := os.Open(path)
	if err != nil {
		return Object{}, fmt.Errorf("transfer: add %s: %w", path, err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return Object{}, fmt.Errorf("transfer: add %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return Object{}, fmt.Errorf("transfer: add %s: not a regular file", path)
	}
	name := filepath.Base(path)
	tmp, err := os.CreateTemp(s.tmpDir(), "add-*")
	if err != nil {
		return Object{}, fmt.Errorf("transfer: add %s: %w", path, err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name()) // no-op once committed
	}()
	size := fi.Size()
	var d digests
	if unix.IoctlFileClone(int(tmp.Fd()), int(src.Fd())) == nil {
		d, err = hashStream(ctx, tmp, nil, PieceLength(size), size, progress)
	} else {
		d, err = hashStream(ctx, src, tmp, PieceLength(size), size, progress)
	}
	if err != nil {
		return Object{}, fmt.Errorf("transfer: add %s: %w", path, err)
	}
	if d.Size != size {
		return Object{}, fmt.Errorf("transfer: add %s: %w: read %d bytes, file is %d (changed while adding?)",
			path, ErrSizeMismatch, d.Size, size)
	}
	return s.commitNew(tmp, d, name)
}

// AddReader adds size bytes read from r under name (the streamed-upload
// path): the bytes go to a temporary file while being hashed, and are
// committed only if exactly size bytes arrived.
func (s *Store) AddReader(ctx context.Context, r io.Reader, name string, size int64, progress func(done, total int64)) (Object, error) {
	if err := checkName(name); err != nil {
		return Object{}, err
	}
	if size < 0 {
		return Object{}, fmt.Errorf("transfer: add %s: negative size %d", name, size)
	}
	tmp, err := os.CreateTemp(s.tmpDir(), "upload-*")
	if err != nil {
		return Object{}, fmt.Errorf("transfer: add %s: %w", name, err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	// One byte more than declared is read, so a longer stream is caught.
	d, err := hashStream(ctx, io.LimitReader(r, size+1), tmp, PieceLength(size), size, progress)
	if err != nil {
		return Object{}, fmt.Errorf("transfer: add %s: %w", name, err)
	}
	if d.Size != size {
		return Object{}, fmt.Errorf("transfer: add %s: %w: got %d bytes, want %d", name, ErrSizeMismatch, d.Size, size)
	}
	return s.commitNew(tmp, d, name)
}

// checkName accepts a plain file name: what ResolveDest appends to a
// directory destination.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("transfer: invalid object name %q: want a plain file name", name)
	}
	return nil
}

// buildMetaInfo returns the private, single-file metainfo for an object:
// piece SHA-1s for the swarm, and the pieces' SHA-256s (sums) under
// herd's own key of the info dictionary, where the info hash, which the
// object record names, covers them (see pieceSums).
func buildMetaInfo(sha string, size, pieceLen int64, pieces, sums []byte) (*metainfo.MetaInfo, metainfo.Hash, error) {
	private := true
	info := metainfo.Info{
		Name:        sha,
		Length:      size,
		PieceLength: pieceLen,
		Pieces:      pieces,
		Private:     &private,
	}
	ib, err := bencode.Marshal(info)
	if err != nil {
		return nil, metainfo.Hash{}, fmt.Errorf("encode info: %w", err)
	}
	if sums != nil {
		// anacrolix's Info has no room for another key: add it to the
		// dictionary itself (bencode sorts the keys).
		var dict map[string]any
		if err := bencode.Unmarshal(ib, &dict); err != nil {
			return nil, metainfo.Hash{}, fmt.Errorf("encode info: %w", err)
		}
		dict[pieceSumsKey] = string(sums)
		if ib, err = bencode.Marshal(dict); err != nil {
			return nil, metainfo.Hash{}, fmt.Errorf("encode info: %w", err)
		}
	}
	mi := &metainfo.MetaInfo{InfoBytes: ib, CreatedBy: "herd"}
	return mi, mi.HashInfoBytes(), nil
}

// commitNew turns a fully written temporary file with digests d into an
// object, or returns the existing object with the same SHA-256.
func (s *Store) commitNew(tmp *os.File, d digests, name string) (Object, error) {
	if err := checkName(name); err != nil {
		return Object{}, err
	}
	pl := PieceLength(d.Size)
	mi, ih, err := buildMetaInfo(d.SHA256, d.Size, pl, d.Pieces, d.PieceSHA256)
	if err != nil {
		return Object{}, fmt.Errorf("transfer: add %s: %w", name, err)
	}
	obj := Object{SHA256: d.SHA256, MD5: d.MD5, Size: d.Size, PieceLength: pl, InfoHash: ih.HexString(), Name: name}
	if err := tmp.Sync(); err != nil {
		return Object{}, fmt.Errorf("transfer: add %s: sync: %w", name, err)
	}
	return s.commit(tmp.Name(), obj, mi)
}

// commit moves the verified file at tmpPath (on the store's filesystem)
// into place as obj and writes its metainfo and record. If the object is
// already present, tmpPath is removed and the existing record returned.
func (s *Store) commit(tmpPath string, obj Object, mi *metainfo.MetaInfo) (Object, error) {
	if err := checkSHA256(obj.SHA256); err != nil {
		return Object{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok, err := s.Get(obj.SHA256); err == nil && ok {
		os.Remove(tmpPath)
		return old, nil
	}
	base := s.objectBase(obj.SHA256)
	dir := filepath.Dir(base)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Object{}, fmt.Errorf("transfer: commit %s: %w", obj.SHA256, err)
	}
	if err := os.Chmod(tmpPath, 0o444); err != nil {
		return Object{}, fmt.Errorf("transfer: commit %s: %w", obj.SHA256, err)
	}
	if err := os.Rename(tmpPath, base); err != nil {
		return Object{}, fmt.Errorf("transfer: commit %s: %w", obj.SHA256, err)
	}
	var mib bytes.Buffer
	if err := mi.Write(&mib); err != nil {
		return Object{}, fmt.Errorf("transfer: commit %s: encode metainfo: %w", obj.SHA256, err)
	}
	if err := writeFileAtomic(base+".torrent", mib.Bytes()); err != nil {
		return Object{}, fmt.Errorf("transfer: commit %s: %w", obj.SHA256, err)
	}
	rec, _ := json.MarshalIndent(obj, "", "  ")
	if err := writeFileAtomic(base+".json", append(rec, '\n')); err != nil {
		return Object{}, fmt.Errorf("transfer: commit %s: %w", obj.SHA256, err)
	}
	if err := syncDir(dir); err != nil {
		return Object{}, fmt.Errorf("transfer: commit %s: %w", obj.SHA256, err)
	}
	return obj, nil
}

// putCopy copies the object obj from src into the store, checking its
// SHA-256 on the way, and commits it with its metainfo.
func (s *Store) putCopy(ctx context.Context, src *os.File, obj Object, mi *metainfo.MetaInfo) error {
	tmp, err := os.CreateTemp(s.tmpDir(), "copy-*")
	if err != nil {
		return fmt.Errorf("transfer: store %s: %w", obj.SHA256, err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(tmp, io.TeeReader(ctxReader{ctx, io.NewSectionReader(src, 0, obj.Size+1)}, h))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("transfer: store %s: %w", obj.SHA256, err)
	}
	if sha := hex.EncodeToString(h.Sum(nil)); sha != obj.SHA256 || n != obj.Size {
		return fmt.Errorf("transfer: store %s: %w: the file now has sha256 %s (%d bytes)", obj.SHA256, ErrDigestMismatch, sha, n)
	}
	_, err = s.commit(tmp.Name(), obj, mi)
	return err
}

// writeFileAtomic writes b to path via a synced temporary file and rename.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o444); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// syncDir fsyncs a directory so that renames into it are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// checkObject validates an Object received from elsewhere (the control
// group, a peer) before any path is built from it.
func checkObject(obj Object) error {
	if err := checkSHA256(obj.SHA256); err != nil {
		return err
	}
	if b, err := hex.DecodeString(obj.MD5); err != nil || len(b) != 16 || strings.ToLower(obj.MD5) != obj.MD5 {
		return fmt.Errorf("transfer: object %s: invalid md5 %q", obj.SHA256, obj.MD5)
	}
	if obj.Size < 0 {
		return fmt.Errorf("transfer: object %s: negative size", obj.SHA256)
	}
	return nil
}
