package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/herd-io/herd/jobs/model"
)

// This file is the client side of the content store: the file catalog and
// chunked, resumable uploads of a local file to the node the client talks
// to. Pushes themselves are runs (CreateRun with RunRequest.Push).

// DefaultChunkSize is the size of one upload request.
const DefaultChunkSize = 8 << 20

// Upload is the state of an upload on the node: Received is the offset the
// next chunk must be written at.
type Upload struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	Received int64  `json:"received"`
}

func filePath(sha string) string  { return "/v1/files/" + url.PathEscape(sha) }
func uploadPath(id string) string { return "/v1/uploads/" + url.PathEscape(id) }

// Files lists the content store catalog (GET /v1/files).
func (c *Client) Files(ctx context.Context) (*model.FileList, error) {
	var out model.FileList
	return &out, c.get(ctx, "/v1/files", nil, &out)
}

// File reads one catalog entry with the holders in the answering node's
// IDC. An unknown digest is a *RequestError with CodeNotFound.
func (c *Client) File(ctx context.Context, sha string) (*model.File, error) {
	var out model.File
	return &out, c.get(ctx, filePath(sha), nil, &out)
}

// DeleteFile drops a file from the catalog and the answering node's store.
func (c *Client) DeleteFile(ctx context.Context, sha string) error {
	_, err := c.do(ctx, http.MethodDelete, filePath(sha), nil, nil, nil)
	return err
}

// AddNodeFile makes the serving node add a file it has at path (absolute)
// to its content store and the catalog. Combine with On(host) to add a
// file that is on another host. The node hashes the whole file before it
// answers: give ctx time for that.
func (c *Client) AddNodeFile(ctx context.Context, path string) (*model.File, error) {
	var out model.File
	_, err := c.sendJSON(ctx, http.MethodPost, "/v1/files", nil, map[string]string{"path": path}, &out)
	return &out, err
}

// BeginUpload announces an upload of size bytes named name (a plain file
// name) to the node at the client's address.
func (c *Client) BeginUpload(ctx context.Context, name string, size int64) (*Upload, error) {
	var out Upload
	_, err := c.sendJSON(ctx, http.MethodPost, "/v1/uploads", nil, struct {
		Name string `json:"name"`
		Size int64  `json:"size"`
	}{name, size}, &out)
	return &out, err
}

// UploadStatus reads how many bytes of upload id the node holds.
func (c *Client) UploadStatus(ctx context.Context, id string) (*Upload, error) {
	var out Upload
	return &out, c.get(ctx, uploadPath(id), nil, &out)
}

// WriteUpload appends chunk at offset, which must equal the bytes the node
// holds (else HTTP 409: read UploadStatus and resume from Received).
func (c *Client) WriteUpload(ctx context.Context, id string, offset int64, chunk []byte) (*Upload, error) {
	v := url.Values{}
	v.Set("offset", strconv.FormatInt(offset, 10))
	if chunk == nil {
		chunk = []byte{}
	}
	var out Upload
	_, err := c.do(ctx, http.MethodPut, uploadPath(id), v, chunk, &out)
	return &out, err
}

// CommitUpload adds a complete upload to the node's store and the catalog.
// sha256 (hex of the whole file, may be "") lets the node check that the
// bytes arrived unchanged. The node hashes the file before it answers.
func (c *Client) CommitUpload(ctx context.Context, id, sha256 string) (*model.File, error) {
	var out model.File
	_, err := c.sendJSON(ctx, http.MethodPost, uploadPath(id)+"/commit", nil,
		map[string]string{"sha256": sha256}, &out)
	return &out, err
}

// UploadOptions shape UploadFile. Zero values take the defaults.
type UploadOptions struct {
	// ChunkSize is the size of one PUT (default DefaultChunkSize).
	ChunkSize int64
	// Retries is how many failed attempts in a row are tolerated before
	// the upload gives up (default 5). A chunk that made progress resets it.
	Retries int
	// RetryWait is the pause before asking the node where to resume
	// (default 1s, doubling per failure in a row up to 15s).
	RetryWait time.Duration
	// RequestTimeout bounds each begin, status and chunk request (0 = only ctx).
	RequestTimeout time.Duration
	// CommitTimeout bounds the commit, during which the node hashes the
	// whole file (0 = only ctx).
	CommitTimeout time.Duration
	// SHA256, when set, is the digest the caller computed before: the
	// upload fails if the bytes read now differ (the file changed).
	SHA256 string
	// Progress, when set, is called with the bytes the node holds after
	// every chunk and every resume.
	Progress func(received int64)
	// OnRetry, when set, is told about every failure that will be retried.
	OnRetry func(err error, resumeAt int64)
}

func (o *UploadOptions) defaults() {
	if o.ChunkSize <= 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.Retries <= 0 {
		o.Retries = 5
	}
	if o.RetryWait <= 0 {
		o.RetryWait = time.Second
	}
}

