package transfer

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"sync/atomic"
)

// Piece lengths chosen by PieceLength. anacrolix's own choice grows to 256
// MiB pieces at 500 GB, which makes a hash failure refetch a quarter
// gigabyte and leaves too few pieces in flight for a small swarm to spread.
const (
	pieceLenSmall = 4 << 20  // objects below 4 GiB
	pieceLenMid   = 8 << 20  // objects below 64 GiB
	pieceLenLarge = 16 << 20 // everything larger
	// maxPieceLen is the largest piece length PieceLength returns.
	maxPieceLen = pieceLenLarge
)

// PieceLength returns the torrent piece length used for an object of size
// bytes: 4 MiB below 4 GiB, 8 MiB below 64 GiB, 16 MiB above (a 500 GB
// object has ~30,000 pieces, 600 KB of piece hashes).
func PieceLength(size int64) int64 {
	switch {
	case size < 4<<30:
		return pieceLenSmall
	case size < 64<<30:
		return pieceLenMid
	default:
		return pieceLenLarge
	}
}

// digests is what one pass over an object yields.
type digests struct {
	SHA256 string // hex
	MD5    string // hex
	Pieces []byte // concatenated SHA-1 of each piece (BitTorrent v1)
	// PieceSHA256 is the concatenated SHA-256 of each piece: herd's own
	// end-to-end check of a swarm fetch, piece by piece (see pieceSums).
	PieceSHA256 []byte
	Size        int64
}

// hashBlockSize is the unit handed to the hash workers. Every piece length
// is a multiple of it, so a block never straddles two pieces except at a
// short read.
const hashBlockSize = 1 << 20

// hashBuffers bounds memory: hashBuffers × hashBlockSize in flight.
const hashBuffers = 16

type hashBlock struct {
	buf  []byte
	n    int
	refs atomic.Int32
}

// hashStream reads r to EOF once, optionally copying every byte to w, and
// computes SHA-256, MD5 and the per-piece SHA-1s and SHA-256s. The hashes
// run in their own goroutines over shared read-only blocks, so on enough
// cores the pass runs at the speed of the slowest hash (MD5) rather than
// the sum of all four. progress, if not nil, is called after each block with the
// bytes read so far and total (which may be -1 if unknown). ctx is checked
// between blocks.
func hashStream(ctx context.Context, r io.Reader, w io.Writer, pieceLen, total int64, progress func(done, total int64)) (digests, error) {
	if pieceLen < 0 || pieceLen%hashBlockSize != 0 {
		return digests{}, fmt.Errorf("piece length %d is not a multiple of %d", pieceLen, hashBlockSize)
	}
	nw := 4 // workers: SHA-256, MD5 and, unless pieceLen is 0, piece SHA-1s and SHA-256s
	if pieceLen == 0 {
		nw = 2
	}
	free := make(chan *hashBlock, hashBuffers)
	for range hashBuffers {
		free <- &hashBlock{buf: make([]byte, hashBlockSize)}
	}
	release := func(b *hashBlock) {
		if b.refs.Add(-1) == 0 {
			free <- b
		}
	}

	sha := sha256.New()
	md := md5.New()
	var pieces, pieceSums []byte
	if total > 0 && pieceLen > 0 {
		n := (total + pieceLen - 1) / pieceLen
		pieces, pieceSums = make([]byte, 0, n*sha1.Size), make([]byte, 0, n*sha256.Size)
	}
	chans := make([]chan *hashBlock, nw)
	var wg sync.WaitGroup
	for i := range chans {
		chans[i] = make(chan *hashBlock, hashBuffers)
	}
	whole := func(h hash.Hash, ch <-chan *hashBlock) {
		defer wg.Done()
		for b := range ch {
			h.Write(b.buf[:b.n])
			release(b)
		}
	}
	wg.Add(nw)
	go whole(sha, chans[0])
	go whole(md, chans[1])
	if nw == 4 {
		go hashPieces(&wg, chans[2], pieceLen, sha1.New, &pieces, release)
		go hashPieces(&wg, chans[3], pieceLen, sha256.New, &pieceSums, release)
	}

	var done int64
	var rerr error
	for {
		if err := ctx.Err(); err != nil {
			rerr = err
			break
		}
		b := <-free
		n, err := io.ReadFull(r, b.buf)
		if n > 0 && w != nil {
			if _, werr := w.Write(b.buf[:n]); werr != nil {
				free <- b
				rerr = werr
				break
			}
		}
		if n > 0 {
			b.n = n
			b.refs.Store(int32(nw))
			for _, ch := range chans {
				ch <- b
			}
			done += int64(n)
			if progress != nil {
				progress(done, total)
			}
		} else {
			free <- b
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			rerr = fmt.Errorf("read: %w", err)
			break
		}
	}
	for _, ch := range chans {
		close(ch)
	}
	wg.Wait()
	if rerr != nil {
		return digests{}, rerr
	}
	return digests{
		SHA256:      hex.EncodeToString(sha.Sum(nil)),
		MD5:         hex.EncodeToString(md.Sum(nil)),
		Pieces:      pieces,
		PieceSHA256: pieceSums,
		Size:        done,
	}, nil
}

// ValidSHA256 reports whether s is a SHA-256 in the store's spelling: 64
// lowercase hex digits. Every path built from a hash goes through it.
func ValidSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func checkSHA256(s string) error {
	if !ValidSHA256(s) {
		return fmt.Errorf("%w: %q (want 64 lowercase hex digits)", ErrBadHash, s)
	}
	return nil
}

// hashPieces is hashStream's piece worker: the hash (newHash) of every
// pieceLen bytes, appended to *pieces.
func hashPieces(wg *sync.WaitGroup, ch <-chan *hashBlock, pieceLen int64, newHash func() hash.Hash, pieces *[]byte, release func(*hashBlock)) {
	defer wg.Done()
	ph := newHash()
	var inPiece int64
	for b := range ch {
		p := b.buf[:b.n]
		for len(p) > 0 {
			k := min(int64(len(p)), pieceLen-inPiece)
			ph.Write(p[:k])
			p = p[k:]
			inPiece += k
			if inPiece == pieceLen {
				*pieces = ph.Sum(*pieces)
				ph.Reset()
				inPiece = 0
			}
		}
		release(b)
	}
	if inPiece > 0 {
		*pieces = ph.Sum(*pieces)
	}
}
