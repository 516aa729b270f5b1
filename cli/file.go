package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/node/api"
	"github.com/herd-io/herd/transfer"
)

// This file is `herd file`: the cluster's content store catalog, and the
// chunked upload of a local file that `herd push` shares.

func fileCommand() *ucli.Command {
	return nounDefaults(&ucli.Command{
		Name:  "file",
		Usage: "manage the content store: files that herd push distributes",
		Description: `Files are content-addressed by SHA-256 (MD5 recorded too). Adding one stores it on
a node (its origin), which seeds it to pushes in every IDC; hosts that received a file by
a push keep it and seed it to later pushes.

  herd file add ./app-v42.tar                  upload a local file to the node you talk to
  herd file add --from build-1:/srv/app.tar    have build-1 add a file it already has
  herd file list
  herd file show 3fa2b1c4                      any unique prefix of 8+ hex digits
  herd file rm 3fa2b1c4d5e6`,
		Subcommands: []*ucli.Command{
			fileAddCommand(),
			fileListCommand(),
			fileShowCommand(),
			fileRmCommand(),
		},
	})
}

// UploadSettings say how a local file travels to the node.
type UploadSettings struct {
	// ChunkSize is the size of one upload request (default 8 MiB).
	ChunkSize int64
	// Progress is where the progress bar goes (stderr); nil draws none.
	Progress io.Writer
	// TTY draws the bar; without a terminal only retries and the end are told.
	TTY bool
}

func uploadFlags() []ucli.Flag {
	return []ucli.Flag{
		// Hidden: a knob for slow or flaky links and for tests.
		&ucli.StringFlag{Name: "chunk-size", Hidden: true, Usage: "upload in requests of `SIZE` (default 8MiB)"},
	}
}

func readUploadSettings(c *ucli.Context) (UploadSettings, error) {
	u := UploadSettings{Progress: c.App.ErrWriter, TTY: isTerminal(c.App.ErrWriter)}
	if s := c.String("chunk-size"); s != "" {
		n, err := model.ParseSize(s)
		if err != nil || n <= 0 {
			return u, usagef("chunk-size %q: want a positive size like 8MiB", s)
		}
		u.ChunkSize = n
	}
	return u, nil
}

// FileAddOptions are the inputs of `herd file add`.
type FileAddOptions struct {
	globals
	// Path is a local file to upload; From is HOST:/abs/path instead.
	Path   string
	From   string
	Upload UploadSettings
}

func fileAddCommand() *ucli.Command {
	flags := commonFlags(&ucli.StringFlag{Name: "from", Usage: "add the file at `HOST:/ABS/PATH` that is already on HOST"})
	flags = append(flags, uploadFlags()...)
	return &ucli.Command{
		Name:      "add",
		Usage:     "add a local file (uploaded to the node) or a file on a host to the content store",
		ArgsUsage: "PATH | --from HOST:/ABS/PATH",
		Description: `A local PATH is uploaded to the node herd talks to (--node) in 8 MiB chunks; a broken
connection resumes where the node stopped, and the SHA-256 computed while reading is
checked by the node at the end. With --from, HOST adds a file it has itself.

  herd file add ./app-v42.tar
  herd file add --from build-1:/srv/artifacts/app-v42.tar`,
		Flags: flags,
		Action: argsAnywhere(func(c *ucli.Context, args []string) error {
			o := FileAddOptions{globals: readGlobals(c), From: c.String("from")}
			var err error
			if o.Upload, err = readUploadSettings(c); err != nil {
				return err
			}
			switch {
			case o.From != "" && len(args) > 0:
				return usagef("give a local PATH or --from HOST:/PATH, not both")
			case o.From == "" && len(args) != 1:
				return usagef("file add takes one PATH (or --from HOST:/PATH)")
			case o.From == "":
				o.Path = args[0]
			}
			return runFileAdd(c.Context, o, c.App.Writer)
		}),
	}
}

