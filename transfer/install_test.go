package transfer

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestValidateDest(t *testing.T) {
	for _, tc := range []struct {
		dest string
		ok   bool
	}{
		{"/etc/app.conf", true},
		{"/srv/images/", false}, // not clean
		{"relative/file", false},
		{"./file", false},
		{"/a/../etc/passwd", false},
		{"/a/..", false},
		{"/a//b", false},
		{"/a/./b", false},
		{"/", false},
		{"", false},
		{"/a/b..c", true}, // ".." only as a whole element
	} {
		err := ValidateDest(tc.dest)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateDest(%q) = %v, want ok=%v", tc.dest, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadDest) {
			t.Errorf("ValidateDest(%q) = %v, not ErrBadDest", tc.dest, err)
		}
	}
}

func TestResolveDest(t *testing.T) {
	dir := t.TempDir()
	if got, err := ResolveDest(dir, "img.bin"); err != nil || got != filepath.Join(dir, "img.bin") {
		t.Fatalf("dir dest: %q %v", got, err)
	}
	f := filepath.Join(dir, "file")
	if got, err := ResolveDest(f, "img.bin"); err != nil || got != f {
		t.Fatalf("file dest: %q %v", got, err)
	}
	if _, err := ResolveDest(dir, "../x"); err == nil {
		t.Fatal("bad name accepted")
	}
}

func TestParseModeOwner(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want os.FileMode
		ok   bool
	}{
		{"0644", 0o644, true}, {"755", 0o755, true}, {"0", 0, true},
		{"4755", 0o755 | os.ModeSetuid, true}, {"07777", 0o777 | os.ModeSetuid | os.ModeSetgid | os.ModeSticky, true},
		{"10000", 0, false}, {"0888", 0, false}, {"rw-r--r--", 0, false}, {"", 0, false}, {"-1", 0, false},
	} {
		got, err := ParseMode(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseMode(%q) = %v, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrBadMode) {
			t.Errorf("ParseMode(%q) error %v is not ErrBadMode", tc.in, err)
		}
	}
	if uid, gid, err := ParseOwner("root:root"); err != nil || uid != 0 || gid != 0 {
		t.Fatalf("root:root = %d %d %v", uid, gid, err)
	}
	if uid, gid, err := ParseOwner("123"); err != nil || uid != 123 || gid != -1 {
		t.Fatalf("123 = %d %d %v", uid, gid, err)
	}
	if uid, gid, err := ParseOwner(""); err != nil || uid != -1 || gid != -1 {
		t.Fatalf("empty = %d %d %v", uid, gid, err)
	}
	_, _, err := ParseOwner("nobody2")
	if !errors.Is(err, ErrUnknownOwner) || err.Error() != `unknown user "nobody2"` {
		t.Fatalf("nobody2: %v", err)
	}
	if _, _, err := ParseOwner("root:nogroup2"); !errors.Is(err, ErrUnknownOwner) || !strings.Contains(err.Error(), `unknown group "nogroup2"`) {
		t.Fatalf("nogroup2: %v", err)
	}
}

func TestCheckIdentical(t *testing.T) {
	data := randomBytes(100_000, 3)
	_, md := sums(data)
	p := writeTemp(t, "f", data)
	for _, tc := range []struct {
		size int64
		md5  string
		want bool
	}{
		{int64(len(data)), md, true},
		{int64(len(data)), strings.ToUpper(md), true},
		{int64(len(data)) + 1, md, false},
		{int64(len(data)), "00000000000000000000000000000000", false},
	} {
		if got, err := CheckIdentical(p, tc.size, tc.md5); err != nil || got != tc.want {
			t.Errorf("CheckIdentical(%d, %s) = %v %v", tc.size, tc.md5, got, err)
		}
	}
	if got, err := CheckIdentical(filepath.Join(t.TempDir(), "missing"), 1, md); err != nil || got {
		t.Fatalf("missing: %v %v", got, err)
	}
}

