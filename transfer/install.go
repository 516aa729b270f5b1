package transfer

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// InstallOptions says how Install leaves the destination file.
type InstallOptions struct {
	// Mode is the file's permission bits (0..07777 in Unix terms: use
	// ParseMode). Zero means 0644.
	Mode os.FileMode
	// Owner is "user:group", "user", ":group" or "" (keep the agent's own
	// user and group). Names or numeric ids. See ParseOwner.
	Owner string
	// Mkdir creates missing parent directories (0755) instead of failing.
	Mkdir bool
	// MD5 (hex), if set, is checked against the bytes as they are copied:
	// a mismatch fails with ErrDigestMismatch and leaves dest untouched.
	// Empty means the source is trusted (it was just verified).
	MD5 string
}

// ValidateDest accepts only absolute, clean destination paths other than
// "/" and without any ".." element.
func ValidateDest(dest string) error {
	switch {
	case dest == "":
		return fmt.Errorf("%w: empty path", ErrBadDest)
	case strings.ContainsRune(dest, 0):
		return fmt.Errorf("%w: %q contains a NUL byte", ErrBadDest, dest)
	case !filepath.IsAbs(dest):
		return fmt.Errorf("%w: %q is not absolute (want a path starting with /)", ErrBadDest, dest)
	case dest == "/":
		return fmt.Errorf("%w: %q is the root directory", ErrBadDest, dest)
	}
	for _, el := range strings.Split(dest, "/") {
		if el == ".." {
			return fmt.Errorf("%w: %q contains \"..\"", ErrBadDest, dest)
		}
	}
	if c := filepath.Clean(dest); c != dest {
		return fmt.Errorf("%w: %q is not clean (did you mean %q?)", ErrBadDest, dest, c)
	}
	return nil
}

// ResolveDest returns the file path to install to: DEST itself, or
// DEST/name when DEST is an existing directory (symlinks to directories
// count). DEST must pass ValidateDest and name must be a plain file name.
func ResolveDest(dest, name string) (string, error) {
	if err := ValidateDest(dest); err != nil {
		return "", err
	}
	fi, err := os.Stat(dest)
	if err != nil || !fi.IsDir() {
		return dest, nil
	}
	if err := checkName(name); err != nil {
		return "", fmt.Errorf("%w: %s is a directory and the file name is unusable: %v", ErrBadDest, dest, err)
	}
	return filepath.Join(dest, name), nil
}

// CheckIdentical reports whether dest already holds the object: same size
// (checked first, it costs one stat) and same MD5. A missing dest is not
// an error: it is simply not identical.
func CheckIdentical(dest string, size int64, md5hex string) (bool, error) {
	fi, err := os.Stat(dest)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("transfer: check %s: %w", dest, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != size {
		return false, nil
	}
	f, err := os.Open(dest)
	if err != nil {
		return false, fmt.Errorf("transfer: check %s: %w", dest, err)
	}
	defer f.Close()
	d, err := hashStream(context.Background(), f, nil, 0, size, nil)
	if err != nil {
		return false, fmt.Errorf("transfer: check %s: %w", dest, err)
	}
	return d.Size == size && d.MD5 == strings.ToLower(md5hex), nil
}

// ParseMode parses an octal mode such as "0644" or "755" in 0..07777 and
// returns it as an os.FileMode (setuid, setgid and sticky mapped to their
// os.Mode bits).
func ParseMode(s string) (os.FileMode, error) {
	if s == "" {
		return 0, fmt.Errorf("%w: empty (want octal such as 0644)", ErrBadMode)
	}
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not an octal number (want e.g. 0644)", ErrBadMode, s)
	}
	if v > 0o7777 {
		return 0, fmt.Errorf("%w: %q is out of range 0000..7777", ErrBadMode, s)
	}
	m := os.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if v&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if v&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m, nil
}

// ParseOwner resolves "user:group", "user", ":group" or "" to numeric ids;
// -1 means "leave unchanged". A user given without a group keeps the
// file's group (as chown(1) does with "user").
func ParseOwner(s string) (uid, gid int, err error) {
	uid, gid = -1, -1
	if s == "" {
		return uid, gid, nil
	}
	u, g, _ := strings.Cut(s, ":")
	if u == "" && g == "" {
		return -1, -1, fmt.Errorf("%w: %q names neither user nor group", ErrUnknownOwner, s)
	}
	if u != "" {
		if uid, err = lookupID(u, true); err != nil {
			return -1, -1, err
		}
	}
	if g != "" {
		if gid, err = lookupID(g, false); err != nil {
			return -1, -1, err
		}
	}
	return uid, gid, nil
}

