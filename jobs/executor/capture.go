package executor

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"sync"
)

// CaptureLimits bounds what a Capture keeps. A zero field takes its default
// (see DefaultCaptureLimits); negative fields are rejected.
type CaptureLimits struct {
	// HeadBytes is how many leading bytes are kept in memory; default 32 KiB.
	HeadBytes int
	// TailBytes is how many trailing bytes are kept in memory; default 32 KiB.
	TailBytes int
	// MaxStored caps the output file; default 64 MiB. Past it the file stops
	// growing, but counting, hashing and the tail go on.
	MaxStored int64
}

// DefaultCaptureLimits returns the limits the control group's run summary is
// sized for: 32 KiB of head and tail, 64 MiB on disk.
func DefaultCaptureLimits() CaptureLimits {
	return CaptureLimits{HeadBytes: 32 << 10, TailBytes: 32 << 10, MaxStored: 64 << 20}
}

func (l CaptureLimits) withDefaults() (CaptureLimits, error) {
	if l.HeadBytes < 0 || l.TailBytes < 0 || l.MaxStored < 0 {
		return l, fmt.Errorf("capture limits must not be negative: %+v", l)
	}
	d := DefaultCaptureLimits()
	if l.HeadBytes == 0 {
		l.HeadBytes = d.HeadBytes
	}
	if l.TailBytes == 0 {
		l.TailBytes = d.TailBytes
	}
	if l.MaxStored == 0 {
		l.MaxStored = d.MaxStored
	}
	return l, nil
}

// TruncationMarker is what a renderer prints between Head and Tail when an
// OutputSummary is Truncated.
func TruncationMarker(elided int64) string {
	return fmt.Sprintf("\n[... herd: %d bytes elided ...]\n", elided)
}

// Capture is an io.Writer that stores output to a file (0600, capped at
// MaxStored), keeps a head and a tail in memory and hashes everything.
//
// Writes go straight to the file with no buffering, so a reader that opens the
// path can follow it while it grows (Summary().Stored says how far it is
// valid). Write is safe for concurrent use, e.g. by separate stdout and stderr
// copiers; the local executor uses a single pipe for both instead, so the
// interleaving is exactly the order the script wrote in.
type Capture struct {
	lim CaptureLimits

	mu       sync.Mutex
	f        *os.File
	closed   bool
	writeErr error // first file error; storing stops there, counting does not
	bytes    int64
	stored   int64
	hash     hash.Hash
	head     []byte
	tail     ring
}

// NewCapture creates (or truncates) the output file at path with mode 0600:
// output can hold secrets and is read back only through the agent.
func NewCapture(path string, lim CaptureLimits) (*Capture, error) {
	lim, err := lim.withDefaults()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create output file: %w", err)
	}
	// OpenFile keeps the mode of an existing file; force it.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("chmod output file: %w", err)
	}
	return &Capture{
		lim:  lim,
		f:    f,
		hash: sha256.New(),
		head: make([]byte, 0, min(lim.HeadBytes, 4096)),
		tail: ring{buf: make([]byte, lim.TailBytes)},
	}, nil
}

// Write records p. It never fails the script: a full disk or the MaxStored cap
// only stops the file from growing (the first file error is returned by
// Close). Writing after Close is a programming error and returns
// os.ErrClosed.
func (c *Capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, fmt.Errorf("write output: %w", os.ErrClosed)
	}
	c.bytes += int64(len(p))
	c.hash.Write(p)

	if room := c.lim.MaxStored - c.stored; room > 0 && c.writeErr == nil {
		chunk := p
		if int64(len(chunk)) > room {
			chunk = chunk[:room]
		}
		n, err := c.f.Write(chunk)
		c.stored += int64(n)
		if err != nil {
			c.writeErr = fmt.Errorf("write output file: %w", err)
		}
	}

	rest := p
	if n := c.lim.HeadBytes - len(c.head); n > 0 {
		n = min(n, len(rest))
		c.head = append(c.head, rest[:n]...)
		rest = rest[n:]
	}
	c.tail.write(rest)
	return len(p), nil
}

// Close syncs and closes the file; after it, Summary is final. It returns the
// first error met while storing, if any, so the caller can tell the operator
// the stored copy is short for a reason other than the cap.
func (c *Capture) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	if c.writeErr != nil {
		errs = append(errs, c.writeErr)
	}
	if err := c.f.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("sync output file: %w", err))
	}
	if err := c.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close output file: %w", err))
	}
	return errors.Join(errs...)
}

// Summary returns the output summary so far. The slices are copies.
func (c *Capture) Summary() OutputSummary {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := OutputSummary{
		Bytes:  c.bytes,
		Stored: c.stored,
		SHA256: hex.EncodeToString(c.hash.Sum(nil)),
		Head:   append([]byte{}, c.head...),
		Tail:   c.tail.bytes(),
	}
	s.Truncated = s.Bytes > int64(len(s.Head)+len(s.Tail))
	return s
}

// ring keeps the last len(buf) bytes written to it.
type ring struct {
	buf  []byte
	next int  // where the next byte goes
	full bool // buf has wrapped at least once
}

func (r *ring) write(p []byte) {
	size := len(r.buf)
	if size == 0 || len(p) == 0 {
		return
	}
	if len(p) >= size {
		copy(r.buf, p[len(p)-size:])
		r.next, r.full = 0, true
		return
	}
	n := copy(r.buf[r.next:], p)
	if n < len(p) {
		copy(r.buf, p[n:])
		r.full = true
	}
	r.next = (r.next + len(p)) % size
	if r.next == 0 {
		r.full = true
	}
}

func (r *ring) bytes() []byte {
	if !r.full {
		return append([]byte{}, r.buf[:r.next]...)
	}
	out := make([]byte, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}