func TestInstall(t *testing.T) {
	ctx := context.Background()
	data := randomBytes(300_000, 4)
	src := writeTemp(t, "src", data)
	dir := t.TempDir()

	dest := filepath.Join(dir, "app.bin")
	if err := Install(ctx, src, dest, InstallOptions{Mode: 0o640}); err != nil {
		t.Fatal(err)
	}
	fileEquals(t, dest, data)
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// Replace, default mode, owner by name (we run as root in CI; skip the
	// chown assertion otherwise).
	owner := ""
	if os.Geteuid() == 0 {
		owner = "nobody:nogroup"
		if _, _, err := ParseOwner(owner); err != nil {
			owner = "65534:65534"
		}
	}
	if err := Install(ctx, src, dest, InstallOptions{Owner: owner}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(dest)
	if fi.Mode().Perm() != 0o644 {
		t.Fatalf("default mode %v", fi.Mode())
	}
	if owner != "" {
		uid, gid, _ := ParseOwner(owner)
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != uid || int(st.Gid) != gid {
			t.Fatalf("owner %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
		}
	}

	// Missing parent: error without Mkdir, created with it.
	deep := filepath.Join(dir, "a", "b", "c.bin")
	if err := Install(ctx, src, deep, InstallOptions{}); !errors.Is(err, ErrMissingParent) || !strings.Contains(err.Error(), "--mkdir") {
		t.Fatalf("missing parent: %v", err)
	}
	if err := Install(ctx, src, deep, InstallOptions{Mkdir: true}); err != nil {
		t.Fatal(err)
	}
	fileEquals(t, deep, data)

	// A directory at DEST is not replaced.
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	if err := Install(ctx, src, sub, InstallOptions{}); !errors.Is(err, ErrIsDir) {
		t.Fatalf("dir dest: %v", err)
	}
	// Unknown owner: nothing written.
	if err := Install(ctx, src, filepath.Join(dir, "x"), InstallOptions{Owner: "nobody2"}); !errors.Is(err, ErrUnknownOwner) {
		t.Fatalf("unknown owner: %v", err)
	}
	if err := Install(ctx, src, "rel/x", InstallOptions{}); !errors.Is(err, ErrBadDest) {
		t.Fatalf("relative: %v", err)
	}
	if err := Install(ctx, filepath.Join(dir, "nosuch"), filepath.Join(dir, "y"), InstallOptions{}); err == nil {
		t.Fatal("missing source accepted")
	}
	assertNoTemps(t, dir)
}

func TestInstallPermissionDenied(t *testing.T) {
	dir := t.TempDir()
	ro := filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o555)
	src := writeTemp(t, "src", []byte("data"))
	if os.Geteuid() != 0 {
		err := Install(context.Background(), src, filepath.Join(ro, "f"), InstallOptions{})
		if !errors.Is(err, ErrPermission) {
			t.Fatalf("err = %v, want ErrPermission", err)
		}
		assertNoTemps(t, dir)
		return
	}
	// Root ignores directory modes: check the classification instead.
	err := installErr(&os.PathError{Op: "open", Path: ro, Err: syscall.EACCES}, filepath.Join(ro, "f"), 4, -1, "create temporary file in %s", ro)
	if !errors.Is(err, ErrPermission) || !errors.Is(err, syscall.EACCES) || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("classified %v", err)
	}
}

func TestInstallFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })

	ctx := context.Background()
	old := []byte("the old file, which must survive")
	dest := filepath.Join(dir, "app.bin")
	if err := os.WriteFile(dest, old, 0o644); err != nil {
		t.Fatal(err)
	}
	// Too big for the filesystem at all: refused before writing.
	big := writeTemp(t, "big", randomBytes(2<<20, 5))
	err := Install(ctx, big, dest, InstallOptions{})
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "no space left on device writing "+dest) ||
		!strings.Contains(err.Error(), "needs 2 MB") {
		t.Fatalf("err = %v", err)
	}
	fileEquals(t, dest, old)
	assertNoTemps(t, dir)

	// ENOSPC in the middle of the write (the pre-flight check off): the
	// same clear error, the temporary file removed, the old file intact.
	preflightSpace = false
	defer func() { preflightSpace = true }()
	err = Install(ctx, big, dest, InstallOptions{})
	if !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) ||
		!strings.Contains(err.Error(), "no space left on device writing "+dest) ||
		!strings.Contains(err.Error(), "needs 2 MB, 1 MB free") {
		t.Fatalf("mid-write err = %v", err)
	}
	t.Logf("mid-write: %v", err)
	fileEquals(t, dest, old)
	assertNoTemps(t, dir)
}