func lookupID(name string, isUser bool) (int, error) {
	what := "group"
	if isUser {
		what = "user"
	}
	if n, err := strconv.Atoi(name); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%w: %s id %d is negative", ErrUnknownOwner, what, n)
		}
		return n, nil
	}
	var id string
	if isUser {
		u, err := user.Lookup(name)
		if err != nil {
			return 0, withKind(ErrUnknownOwner, err, "unknown user %q", name)
		}
		id = u.Uid
	} else {
		g, err := user.LookupGroup(name)
		if err != nil {
			return 0, withKind(ErrUnknownOwner, err, "unknown group %q", name)
		}
		id = g.Gid
	}
	n, err := strconv.Atoi(id)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q has non-numeric id %q", ErrUnknownOwner, what, name, id)
	}
	return n, nil
}

// Install copies src to dest atomically: a temporary file in dest's
// directory (".herd-tmp-NAME", see Staging) is written, fsynced, given its
// owner and mode, renamed over dest, and the directory fsynced. On any
// error the temporary file is removed, so dest is either the old file (or absent) or the complete new
// one — never partial. dest must be a file path (see ResolveDest).
// Errors wrap ErrBadDest, ErrMissingParent, ErrIsDir, ErrNoSpace,
// ErrPermission or ErrUnknownOwner where they apply.
func Install(ctx context.Context, src, dest string, opt InstallOptions) error {
	if err := ValidateDest(dest); err != nil {
		return err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("transfer: install %s: open source: %w", dest, err)
	}
	st, err := Stage(dest, fi.Size(), opt)
	if err != nil {
		return err
	}
	return st.Commit(ctx, src)
}

// Staging is an install begun before its source is whole: the temporary
// file in DEST's directory exists from the start, and a swarm fetch fills
// it (InstallTo): on DEST's filesystem it moves the finished file in
// (adopt), elsewhere it copies each piece as the piece verifies (CopyRange).
// Commit then copies only what is missing. Copying a whole file after its
// last byte arrived was most of a finishing host's work: when 20 hosts
// finished a 200 MB push together, their copies kept both cores busy for
// ~4 s while the links stood idle.
//
// The temporary file is named after DEST and locked while in use, so an
// install cut short by an agent restart is taken over (not left behind)
// by the next one; a second install of the same DEST running at the same
// time uses a file of its own.
type Staging struct {
	dest       string
	size, free int64
	uid, gid   int
	mode       os.FileMode
	owner, md5 string
	tmp        *os.File
	name       string // tmp's path (tmp.Name() is stale once a file is adopted)

	mu      sync.Mutex
	copied  map[int64]int64 // offset → length of the ranges already in tmp
	adopted bool            // tmp is a whole source moved in (adopt)
	renamed bool            // tmp is DEST now
	err     error           // the first failed CopyRange, returned by Commit
	ended   bool            // committed or aborted
}

// Stage checks DEST and the options, creates missing parents with
// opt.Mkdir, refuses a file larger than the free space, and opens the
// temporary file for a source of size bytes. The caller ends the Staging
// with Commit or Abort.
func Stage(dest string, size int64, opt InstallOptions) (*Staging, error) {
	if err := ValidateDest(dest); err != nil {
		return nil, err
	}
	mode := opt.Mode
	if mode == 0 {
		mode = 0o644
	}
	uid, gid, err := ParseOwner(opt.Owner)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(dest)
	if dfi, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if !opt.Mkdir {
			return nil, withKind(ErrMissingParent, err, "directory %s does not exist (use --mkdir to create it)", dir)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, installErr(err, dest, size, -1, "create directory %s", dir)
		}
	} else if err != nil {
		return nil, installErr(err, dest, size, -1, "stat directory %s", dir)
	} else if !dfi.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrBadDest, dir)
	}
	if fi, err := os.Lstat(dest); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is a directory and cannot be replaced by a file", ErrIsDir, dest)
	}
	free, ok := freeBytes(dir)
	if !ok {
		free = -1
	}
	if ok && free < size && preflightSpace {
		return nil, withKind(ErrNoSpace, syscall.ENOSPC, "no space left on device writing %s (needs %s, %s free)",
			dest, humanBytes(size), humanBytes(free))
	}
	tmp, err := openStagingFile(dest)
	if err != nil {
		return nil, installErr(err, dest, size, free, "create temporary file in %s", dir)
	}
	return &Staging{dest: dest, size: size, free: free, uid: uid, gid: gid, mode: mode, owner: opt.Owner, md5: opt.MD5, tmp: tmp, name: tmp.Name(),
		copied: map[int64]int64{}}, nil
}

