package executor

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// expectSummary computes the summary of all by definition, independent of
// how Capture gets there incrementally.
func expectSummary(all []byte, lim CaptureLimits) OutputSummary {
	sum := sha256.Sum256(all)
	head := all[:min(len(all), lim.HeadBytes)]
	rest := all[len(head):]
	tail := rest[len(rest)-min(len(rest), lim.TailBytes):]
	return OutputSummary{
		Bytes:     int64(len(all)),
		Stored:    min(int64(len(all)), lim.MaxStored),
		SHA256:    hex.EncodeToString(sum[:]),
		Head:      head,
		Tail:      tail,
		Truncated: len(all) > len(head)+len(tail),
	}
}

func checkSummary(t *testing.T, got, want OutputSummary) {
	t.Helper()
	if got.Bytes != want.Bytes || got.Stored != want.Stored || got.SHA256 != want.SHA256 || got.Truncated != want.Truncated {
		t.Errorf("summary = {bytes %d stored %d sha %s trunc %v}, want {bytes %d stored %d sha %s trunc %v}",
			got.Bytes, got.Stored, got.SHA256, got.Truncated, want.Bytes, want.Stored, want.SHA256, want.Truncated)
	}
	if !bytes.Equal(got.Head, want.Head) {
		t.Errorf("head = %q, want %q", got.Head, want.Head)
	}
	if !bytes.Equal(got.Tail, want.Tail) {
		t.Errorf("tail = %q, want %q", got.Tail, want.Tail)
	}
}

func TestCaptureMatchesDefinition(t *testing.T) {
	lim := CaptureLimits{HeadBytes: 10, TailBytes: 7, MaxStored: 25}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 9, 10, 11, 16, 17, 18, 25, 26, 100, 1000} {
		for _, chunk := range []int{1, 3, 7, 8, 64, 4096} {
			all := make([]byte, size)
			for i := range all {
				all[i] = byte(rng.IntN(256)) // non-UTF-8 on purpose
			}
			path := filepath.Join(t.TempDir(), "out")
			c, err := NewCapture(path, lim)
			if err != nil {
				t.Fatal(err)
			}
			for p := all; len(p) > 0; {
				n := min(len(p), 1+rng.IntN(chunk))
				if m, err := c.Write(p[:n]); m != n || err != nil {
					t.Fatalf("Write = %d, %v", m, err)
				}
				p = p[n:]
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			want := expectSummary(all, lim)
			checkSummary(t, c.Summary(), want)
			stored, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(stored, all[:want.Stored]) {
				t.Errorf("size %d chunk %d: stored file differs from the first %d bytes", size, chunk, want.Stored)
			}
		}
	}
}

func TestCaptureDefaultsAndMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	if err := os.WriteFile(path, []byte("old content"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := NewCapture(path, CaptureLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if c.lim != DefaultCaptureLimits() {
		t.Errorf("zero limits = %+v, want defaults %+v", c.lim, DefaultCaptureLimits())
	}
	if d := DefaultCaptureLimits(); d.HeadBytes != 32<<10 || d.TailBytes != 32<<10 || d.MaxStored != 64<<20 {
		t.Errorf("DefaultCaptureLimits = %+v", d)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != 0 {
		t.Errorf("output file mode %v size %d, want 0600 and truncated", fi.Mode().Perm(), fi.Size())
	}
	if _, err := c.Write([]byte("late")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close = %v, want os.ErrClosed", err)
	}
	if s := c.Summary(); s.Bytes != 0 || s.Head == nil || s.Tail == nil {
		t.Errorf("empty summary = %+v, want zero bytes and non-nil head/tail", s)
	}
}

func TestCaptureRejectsBadInput(t *testing.T) {
	if _, err := NewCapture(filepath.Join(t.TempDir(), "out"), CaptureLimits{HeadBytes: -1}); err == nil {
		t.Error("negative HeadBytes accepted")
	}
	if _, err := NewCapture(filepath.Join(t.TempDir(), "missing", "out"), CaptureLimits{}); err == nil {
		t.Error("output path in a missing directory accepted")
	}
}

// Two writers (as with separate stdout/stderr copiers) must not lose or tear
// bytes: every line arrives whole and the count and hash cover all of them.
func TestCaptureConcurrentWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	c, err := NewCapture(path, CaptureLimits{HeadBytes: 64, TailBytes: 64, MaxStored: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	const perWriter = 2000
	lines := [][]byte{[]byte("stdout line\n"), []byte("stderr-line\n")}
	var wg sync.WaitGroup
	for _, line := range lines {
		wg.Go(func() {
			for range perWriter {
				c.Write(line)
			}
		})
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	stored, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := int64(len(stored)), int64(2*perWriter*12); got != want || c.Summary().Bytes != want {
		t.Fatalf("stored %d bytes, summary %d, want %d", got, c.Summary().Bytes, want)
	}
	for _, l := range bytes.SplitAfter(stored, []byte("\n")) {
		if len(l) > 0 && !bytes.Equal(l, lines[0]) && !bytes.Equal(l, lines[1]) {
			t.Fatalf("torn line %q", l)
		}
	}
	checkSummary(t, c.Summary(), expectSummary(stored, c.lim))
}

func TestTruncationMarker(t *testing.T) {
	if got, want := TruncationMarker(12345), "\n[... herd: 12345 bytes elided ...]\n"; got != want {
		t.Errorf("TruncationMarker = %q, want %q", got, want)
	}
}
