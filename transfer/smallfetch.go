package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/herd-io/herd/mesh/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Small-file transfer over node streams.
const (
	// ContentProtocol serves byte ranges of store objects.
	ContentProtocol protocol.ID = "/herd/content/1"
	// SmallFileLimit: objects below it go over node streams, not the swarm.
	SmallFileLimit = 4 << 20
	// MaxRangeLength bounds one request. The reply is JSON, so 1 MiB of
	// data becomes ~1.4 MB of base64: well inside p2p's 4 MiB message limit.
	MaxRangeLength = 1 << 20
	// smallFetchParallel is how many ranges are in flight at once.
	smallFetchParallel = 4
	// rangeAttempts bounds the tries of one range whose stream broke
	// (a reset connection under load), so one reset does not fail a
	// central push of a large file.
	rangeAttempts = 4
)

// fetchRange asks for one range, again after a transient failure
// (p2p.CodeUnavailable: reset or closed streams and connections).
func fetchRange(ctx context.Context, h *p2p.Host, from peer.ID, addr string, req rangeRequest) (rangeResponse, error) {
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		resp, err := p2p.CallJSON[rangeRequest, rangeResponse](ctx, h, from, addr, ContentProtocol, req)
		if err == nil || attempt == rangeAttempts || p2p.CodeOf(err) != p2p.CodeUnavailable {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return resp, err
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// rangeRequest asks for Length bytes of object SHA256 from Offset.
type rangeRequest struct {
	SHA256 string `json:"sha256"`
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
}

// rangeResponse carries the bytes (base64 in JSON) and the object's size.
type rangeResponse struct {
	Data []byte `json:"data"`
	Size int64  `json:"size"`
}

// ServeContent registers the ContentProtocol handler on h, serving ranges
// of st's complete objects to the peers h admits.
func ServeContent(h *p2p.Host, st *Store) {
	p2p.HandleJSON(h, ContentProtocol, func(ctx context.Context, _ peer.ID, req rangeRequest) (rangeResponse, error) {
		if !ValidSHA256(req.SHA256) {
			return rangeResponse{}, p2p.Errorf(p2p.CodeBadRequest, "invalid sha256 %q", req.SHA256)
		}
		if req.Offset < 0 || req.Length <= 0 || req.Length > MaxRangeLength {
			return rangeResponse{}, p2p.Errorf(p2p.CodeBadRequest, "range %d+%d outside 0..%d bytes", req.Offset, req.Length, MaxRangeLength)
		}
		obj, ok, err := st.Get(req.SHA256)
		if err != nil {
			return rangeResponse{}, err
		}
		if !ok {
			return rangeResponse{}, p2p.Errorf(p2p.CodeNotFound, "object %s not here", req.SHA256)
		}
		if req.Offset > obj.Size {
			return rangeResponse{}, p2p.Errorf(p2p.CodeBadRequest, "offset %d beyond size %d", req.Offset, obj.Size)
		}
		f, err := os.Open(st.Path(req.SHA256))
		if err != nil {
			return rangeResponse{}, err
		}
		defer f.Close()
		buf := make([]byte, min(req.Length, obj.Size-req.Offset))
		if _, err := f.ReadAt(buf, req.Offset); err != nil && !errors.Is(err, io.EOF) {
			return rangeResponse{}, err
		}
		return rangeResponse{Data: buf, Size: obj.Size}, nil
	})
}

// FetchSmall copies obj from the node (id at addr, "" if h already knows
// it) over ContentProtocol into st, a few ranges in parallel, and verifies
// SHA-256, MD5 and the info hash before committing. It returns the stored
// object (at once if st already has it).
func FetchSmall(ctx context.Context, h *p2p.Host, st *Store, from peer.ID, addr string, obj Object, progress func(done, total int64)) (Object, error) {
	if err := checkObject(obj); err != nil {
		return Object{}, err
	}
	if err := checkName(obj.Name); err != nil {
		return Object{}, err
	}
	if have, ok, err := st.Get(obj.SHA256); err != nil || ok {
		return have, err
	}
	tmp, err := os.CreateTemp(st.tmpDir(), "small-*")
	if err != nil {
		return Object{}, fmt.Errorf("transfer: fetch %s: %w", obj.SHA256, err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	if err := tmp.Truncate(obj.Size); err != nil {
		return Object{}, fmt.Errorf("transfer: fetch %s: %w", obj.SHA256, err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		n   int64
		err error
	}
	chunks := (obj.Size + MaxRangeLength - 1) / MaxRangeLength
	offsets := make(chan int64)
	// Buffered for every chunk: after a failure the workers never block.
	results := make(chan result, chunks)
	for range smallFetchParallel {
		go func() {
			for off := range offsets {
				n := min(MaxRangeLength, obj.Size-off)
				resp, err := fetchRange(ctx, h, from, addr, rangeRequest{SHA256: obj.SHA256, Offset: off, Length: n})
				switch {
				case err != nil:
				case resp.Size != obj.Size || int64(len(resp.Data)) != n:
					err = fmt.Errorf("%w: peer has %d bytes and sent %d at %d, want %d of %d",
						ErrSizeMismatch, resp.Size, len(resp.Data), off, n, obj.Size)
				default:
					_, err = tmp.WriteAt(resp.Data, off)
				}
				results <- result{n, err}
			}
		}()
	}
	go func() {
		defer close(offsets)
		for off := int64(0); off < obj.Size; off += MaxRangeLength {
			select {
			case offsets <- off:
			case <-ctx.Done():
				return
			}
		}
	}()
	var done int64
	var firstErr error
	for range chunks {
		r := <-results
		if r.err != nil {
			firstErr = r.err
			cancel()
			break
		}
		done += r.n
		if progress != nil {
			progress(done, obj.Size)
		}
	}
	if firstErr != nil {
		return Object{}, fmt.Errorf("transfer: fetch %s from %s: %w", obj.SHA256, from, firstErr)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return Object{}, err
	}
	d, err := hashStream(ctx, tmp, nil, PieceLength(obj.Size), obj.Size, nil)
	if err != nil {
		return Object{}, fmt.Errorf("transfer: fetch %s: verify: %w", obj.SHA256, err)
	}
	if d.SHA256 != obj.SHA256 || d.MD5 != obj.MD5 || d.Size != obj.Size {
		return Object{}, fmt.Errorf("transfer: fetch %s from %s: %w: got sha256 %s md5 %s", obj.SHA256, from, ErrDigestMismatch, d.SHA256, d.MD5)
	}
	got, err := st.commitNew(tmp, d, obj.Name)
	if err != nil {
		return Object{}, err
	}
	if obj.InfoHash != "" && got.InfoHash != obj.InfoHash {
		return got, fmt.Errorf("transfer: fetch %s: info hash %s differs from the origin's %s", obj.SHA256, got.InfoHash, obj.InfoHash)
	}
	return got, nil
}