// openStagingFile opens DEST's own temporary file, emptied, or a fresh one
// when another install of DEST holds it.
func openStagingFile(dest string) (*os.File, error) {
	dir := filepath.Dir(dest)
	f, err := os.OpenFile(filepath.Join(dir, ".herd-tmp-"+filepath.Base(dest)), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil { // not a file of ours (a symlink, say): leave it be
		return os.CreateTemp(dir, ".herd-tmp-*")
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
	f.Close() // not a regular file, or another install's
	return os.CreateTemp(dir, ".herd-tmp-*")
}

// CopyRange copies n bytes at off from src into the same place in the
// temporary file and starts writing them back to disk, so that the final
// sync has little left to do. A failure is kept for Commit to report.
func (s *Staging) CopyRange(src *os.File, off, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.err != nil {
		return s.err
	}
	if off < 0 || n <= 0 || off+n > s.size {
		return fmt.Errorf("transfer: install %s: range %d+%d outside a %d-byte file", s.dest, off, n, s.size)
	}
	if err := copyRange(context.Background(), s.tmp, src, off, n); err != nil {
		s.err = err
		return err
	}
	s.copied[off] = max(s.copied[off], n)
	unix.SyncFileRange(int(s.tmp.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE) // a hint: errors surface at Sync
	return nil
}

// sameFilesystem reports whether path is on the staging file's filesystem,
// where a file can be moved into place instead of copied (adopt).
func (s *Staging) sameFilesystem(path string) bool {
	var a, b unix.Stat_t
	if unix.Stat(path, &a) != nil || unix.Fstat(int(s.tmp.Fd()), &b) != nil {
		return false
	}
	return a.Dev == b.Dev
}

// adopt moves the whole, verified file at path into the staging file's
// place, so that Commit copies nothing. It fails (and path stays) unless
// path is on the same filesystem and the Staging takes no MD5 check.
func (s *Staging) adopt(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.md5 != "" {
		return fmt.Errorf("transfer: install %s: cannot adopt %s", s.dest, path)
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != s.size || !fi.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("transfer: install %s: cannot adopt %s (%v)", s.dest, path, err)
	}
	// Locked before it takes the name, as openStagingFile's files are.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return err
	}
	if err := os.Rename(path, s.name); err != nil {
		f.Close()
		return err
	}
	s.tmp.Close() // its file was replaced, and so unlinked
	s.tmp, s.adopted = f, true
	return nil
}

// Commit copies what CopyRange did not from src (the whole source), syncs,
// sets owner and mode and renames the file into place: DEST is never a
// partial file. With InstallOptions.MD5 set the whole source is copied
// again through the digest. On failure the temporary file is removed and
// DEST is left as it was.
func (s *Staging) Commit(ctx context.Context, src string) (err error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return fmt.Errorf("transfer: install %s: already ended", s.dest)
	}
	s.ended = true
	merr := s.err
	s.mu.Unlock()
	dest, tmp, size, free := s.dest, s.tmp, s.size, s.free
	defer func() {
		if err != nil && !s.renamed {
			tmp.Close()
			os.Remove(s.name)
		}
	}()
	if merr != nil {
		return installErr(merr, dest, size, free, "write")
	}
	if !s.adopted {
		if err = s.fill(ctx, src); err != nil {
			return err
		}
	}
	return s.finishInstall()
}

// fill copies into tmp what it lacks from src.
func (s *Staging) fill(ctx context.Context, src string) (err error) {
	dest, tmp, size, free := s.dest, s.tmp, s.size, s.free
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("transfer: install %s: open source: %w", dest, err)
	}
	defer in.Close()
	if fi, err := in.Stat(); err != nil {
		return fmt.Errorf("transfer: install %s: %w", dest, err)
	} else if fi.Size() != size {
		return fmt.Errorf("transfer: install %s: the source is %d bytes, %d were staged", dest, fi.Size(), size)
	}
	if s.md5 != "" {
		if err = tmp.Truncate(0); err != nil {
			return installErr(err, dest, size, free, "write")
		}
		sum := md5.New()
		if _, err = io.Copy(io.NewOffsetWriter(tmp, 0), io.TeeReader(ctxReader{ctx, in}, sum)); err != nil {
			return installErr(err, dest, size, free, "write")
		}
		if got := hex.EncodeToString(sum.Sum(nil)); got != strings.ToLower(s.md5) {
			return fmt.Errorf("transfer: install %s: %w: the stored copy has md5 %s, want %s", dest, ErrDigestMismatch, got, s.md5)
		}
	} else {
		for _, gap := range s.gaps() {
			if err = copyRange(ctx, tmp, in, gap[0], gap[1]); err != nil {
				return installErr(err, dest, size, free, "write")
			}
		}
		if size == 0 {
			if err = tmp.Truncate(0); err != nil {
				return installErr(err, dest, size, free, "write")
			}
		}
	}
	return nil
}

