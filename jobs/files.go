package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/consensus/state"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh/p2p"
	"github.com/herd-io/herd/transfer"
)

// The content store catalog: files added to a node's store are recorded in
// the control group (global scope: any IDC can push them), with that node
// as an origin. Uploads from the CLI land on the node the CLI talks to, in
// chunks that survive a broken connection.

// AddLocalFile adds a file that is on this node to its content store,
// registers it and starts seeding it.
func (s *Service) AddLocalFile(ctx context.Context, path string) (*model.File, error) {
	w := s.worker
	if w == nil || w.content == nil {
		return nil, p2p.Errorf(p2p.CodeUnavailable, "%s has no content store", s.name)
	}
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return nil, badRequest("source path %q must be absolute and clean", path)
	}
	if w.cfg.FSRoot != "" {
		path = filepath.Join(w.cfg.FSRoot, path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, p2p.Errorf(p2p.CodeNotFound, "source %s on %s: %v", path, s.name, err)
	}
	if !st.Mode().IsRegular() {
		return nil, badRequest("source %s on %s is not a regular file", path, s.name)
	}
	obj, err := w.content.AddFile(ctx, path, nil)
	if err != nil {
		return nil, fmt.Errorf("adding %s to the content store: %w", path, err)
	}
	return s.registerFile(ctx, obj)
}

// registerFile records obj in the catalog with this node as an origin and
// seeds it.
func (s *Service) registerFile(ctx context.Context, obj transfer.Object) (*model.File, error) {
	w := s.worker
	raw, err := w.content.MetaInfoBytes(obj.SHA256)
	if err != nil {
		return nil, err
	}
	if err := writeMetaChunks(ctx, s.srv, obj.SHA256, raw); err != nil {
		return nil, err
	}
	if err := w.seed(obj); err != nil {
		return nil, fmt.Errorf("seeding %s: %w", obj.SHA256, err)
	}
	me := model.FileHolder{Node: s.name, IDC: s.idc, Swarm: w.swarmAddr()}
	return modify(ctx, s, fileKey(obj.SHA256), func(cur *model.File) (*model.File, error) {
		f := model.File{SHA256: obj.SHA256, MD5: obj.MD5, Size: obj.Size, Name: obj.Name,
			PieceLength: obj.PieceLength, InfoHash: obj.InfoHash, Added: time.Now().UTC()}
		if cur != nil {
			f = *cur
			f.Origins = slices.Clone(cur.Origins)
		}
		f.Origins = slices.DeleteFunc(f.Origins, func(h model.FileHolder) bool { return h.Node == me.Node })
		f.Origins = append(f.Origins, me)
		return &f, nil
	})
}

// ListFiles lists the catalog.
func (s *Service) ListFiles(ctx context.Context) (*model.FileList, error) {
	files, err := listGlobal(ctx, s, prefixFiles, func(f *model.File, idx uint64) { f.ModifyIndex = idx })
	if err != nil {
		return nil, err
	}
	return &model.FileList{Files: files}, nil
}

// GetFile returns one file with the holders of this node's IDC.
func (s *Service) GetFile(ctx context.Context, sha string) (*model.File, error) {
	if !transfer.ValidSHA256(sha) {
		return nil, badRequest("%q is not a sha256 (64 lowercase hex digits)", sha)
	}
	var f model.File
	ver, err := s.getGlobal(ctx, fileKey(sha), &f)
	if err != nil {
		return nil, err
	}
	if ver == 0 {
		return nil, notFound("no file %s in the content store", sha)
	}
	entries, _, err := s.srv.KVList(ctx, s.idc, fileHoldersPrefix(sha), consensus.QueryOptions{})
	if err == nil {
		for _, e := range entries {
			var h model.FileHolder
			if json.Unmarshal(e.Value, &h) == nil {
				f.Holders = append(f.Holders, h)
			}
		}
	}
	return &f, nil
}

// RemoveFile drops a file from the catalog (pushes can no longer name it)
// and from this node's store; other holders keep their copies until their
// stores are cleaned.
func (s *Service) RemoveFile(ctx context.Context, sha string) error {
	if _, err := s.GetFile(ctx, sha); err != nil {
		return err
	}
	entries, _, err := s.srv.KVList(ctx, state.ScopeGlobal, fileMetaPrefix(sha), consensus.QueryOptions{})
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := s.srv.KVDelete(ctx, state.ScopeGlobal, e.Key, nil); err != nil {
			return err
		}
	}
	if err := s.srv.KVDelete(ctx, state.ScopeGlobal, fileKey(sha), nil); err != nil {
		return err
	}
	if w := s.worker; w != nil && w.content != nil {
		w.unseed(sha)
		if err := w.content.Remove(sha); err != nil && !errors.Is(err, transfer.ErrNotFound) {
			return err
		}
	}
	return nil
}