func assertNoTemps(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".herd-tmp-") {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}

// With InstallOptions.MD5 set, a source whose bytes do not match (a store
// copy damaged on disk) is refused and DEST keeps its old content.
func TestInstallVerifiesMD5(t *testing.T) {
	dir := t.TempDir()
	src, dest := filepath.Join(dir, "src"), filepath.Join(dir, "dest")
	if err := os.WriteFile(src, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dest, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	const helloMD5 = "b1946ac92492d2347c6235b4d2611184"
	err := Install(context.Background(), src, dest, InstallOptions{MD5: strings.Repeat("0", 32)})
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Install with a wrong MD5: %v, want ErrDigestMismatch", err)
	}
	if b, _ := os.ReadFile(dest); string(b) != "old" {
		t.Fatalf("dest changed to %q", b)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".herd-tmp-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if err := Install(context.Background(), src, dest, InstallOptions{MD5: helloMD5}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dest); string(b) != "hello\n" {
		t.Fatalf("dest is %q", b)
	}
}

// A Staging filled in part by CopyRange (a swarm fetch's verified pieces)
// is completed by Commit from the source; a second install of the same
// DEST at the same time stages a file of its own; Abort leaves nothing.
func TestStaging(t *testing.T) {
	ctx := context.Background()
	data := randomBytes(1<<20+123, 7)
	srcPath := writeTemp(t, "src", data)
	src, err := os.Open(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir := t.TempDir()
	dest := filepath.Join(dir, "app.bin")

	a, err := Stage(dest, int64(len(data)), InstallOptions{Mode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Stage(dest, int64(len(data)), InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.tmp.Name() == b.tmp.Name() {
		t.Fatalf("two installs of %s share %s", dest, a.tmp.Name())
	}
	// Pieces out of order, one twice, a gap at the start, the middle and the end.
	for _, r := range [][2]int64{{512 << 10, 256 << 10}, {100, 1000}, {512 << 10, 256 << 10}, {5000, 70000}} {
		if err := a.CopyRange(src, r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.CopyRange(src, int64(len(data))-10, 11); err == nil {
		t.Fatal("a range past the end was accepted")
	}
	want := [][2]int64{{0, 100}, {1100, 3900}, {75000, 512<<10 - 75000}, {768 << 10, int64(len(data)) - 768<<10}}
	if got := a.gaps(); !slices.Equal(got, want) {
		t.Fatalf("gaps %v, want %v", got, want)
	}
	b.Abort()
	if err := a.Commit(ctx, srcPath); err != nil {
		t.Fatal(err)
	}
	fileEquals(t, dest, data)
	if fi, _ := os.Stat(dest); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if err := a.Commit(ctx, srcPath); err == nil {
		t.Fatal("a second Commit was accepted")
	}
	assertNoTemps(t, dir)

	// A source of another size than staged is refused; DEST stays.
	c, err := Stage(dest, 10, InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(ctx, srcPath); err == nil || !strings.Contains(err.Error(), "were staged") {
		t.Fatalf("size mismatch: %v", err)
	}
	fileEquals(t, dest, data)
	assertNoTemps(t, dir)

	// A symlink where the staging file goes is left alone.
	victim := writeTemp(t, "victim", []byte("not yours"))
	if err := os.Symlink(victim, filepath.Join(dir, ".herd-tmp-linked")); err != nil {
		t.Fatal(err)
	}
	l, err := Stage(filepath.Join(dir, "linked"), int64(len(data)), InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Commit(ctx, srcPath); err != nil {
		t.Fatal(err)
	}
	fileEquals(t, filepath.Join(dir, "linked"), data)
	fileEquals(t, victim, []byte("not yours"))
	os.Remove(filepath.Join(dir, ".herd-tmp-linked"))
	assertNoTemps(t, dir)

	// An empty file.
	empty := writeTemp(t, "empty", nil)
	e, err := Stage(filepath.Join(dir, "empty"), 0, InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Commit(ctx, empty); err != nil {
		t.Fatal(err)
	}
	fileEquals(t, filepath.Join(dir, "empty"), []byte{})
	assertNoTemps(t, dir)
}