func runFileAdd(ctx context.Context, o FileAddOptions, w io.Writer) error {
	var (
		f   *model.File
		err error
	)
	if o.From != "" {
		src, perr := parseSource(o.From, func(string) bool { return false })
		if perr != nil || src.Kind != sourceNode {
			if perr == nil {
				perr = fmt.Errorf("want HOST:/ABS/PATH")
			}
			return usagef("from %q: %v", o.From, perr)
		}
		f, err = addNodeFile(ctx, o.globals, src)
	} else {
		lf, lerr := openLocal(o.Path)
		if lerr != nil {
			return lerr
		}
		defer lf.Close()
		f, err = uploadLocal(ctx, o.globals, o.Upload, lf, "")
	}
	if err != nil {
		return err
	}
	return o.emit(w, f, func() error {
		return writef(w, "added %s (%s) sha256:%s md5:%s\n", f.Name, humanSize(f.Size), f.SHA256, f.MD5)
	})
}

// localFile is a regular file opened for upload.
type localFile struct {
	*os.File
	Name string // base name: how the store names it
	Size int64
}

// openLocal opens a local regular file; problems are usage errors.
func openLocal(path string) (*localFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usagef("source: %v", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, usagef("source: %v", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, usagef("source %s is not a regular file", path)
	}
	return &localFile{File: f, Name: filepath.Base(path), Size: st.Size()}, nil
}

// serverHashTime is how long a node may take to hash size bytes (at a
// pessimistic 50 MB/s) on top of the request timeout.
func serverHashTime(g globals, size int64) time.Duration {
	if g.Timeout <= 0 {
		return 0
	}
	return g.Timeout + time.Duration(size/50e6)*time.Second
}

// uploadLocal sends lf to the node with a progress bar. sha, when known,
// is checked against the bytes read during the upload.
func uploadLocal(ctx context.Context, g globals, u UploadSettings, lf *localFile, sha string) (*model.File, error) {
	client, err := g.client()
	if err != nil {
		return nil, err
	}
	m := newMeter(u.Progress, u.TTY, "uploading "+lf.Name, lf.Size)
	o := api.UploadOptions{
		ChunkSize:      u.ChunkSize,
		RequestTimeout: g.Timeout,
		CommitTimeout:  serverHashTime(g, lf.Size),
		SHA256:         sha,
		Progress:       m.set,
		OnRetry: func(err error, at int64) {
			m.note(fmt.Sprintf("upload of %s: %v; resuming at %s", lf.Name, err, humanBytes(uint64(at))))
		},
	}
	f, err := client.UploadFile(ctx, lf.File, lf.Name, lf.Size, o)
	m.finish()
	if err != nil {
		return nil, apiError(err)
	}
	return f, nil
}

// addNodeFile has src.Host add src.Path from its own disk.
func addNodeFile(ctx context.Context, g globals, src pushSource) (*model.File, error) {
	client, err := g.client()
	if err != nil {
		return nil, err
	}
	// The host hashes the whole file before it answers: no size is known
	// here, so allow for a large one.
	rctx, cancel := g.context(ctx)
	if g.Timeout > 0 {
		cancel()
		rctx, cancel = context.WithTimeout(ctx, g.Timeout+time.Hour)
	}
	defer cancel()
	f, err := client.On(src.Host).AddNodeFile(rctx, src.Path)
	if err != nil {
		return nil, apiError(err)
	}
	return f, nil
}

// hashLocal computes the SHA-256 of lf with a progress bar.
func hashLocal(ctx context.Context, u UploadSettings, lf *localFile) (string, error) {
	m := newMeter(u.Progress, u.TTY, "hashing "+lf.Name, lf.Size)
	defer m.finish()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	var done int64
	for done < lf.Size {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := lf.ReadAt(buf[:min(int64(len(buf)), lf.Size-done)], done)
		h.Write(buf[:n])
		done += int64(n)
		m.set(done)
		if err != nil && !(errors.Is(err, io.EOF) && done == lf.Size) {
			return "", fmt.Errorf("hashing %s: %w", lf.Name, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// FileListOptions are the inputs of `herd file list`.
type FileListOptions struct{ globals }

func fileListCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "list",
		Usage: "list the files of the content store",
		Flags: commonFlags(),
		Action: func(c *ucli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			return runFileList(c.Context, FileListOptions{readGlobals(c)}, c.App.Writer)
		},
	}
}

func runFileList(ctx context.Context, o FileListOptions, w io.Writer) error {
	l, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.FileList, error) {
		return c.Files(ctx)
	})
	if err != nil {
		return err
	}
	sort.Slice(l.Files, func(i, j int) bool { return l.Files[i].Added.After(l.Files[j].Added) })
	return o.emit(w, l, func() error { return writeFileList(w, l.Files, time.Now()) })
}

// writeFileList renders the catalog table, newest first as given.
func writeFileList(w io.Writer, files []model.File, now time.Time) error {
	t := newTable(w, "SHA256", "NAME", "SIZE", "MD5", "ORIGINS", "ADDED")
	for _, f := range files {
		t.row(shortDigest(f.SHA256), f.Name, humanSize(f.Size), shortDigest(f.MD5),
			orDash(holderNames(f.Origins)), humanAge(now.Sub(f.Added))+" ago")
	}
	return t.flush()
}

func holderNames(hs []model.FileHolder) string {
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = h.Node
	}
	return strings.Join(names, ",")
}