// finishInstall syncs tmp, gives it its owner and mode and renames it
// over DEST.
func (s *Staging) finishInstall() (err error) {
	dest, tmp, size, free := s.dest, s.tmp, s.size, s.free
	if err = tmp.Sync(); err != nil {
		return installErr(err, dest, size, free, "sync")
	}
	if s.uid >= 0 || s.gid >= 0 {
		if err = tmp.Chown(s.uid, s.gid); err != nil {
			return installErr(err, dest, size, free, "chown %s", s.owner)
		}
	}
	// After chown, which clears setuid/setgid bits.
	if err = tmp.Chmod(s.mode); err != nil {
		return installErr(err, dest, size, free, "chmod %04o", unixMode(s.mode))
	}
	// Renamed before it is closed: its lock keeps a concurrent install of
	// DEST off the name until then.
	if err = os.Rename(s.name, dest); err != nil {
		return installErr(err, dest, size, free, "rename into place")
	}
	s.renamed = true
	if err = tmp.Close(); err != nil {
		return installErr(err, dest, size, free, "close")
	}
	if err := syncDir(filepath.Dir(dest)); err != nil {
		// The file is in place; only durability of the rename is in doubt.
		return installErr(err, dest, size, free, "sync directory")
	}
	return nil
}

// Abort removes the temporary file, unless Commit ran. DEST is untouched.
func (s *Staging) Abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	s.tmp.Close()
	os.Remove(s.name)
}

// gaps returns the [offset, length] ranges of the file not yet copied.
func (s *Staging) gaps() [][2]int64 {
	offs := make([]int64, 0, len(s.copied))
	for off := range s.copied {
		offs = append(offs, off)
	}
	slices.Sort(offs)
	var out [][2]int64
	var at int64
	for _, off := range offs {
		if off > at {
			out = append(out, [2]int64{at, off - at})
		}
		at = max(at, off+s.copied[off])
	}
	if at < s.size {
		out = append(out, [2]int64{at, s.size - at})
	}
	return out
}

// preflightSpace enables the free-space check before writing; tests turn it
// off to exercise ENOSPC in the middle of a write.
var preflightSpace = true

// installErr wraps an OS error from installing dest with its kind and a
// message that says what to do about it.
// free is the space available before the write began (-1: unknown).
func installErr(err error, dest string, size, free int64, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	switch classify(err) {
	case ErrNoSpace:
		if free >= 0 {
			return withKind(ErrNoSpace, err, "no space left on device writing %s (needs %s, %s free)",
				dest, humanBytes(size), humanBytes(free))
		}
		return withKind(ErrNoSpace, err, "no space left on device writing %s (needs %s)", dest, humanBytes(size))
	case ErrPermission:
		return withKind(ErrPermission, err, "permission denied installing %s (%s): %v", dest, what, err)
	}
	if errors.Is(err, syscall.EISDIR) {
		return withKind(ErrIsDir, err, "%s is a directory and cannot be replaced by a file", dest)
	}
	return fmt.Errorf("transfer: install %s: %s: %w", dest, what, err)
}

// freeBytes returns the bytes available to an unprivileged writer in dir's
// filesystem.
func freeBytes(dir string) (int64, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}

// humanBytes prints n in decimal units, as users read disk sizes.
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.0f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

// unixMode converts an os.FileMode back to its 0..07777 Unix spelling.
func unixMode(m os.FileMode) uint32 {
	v := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}

// copyRange copies n bytes at off from src to the same offset of dst in
// the kernel (copy_file_range: no pass through user memory), a chunk at a
// time so that ctx can stop it; through a buffer where the kernel cannot.
func copyRange(ctx context.Context, dst, src *os.File, off, n int64) error {
	const chunk = 16 << 20
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		roff, woff := off, off
		c, err := unix.CopyFileRange(int(src.Fd()), &roff, int(dst.Fd()), &woff, int(min(n, chunk)), 0)
		if err != nil {
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) {
				return copyRangeBuffered(ctx, dst, src, off, n)
			}
			return err
		}
		if c == 0 {
			return fmt.Errorf("%s ends before byte %d", src.Name(), off+n)
		}
		off += int64(c)
		n -= int64(c)
	}
	return nil
}

// copyRangeBuffered is copyRange through user memory.
func copyRangeBuffered(ctx context.Context, dst, src *os.File, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := src.ReadAt(buf[:min(n, int64(len(buf)))], off)
		if r > 0 {
			if _, werr := dst.WriteAt(buf[:r], off); werr != nil {
				return werr
			}
			off += int64(r)
			n -= int64(r)
		}
		if err != nil && n > 0 {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("%s ends before byte %d", src.Name(), off+n)
			}
			return err
		}
	}
	return nil
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