// UploadFile sends size bytes of src to the node the client talks to in
// chunks, computing their SHA-256 on the way, and commits them under name.
// A failed chunk is retried from the offset the node reports, so a broken
// connection costs at most one chunk. The node always gets the digest at
// commit, and checks it against what it stored.
func (c *Client) UploadFile(ctx context.Context, src io.ReaderAt, name string, size int64, o UploadOptions) (*model.File, error) {
	o.defaults()
	up := &uploader{c: c, src: src, size: size, o: o, sum: sha256.New()}
	u, err := up.begin(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("starting the upload of %s: %w", name, err)
	}
	up.id = u.ID
	if err := up.send(ctx, u.Received); err != nil {
		return nil, fmt.Errorf("uploading %s (upload %s): %w", name, up.id, err)
	}
	sum := hex.EncodeToString(up.sum.Sum(nil))
	if o.SHA256 != "" && o.SHA256 != sum {
		return nil, fmt.Errorf("uploading %s: the file changed while it was read (sha256 %s before, %s now)", name, o.SHA256, sum)
	}
	cctx, cancel := withTimeout(ctx, o.CommitTimeout)
	defer cancel()
	f, err := c.CommitUpload(cctx, up.id, sum)
	if err != nil {
		return nil, fmt.Errorf("committing upload %s of %s: %w", up.id, name, err)
	}
	return f, nil
}

// uploader is one UploadFile in progress.
type uploader struct {
	c    *Client
	src  io.ReaderAt
	size int64
	o    UploadOptions
	id   string
	sum  hash.Hash
	// hashed is how many leading bytes of src went into sum. Chunks are
	// sent in order and a resume never starts past hashed, so every byte
	// is hashed exactly once.
	hashed int64
}

// begin announces the upload, retrying transient failures.
func (up *uploader) begin(ctx context.Context, name string) (*Upload, error) {
	wait := up.o.RetryWait
	for attempt := 1; ; attempt++ {
		rctx, cancel := withTimeout(ctx, up.o.RequestTimeout)
		u, err := up.c.BeginUpload(rctx, name, up.size)
		cancel()
		if err == nil {
			return u, nil
		}
		if ctx.Err() != nil || !retryable(err) || attempt >= up.o.Retries {
			return nil, err
		}
		if up.o.OnRetry != nil {
			up.o.OnRetry(err, 0)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
		wait = min(2*wait, 15*time.Second)
	}
}

// send writes src from offset at to the end. After a failed chunk it asks
// the node how many bytes it holds and resumes there; it gives up after
// Retries failures in a row without progress.
func (up *uploader) send(ctx context.Context, at int64) error {
	buf := make([]byte, min(up.o.ChunkSize, max(up.size, 1)))
	failures, wait := 0, up.o.RetryWait
	for {
		if up.o.Progress != nil {
			up.o.Progress(at)
		}
		if at >= up.size {
			return nil
		}
		chunk, err := up.read(buf, at)
		if err != nil {
			return err
		}
		rctx, cancel := withTimeout(ctx, up.o.RequestTimeout)
		u, err := up.c.WriteUpload(rctx, up.id, at, chunk)
		cancel()
		if err == nil {
			at, failures, wait = u.Received, 0, up.o.RetryWait
			continue
		}
		failures++
		if ctx.Err() != nil || !retryable(err) || failures >= up.o.Retries {
			return err
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
		wait = min(2*wait, 15*time.Second)
		// Part of the chunk may have arrived: resume where the node is.
		sctx, cancel := withTimeout(ctx, up.o.RequestTimeout)
		st, serr := up.c.UploadStatus(sctx, up.id)
		cancel()
		if serr != nil {
			if !retryable(serr) {
				return fmt.Errorf("%w; then reading the upload's status: %v", err, serr)
			}
			continue // try the same offset again; a mismatch answers 409
		}
		if st.Received > up.hashed || st.Received > up.size {
			return fmt.Errorf("%w; the node now holds %d bytes, more than were sent (%d)", err, st.Received, up.hashed)
		}
		if st.Received > at {
			failures = 0 // what arrived is progress
		}
		at = st.Received
		if up.o.OnRetry != nil {
			up.o.OnRetry(err, at)
		}
	}
}

// read fills the chunk that starts at offset at and adds its bytes not
// hashed yet to the digest.
func (up *uploader) read(buf []byte, at int64) ([]byte, error) {
	if at > up.hashed {
		return nil, fmt.Errorf("internal: resume at %d past the %d bytes read", at, up.hashed)
	}
	n := min(int64(len(buf)), up.size-at)
	chunk := buf[:n]
	if got, err := up.src.ReadAt(chunk, at); int64(got) != n {
		if err == nil || errors.Is(err, io.EOF) {
			err = fmt.Errorf("the file is shorter than %d bytes: did it change?", up.size)
		}
		return nil, fmt.Errorf("reading at offset %d: %w", at, err)
	}
	if end := at + n; end > up.hashed {
		up.sum.Write(chunk[up.hashed-at:])
		up.hashed = end
	}
	return chunk, nil
}

// retryable reports whether a failed upload request may succeed when
// repeated: the node was unreachable or slow, answered 5xx, or reported a
// conflict (an offset that does not match what it holds).
func retryable(err error) bool {
	var ce *ConnectError
	var re *RequestError
	switch {
	case errors.As(err, &ce):
		return true
	case errors.As(err, &re):
		return re.Status >= 500 || re.Status == http.StatusConflict || re.Status == http.StatusTooManyRequests
	case errors.Is(err, context.DeadlineExceeded):
		return true
	}
	// A connection cut mid-request surfaces as a plain transport error.
	return !errors.Is(err, context.Canceled)
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// PushProgress returns the live byte counts of a push's hosts that are
// still fetching (GET /v1/runs/{id}/progress).
func (c *Client) PushProgress(ctx context.Context, idc, id string) (*model.PushProgress, error) {
	q := url.Values{}
	if idc != "" {
		q.Set("idc", idc)
	}
	var out model.PushProgress
	if err := c.get(ctx, "/v1/runs/"+url.PathEscape(id)+"/progress", q, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