// --- uploads ---

// Upload is a file being sent by the CLI in chunks.
type Upload struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	Received int64  `json:"received"`
}

var uploadIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func (s *Service) uploadDir() string { return filepath.Join(s.worker.cfg.DataDir, "uploads") }

func (s *Service) uploadPath(id string) (string, error) {
	if !uploadIDRE.MatchString(id) {
		return "", badRequest("upload id %q is malformed", id)
	}
	return filepath.Join(s.uploadDir(), id), nil
}

// uploadLock returns the mutex of one upload.
func (s *Service) uploadLock(id string) *sync.Mutex {
	v, _ := s.uploads.LoadOrStore(id, &sync.Mutex{})
	return v.(*sync.Mutex)
}

// BeginUpload starts an upload of size bytes named name.
func (s *Service) BeginUpload(name string, size int64) (*Upload, error) {
	if s.worker == nil || s.worker.content == nil {
		return nil, p2p.Errorf(p2p.CodeUnavailable, "%s has no content store", s.name)
	}
	if name == "" || filepath.Base(name) != name || name == "." || name == ".." {
		return nil, badRequest("upload name %q must be a plain file name", name)
	}
	if size < 0 {
		return nil, badRequest("upload size %d is negative", size)
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if err := os.MkdirAll(s.uploadDir(), 0o700); err != nil {
		return nil, err
	}
	path, _ := s.uploadPath(id)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	f.Close()
	meta, _ := json.Marshal(Upload{ID: id, Name: name, Size: size})
	if err := os.WriteFile(path+".meta", meta, 0o600); err != nil {
		os.Remove(path)
		return nil, err
	}
	return &Upload{ID: id, Name: name, Size: size}, nil
}

// UploadStatus tells how many bytes of an upload arrived: the offset the
// client resumes from.
func (s *Service) UploadStatus(id string) (*Upload, error) {
	path, err := s.uploadPath(id)
	if err != nil {
		return nil, err
	}
	meta, err := os.ReadFile(path + ".meta")
	if err != nil {
		return nil, notFound("no upload %s on %s (uploads do not survive their commit)", id, s.name)
	}
	var u Upload
	if err := json.Unmarshal(meta, &u); err != nil {
		return nil, fmt.Errorf("upload %s: bad meta: %w", id, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	u.ID, u.Received = id, st.Size()
	return &u, nil
}

// WriteUpload appends body at offset, which must equal the bytes received
// so far (a client that lost an answer asks UploadStatus and resumes).
func (s *Service) WriteUpload(id string, offset int64, body io.Reader) (*Upload, error) {
	// One writer per upload: a client that timed out may retry while its
	// first request is still appending.
	mu := s.uploadLock(id)
	if !mu.TryLock() {
		return nil, conflict("upload %s is being written by another request; ask its status and resume", id)
	}
	defer mu.Unlock()
	u, err := s.UploadStatus(id)
	if err != nil {
		return nil, err
	}
	if offset != u.Received {
		return nil, conflict("upload %s has %d bytes; write at offset %d, not %d", id, u.Received, u.Received, offset)
	}
	path, _ := s.uploadPath(id)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(f, io.LimitReader(body, u.Size-u.Received+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	u.Received += n
	if u.Received > u.Size {
		_ = os.Truncate(path, u.Size)
		return nil, badRequest("upload %s: more than the announced %d bytes", id, u.Size)
	}
	if err != nil {
		// What arrived stays; the client resumes from UploadStatus.
		return nil, fmt.Errorf("upload %s: %w", id, err)
	}
	return u, nil
}

// CommitUpload adds a complete upload to the content store, checking the
// client's SHA-256 when given, and registers it.
func (s *Service) CommitUpload(ctx context.Context, id, wantSHA string) (*model.File, error) {
	u, err := s.UploadStatus(id)
	if err != nil {
		return nil, err
	}
	if u.Received != u.Size {
		return nil, conflict("upload %s has %d of %d bytes", id, u.Received, u.Size)
	}
	mu := s.uploadLock(id)
	mu.Lock()
	defer mu.Unlock()
	path, _ := s.uploadPath(id)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	obj, err := s.worker.content.AddReader(ctx, f, u.Name, u.Size, nil)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", id, err)
	}
	if wantSHA != "" && wantSHA != obj.SHA256 {
		return nil, badRequest("upload %s arrived with sha256 %s, the client sent %s: the bytes changed on the way", id, obj.SHA256, wantSHA)
	}
	os.Remove(path)
	os.Remove(path + ".meta")
	return s.registerFile(ctx, obj)
}