// FileRefOptions are the inputs of `herd file show` and `herd file rm`.
type FileRefOptions struct {
	globals
	Ref string // a sha256, sha256:HEX, or a unique prefix of 8+ hex digits
}

func readFileRef(c *ucli.Context) (FileRefOptions, error) {
	o := FileRefOptions{globals: readGlobals(c)}
	if c.NArg() != 1 {
		return o, usagef("%s takes one SHA256 (or a unique prefix of 8+ hex digits)", c.Command.Name)
	}
	o.Ref = c.Args().First()
	if _, err := parseFileRef(o.Ref); err != nil {
		return o, err
	}
	return o, nil
}

// fileRefCommand is a verb that acts on one file of the content store,
// named by SHA256 or a unique prefix: file show and file rm.
func fileRefCommand(name, usage string, run func(context.Context, FileRefOptions, io.Writer) error) *ucli.Command {
	return &ucli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: "SHA256",
		Flags:     commonFlags(),
		Action: func(c *ucli.Context) error {
			o, err := readFileRef(c)
			if err != nil {
				return err
			}
			return run(c.Context, o, c.App.Writer)
		},
	}
}

func fileShowCommand() *ucli.Command {
	return fileRefCommand("show", "show a file of the content store: digests, size, origins, holders", runFileShow)
}

func runFileShow(ctx context.Context, o FileRefOptions, w io.Writer) error {
	f, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.File, error) {
		return resolveFile(ctx, c, o.Ref)
	})
	if err != nil {
		return err
	}
	return o.emit(w, f, func() error { return writeFileEntry(w, f, time.Now()) })
}

func writeFileEntry(w io.Writer, f *model.File, now time.Time) error {
	fmt.Fprintf(w, "sha256:   %s\n", f.SHA256)
	fmt.Fprintf(w, "md5:      %s\n", f.MD5)
	fmt.Fprintf(w, "name:     %s\n", f.Name)
	fmt.Fprintf(w, "size:     %s (%d bytes)\n", humanSize(f.Size), f.Size)
	if f.PieceLength > 0 {
		fmt.Fprintf(w, "pieces:   %s each, info hash %s\n", humanBytes(uint64(f.PieceLength)), orDash(f.InfoHash))
	}
	fmt.Fprintf(w, "added:    %s (%s ago)\n", f.Added.Format(time.RFC3339), humanAge(now.Sub(f.Added)))
	for _, l := range []struct {
		label string
		hs    []model.FileHolder
	}{{"origins", f.Origins}, {"holders", f.Holders}} {
		var parts []string
		for _, h := range l.hs {
			parts = append(parts, h.Node+" ("+h.IDC+")")
		}
		if _, err := fmt.Fprintf(w, "%-9s %s\n", l.label+":", orDash(strings.Join(parts, ", "))); err != nil {
			return err
		}
	}
	return nil
}

func fileRmCommand() *ucli.Command {
	return fileRefCommand("rm", "remove a file from the catalog (pushes can no longer name it) and the node's store", runFileRm)
}

func runFileRm(ctx context.Context, o FileRefOptions, w io.Writer) error {
	f, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.File, error) {
		f, err := resolveFile(ctx, c, o.Ref)
		if err != nil {
			return nil, err
		}
		return f, c.DeleteFile(ctx, f.SHA256)
	})
	if err != nil {
		return err
	}
	return o.emit(w, struct{}{}, func() error { return writef(w, "removed %s (%s)\n", f.SHA256, f.Name) })
}

