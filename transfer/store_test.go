package transfer

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPieceLength(t *testing.T) {
	for _, tc := range []struct {
		size, want int64
	}{
		{0, 4 << 20}, {1, 4 << 20}, {4<<30 - 1, 4 << 20}, {4 << 30, 8 << 20},
		{64<<30 - 1, 8 << 20}, {64 << 30, 16 << 20}, {500e9, 16 << 20},
	} {
		if got := PieceLength(tc.size); got != tc.want {
			t.Errorf("PieceLength(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

func TestHashStreamPieces(t *testing.T) {
	// Sizes around piece and block boundaries, including empty.
	pl := int64(2 << 20)
	for _, n := range []int{0, 1, hashBlockSize - 1, hashBlockSize, int(pl), int(pl) + 1, 3*int(pl) + 12345} {
		b := randomBytes(n, uint64(n))
		var copied bytes.Buffer
		d, err := hashStream(context.Background(), bytes.NewReader(b), &copied, pl, int64(n), nil)
		if err != nil {
			t.Fatal(err)
		}
		sha, md := sums(b)
		if d.SHA256 != sha || d.MD5 != md || d.Size != int64(n) || !bytes.Equal(copied.Bytes(), b) {
			t.Fatalf("n=%d: digests %+v wrong", n, d)
		}
		var want, wantSums []byte
		for off := 0; off < n; off += int(pl) {
			s := sha1.Sum(b[off:min(n, off+int(pl))])
			want = append(want, s[:]...)
			s2 := sha256.Sum256(b[off:min(n, off+int(pl))])
			wantSums = append(wantSums, s2[:]...)
		}
		if !bytes.Equal(d.Pieces, want) {
			t.Fatalf("n=%d: piece hashes differ", n)
		}
		if !bytes.Equal(d.PieceSHA256, wantSums) {
			t.Fatalf("n=%d: piece SHA-256s differ", n)
		}
	}
}

func TestStoreAddGetListRemove(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	data := randomBytes(5<<20+7, 1)
	sha, md := sums(data)
	src := writeTemp(t, "image.bin", data)

	var last, total int64
	obj, err := s.AddFile(ctx, src, func(d, tot int64) { last, total = d, tot })
	if err != nil {
		t.Fatalf("AddFile: %v", err)
	}
	if obj.SHA256 != sha || obj.MD5 != md || obj.Size != int64(len(data)) || obj.Name != "image.bin" ||
		obj.PieceLength != 4<<20 || len(obj.InfoHash) != 40 {
		t.Fatalf("object = %+v", obj)
	}
	if last != int64(len(data)) || total != int64(len(data)) {
		t.Fatalf("progress ended at %d/%d", last, total)
	}
	fileEquals(t, s.Path(sha), data)
	if fi, _ := os.Stat(s.Path(sha)); fi.Mode().Perm() != 0o444 {
		t.Fatalf("object mode %v, want read-only", fi.Mode())
	}

	got, ok, err := s.Get(sha)
	if err != nil || !ok || got != obj {
		t.Fatalf("Get = %+v %v %v", got, ok, err)
	}
	mi, err := s.MetaInfo(sha)
	if err != nil {
		t.Fatal(err)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		t.Fatal(err)
	}
	if mi.HashInfoBytes().HexString() != obj.InfoHash || info.Length != obj.Size || info.NumPieces() != 2 ||
		info.Private == nil || !*info.Private || info.Name != sha {
		t.Fatalf("metainfo wrong: %+v", info)
	}

	// The same bytes under another name: the existing object.
	again := addBytes(t, s, "other-name", data)
	if again != obj {
		t.Fatalf("re-add = %+v, want %+v", again, obj)
	}
	small := addBytes(t, s, "small", []byte("hello"))
	list, err := s.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %v %v", list, err)
	}

	// Reopen: objects survive, tmp is cleaned.
	os.WriteFile(filepath.Join(s.Dir(), "tmp", "upload-junk"), []byte("x"), 0o644)
	s2, err := OpenStore(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(ents) != 0 {
		t.Fatalf("tmp not cleaned: %v", ents)
	}
	if _, ok, _ := s2.Get(small.SHA256); !ok {
		t.Fatal("object lost on reopen")
	}

	if err := s2.Remove(small.SHA256); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s2.Get(small.SHA256); ok {
		t.Fatal("removed object still there")
	}
	if err := s2.Remove(small.SHA256); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove = %v, want ErrNotFound", err)
	}
}

func TestStoreRejectsBadInput(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for _, bad := range []string{"", "../../etc/passwd", strings.Repeat("A", 64), strings.Repeat("a", 63), strings.Repeat("g", 64)} {
		if _, _, err := s.Get(bad); !errors.Is(err, ErrBadHash) {
			t.Errorf("Get(%q) = %v, want ErrBadHash", bad, err)
		}
		if p := s.Path(bad); p != "" {
			t.Errorf("Path(%q) = %q", bad, p)
		}
		if err := s.Remove(bad); !errors.Is(err, ErrBadHash) {
			t.Errorf("Remove(%q) = %v", bad, err)
		}
		if _, err := s.MetaInfo(bad); !errors.Is(err, ErrBadHash) {
			t.Errorf("MetaInfo(%q) = %v", bad, err)
		}
	}
	// Short and long streams are refused and leave nothing behind.
	if _, err := s.AddReader(ctx, strings.NewReader("abc"), "f", 4, nil); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("short stream: %v", err)
	}
	if _, err := s.AddReader(ctx, strings.NewReader("abcde"), "f", 4, nil); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("long stream: %v", err)
	}
	for _, name := range []string{"", "..", "a/b"} {
		if _, err := s.AddReader(ctx, strings.NewReader("abc"), name, 3, nil); err == nil {
			t.Fatalf("name %q accepted", name)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp")); len(ents) != 0 {
		t.Fatalf("temp files left: %v", ents)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Fatalf("objects after failed adds: %v", list)
	}
	// A cancelled add fails with the context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.AddReader(cctx, bytes.NewReader(make([]byte, 1<<20)), "f", 1<<20, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled add: %v", err)
	}
	if _, err := s.AddFile(ctx, t.TempDir(), nil); err == nil {
		t.Fatal("AddFile of a directory succeeded")
	}
}