var hexRefRE = regexp.MustCompile(`^[0-9a-f]{8,64}$`)

// parseFileRef turns "sha256:HEX", "HEX" or an 8+ digit prefix into
// lowercase hex.
func parseFileRef(ref string) (string, error) {
	h := strings.ToLower(strings.TrimPrefix(ref, "sha256:"))
	if !hexRefRE.MatchString(h) {
		return "", usagef("%q is not a sha256 or a prefix of one (8 to 64 hex digits)", ref)
	}
	return h, nil
}

// resolveFile reads the catalog entry ref names: a full digest directly,
// a prefix by listing (it must match exactly one file).
func resolveFile(ctx context.Context, client *api.Client, ref string) (*model.File, error) {
	h, err := parseFileRef(ref)
	if err != nil {
		return nil, err
	}
	if transfer.ValidSHA256(h) {
		f, err := client.File(ctx, h)
		if err != nil {
			return nil, apiError(err)
		}
		return f, nil
	}
	l, err := client.Files(ctx)
	if err != nil {
		return nil, apiError(err)
	}
	var match []model.File
	for _, f := range l.Files {
		if strings.HasPrefix(f.SHA256, h) {
			match = append(match, f)
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("no file %s… in the content store (herd file list)", h)
	case 1:
		// The list leaves out holders: read the entry itself.
		f, err := client.File(ctx, match[0].SHA256)
		if err != nil {
			return nil, apiError(err)
		}
		return f, nil
	}
	var names []string
	for _, f := range match {
		names = append(names, shortDigest(f.SHA256)+" ("+f.Name+")")
	}
	return nil, usagef("prefix %s matches %d files: %s; give more digits", h, len(match), strings.Join(names, ", "))
}

// meter draws the progress of a byte count on stderr: on a terminal one
// line redrawn in place (at most every 100ms) with bytes/s, percent and
// ETA; otherwise only notes.
type meter struct {
	w      io.Writer
	tty    bool
	label  string
	total  int64
	start  time.Time
	now    func() time.Time
	lastAt time.Time
	done   int64
	drawn  bool
}

func newMeter(w io.Writer, tty bool, label string, total int64) *meter {
	return &meter{w: w, tty: tty, label: label, total: total, start: time.Now(), now: time.Now}
}

// set records n bytes done and redraws when due.
func (m *meter) set(n int64) {
	m.done = n
	if m.w == nil || !m.tty {
		return
	}
	now := m.now()
	if n < m.total && now.Sub(m.lastAt) < 100*time.Millisecond {
		return
	}
	m.lastAt = now
	fmt.Fprintf(m.w, "\r%s\x1b[K", meterLine(m.label, n, m.total, now.Sub(m.start)))
	m.drawn = true
}

// note prints a message on its own line, keeping the bar below it.
func (m *meter) note(msg string) {
	if m.w == nil {
		return
	}
	if m.drawn {
		fmt.Fprint(m.w, "\r\x1b[K")
	}
	fmt.Fprintln(m.w, msg)
	if m.drawn {
		fmt.Fprintf(m.w, "%s\x1b[K", meterLine(m.label, m.done, m.total, m.now().Sub(m.start)))
	}
}

// finish ends the bar's line.
func (m *meter) finish() {
	if m.w != nil && m.drawn {
		fmt.Fprintln(m.w)
		m.drawn = false
	}
}

// meterLine renders "uploading app.tar [#####     ] 45% 1.2GB/2.6GB 112.0MB/s ETA 13s".
func meterLine(label string, n, total int64, elapsed time.Duration) string {
	const width = 20
	fill, pct := width, 100
	if total > 0 {
		fill = int(min(n, total) * width / total)
		pct = int(min(n, total) * 100 / total)
	}
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(n) / s
	}
	eta := "-"
	if rate > 0 && n < total {
		eta = time.Duration(float64(total-n) / rate * float64(time.Second)).Round(time.Second).String()
	} else if n >= total {
		eta = "0s"
	}
	return fmt.Sprintf("%s [%s%s] %3d%% %s/%s %s/s ETA %s", label, strings.Repeat("#", fill), strings.Repeat(" ", width-fill),
		pct, humanSize(n), humanSize(total), humanBytes(uint64(rate)), eta)
}
