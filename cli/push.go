package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/node/api"
	"github.com/herd-io/herd/transfer"
)

// This file is `herd push`: resolve the source to a file of the content
// store (uploading a local one), create a push run, and watch it with a
// push-specific progress line and summary.

// PushOptions are the inputs of `herd push`.
type PushOptions struct {
	globals
	// Source is SRC as given: a local path, HOST:/abs/path, sha256:HEX or
	// a catalog prefix.
	Source string
	// Spec is the push; its File is filled in once Source is resolved.
	Spec    model.PushSpec
	Targets model.Targets
	Watch   WatchOptions
	Upload  UploadSettings
}

func pushCommand() *ucli.Command {
	flags := withoutFlag(commonFlags(), flagTimeout)
	flags = append(flags, targetFlags()...)
	flags = append(flags,
		&ucli.StringFlag{Name: "mode", Usage: "install with octal `MODE` (default 0644)"},
		&ucli.StringFlag{Name: "owner", Usage: "install owned by `USER[:GROUP]` (default: the agent's user)"},
		&ucli.StringFlag{Name: "rate", Usage: "cap each host's download at `RATE` per second, e.g. 50MB, 1.5GiB (default: the agents' caps)"},
		&ucli.BoolFlag{Name: "no-swarm", Usage: "every host fetches straight from an origin (central push) instead of swarming"},
		&ucli.BoolFlag{Name: "mkdir", Usage: "create DEST's missing parent directories"},
		&ucli.StringFlag{Name: "timeout", Usage: "give each host `DURATION` to finish, waiting for restarted hosts included (default 1h)"},
	)
	flags = append(flags, uploadFlags()...)
	flags = append(flags, watchFlags()...)
	return &ucli.Command{
		Name:      "push",
		Usage:     "install a file on many hosts: peer-to-peer, MD5-verified, atomic, resumable",
		ArgsUsage: "SRC DEST [TARGETS]",
		Description: `Installs SRC at DEST on the targeted hosts of one IDC. A host whose DEST already has
the same size and MD5 is "skipped (identical)"; others fetch the file (large files over a
private swarm in which every host that has bytes serves them, small ones from the nearest
holder), verify it and rename it into place: DEST is never a partial file. A DEST that is
a directory receives the file under its name. Exit code: 0 when every host succeeded or
was skipped, 1 when any did not, 2 for bad input.

SRC is one of:
  ./app.tar            a local file: hashed, then uploaded to the node herd talks to in
                       resumable chunks, unless the content store already has it
  HOST:/abs/path       a file already on HOST, which adds it to its store and seeds it
  sha256:HEX, HEX...   a file of the content store (herd file list), or a unique prefix
                       of 8+ hex digits
DEST is an absolute, clean path (no "..", no trailing slash). Targets as for herd run:
--all, --hosts a,b, --group G, --select SELECTOR, within --idc.

  herd push ./app-v42.tar /opt/app/app.tar --all --mode 0755 --owner app:app
  herd push build-1:/srv/artifacts/app-v42.tar /opt/app --select role=web --mkdir
  herd push sha256:3fa2b1c4d5e6 /opt/app/app.tar --group canary --detach
  herd push 3fa2b1c4 /opt/app/app.tar --hosts db-1,db-2 --no-swarm
  herd push ./image.qcow2 /var/lib/images --all --rate 50MB --timeout 3h

Ctrl-C stops watching; the push continues (herd cancel RUN stops it).`,
		Flags: flags,
		Action: argsAnywhere(func(c *ucli.Context, args []string) error {
			o, err := readPushOptions(c, args)
			if err != nil {
				return err
			}
			return watching(c, &o.Watch, func(ctx context.Context, stdout, stderr io.Writer) error {
				return runPush(ctx, o, stdout, stderr)
			})
		}),
	}
}

// defaultPushMode is the mode of installed files without --mode.
const defaultPushMode = "0644"

// readPushOptions turns flags and arguments into PushOptions. Every input
// error is a UsageError (exit 2), found before anything is sent.
func readPushOptions(c *ucli.Context, args []string) (PushOptions, error) {
	o := PushOptions{globals: readGlobals(c)}
	// --timeout here is the push's; the request timeout is the root's.
	lineage := c.Lineage()
	o.Timeout = lineage[len(lineage)-1].Duration(flagTimeout)
	o.Watch.Detach = c.Bool("detach")
	if len(args) != 2 {
		return o, usagef("push takes SRC and DEST, got %d arguments (see herd push --help)", len(args))
	}
	o.Source = args[0]
	o.Spec = model.PushSpec{Dest: args[1], Mode: c.String("mode"), Owner: c.String("owner"),
		Mkdir: c.Bool("mkdir"), NoSwarm: c.Bool("no-swarm")}
	if err := validateDest(o.Spec.Dest); err != nil {
		return o, err
	}
	if o.Spec.Mode == "" {
		// Sent explicitly: agents refuse an empty mode although the
		// PushSpec documents 0644 as its default.
		o.Spec.Mode = defaultPushMode
	}
	if _, err := transfer.ParseMode(o.Spec.Mode); err != nil {
		return o, usagef("mode: %v", err)
	}
	if s := c.String("rate"); s != "" {
		r, err := model.ParseSize(s)
		if err != nil {
			return o, usagef("rate: %v", err)
		}
		if r == 0 {
			return o, usagef("rate %q: want a positive rate like 50MB (leave it out for the agents' caps)", s)
		}
		o.Spec.Rate = r
	}
	if s := c.String("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return o, usagef("timeout %q: want a positive duration like 30m or 2h", s)
		}
		o.Spec.Timeout = model.Duration(d)
	}
	t, err := readTargets(c)
	if err != nil {
		return o, err
	}
	o.Targets = t
	if o.Upload, err = readUploadSettings(c); err != nil {
		return o, err
	}
	if _, err := parseSource(o.Source, isLocalFile); err != nil {
		return o, err
	}
	return o, nil
}

// validateDest applies the server's rules to DEST: absolute, clean, not /.
func validateDest(dest string) error {
	if err := transfer.ValidateDest(dest); err != nil {
		return usagef("dest: %v", err)
	}
	return nil
}

// sourceKind says where a push's file comes from.
type sourceKind int

const (
	sourceLocal   sourceKind = iota // a file on the CLI's machine
	sourceNode                      // a file on a host: HOST:/abs/path
	sourceCatalog                   // a file of the content store
)

// pushSource is a parsed SRC.
type pushSource struct {
	Kind sourceKind
	Path string // local path, or the path on Host
	Host string
	Ref  string // catalog digest or prefix (lowercase hex)
}

// parseSource classifies SRC. isFile reports whether a local file of that
// name exists: a local file wins over a bare hex prefix, and a HOST:PATH
// whose path is relative is only accepted as a local name.
//
//	sha256:HEX         the content store
//	HOST:/abs/path     a file on HOST (HOST has no '/': write ./a:/b for a local a:/b)
//	HEX (8-64 digits)  the content store, unless a local file has that name
//	anything else      a local file
func parseSource(src string, isFile func(string) bool) (pushSource, error) {
	if src == "" {
		return pushSource{}, usagef("source is empty")
	}
	if strings.HasPrefix(src, "sha256:") {
		h, err := parseFileRef(src)
		if err != nil {
			return pushSource{}, err
		}
		return pushSource{Kind: sourceCatalog, Ref: h}, nil
	}
	if host, path, ok := strings.Cut(src, ":"); ok && host != "" && !strings.Contains(host, "/") && !isFile(src) {
		if !strings.HasPrefix(path, "/") {
			return pushSource{}, usagef("source %q: the path on %s must be absolute (HOST:/abs/path)", src, host)
		}
		if err := transfer.ValidateDest(path); err != nil {
			return pushSource{}, usagef("source %q: the path on %s must be absolute and clean", src, host)
		}
		if strings.ContainsAny(host, " \t@") {
			return pushSource{}, usagef("source %q: %q is not a host name", src, host)
		}
		return pushSource{Kind: sourceNode, Host: host, Path: path}, nil
	}
	if hexRefRE.MatchString(src) && !isFile(src) {
		return pushSource{Kind: sourceCatalog, Ref: src}, nil
	}
	if !isFile(src) {
		if _, err := os.Stat(src); err != nil {
			return pushSource{}, usagef("source: %v", err)
		}
		return pushSource{}, usagef("source %s is not a regular file", src)
	}
	return pushSource{Kind: sourceLocal, Path: src}, nil
}

// isLocalFile reports whether path names a regular file (after symlinks).
func isLocalFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

func runPush(ctx context.Context, o PushOptions, stdout, stderr io.Writer) error {
	src, err := parseSource(o.Source, isLocalFile)
	if err != nil {
		return err
	}
	// Check the rest before anything is uploaded.
	if err := validateDest(o.Spec.Dest); err != nil {
		return err
	}
	client, err := o.client()
	if err != nil {
		return err
	}
	f, err := resolveSource(ctx, client, o, src, stderr)
	if err != nil {
		return err
	}
	o.Spec.File = model.File{SHA256: f.SHA256}
	spec := o.Spec
	return startRun(ctx, client, o.globals, o.Watch, func(ctx context.Context) (*model.Run, error) {
		return client.CreateRun(ctx, model.RunRequest{Targets: o.Targets, Push: &spec})
	}, stdout, stderr)
}

// resolveSource turns src into a file of the content store: looked up,
// added on its host, or uploaded (after a local hash showed the store
// does not have it yet).
func resolveSource(ctx context.Context, client *api.Client, o PushOptions, src pushSource, stderr io.Writer) (*model.File, error) {
	// A source that does not exist is the operator's mistake: exit 2.
	missing := func(f *model.File, err error) (*model.File, error) {
		if err != nil && isNotFound(err) {
			return nil, &UsageError{Err: err}
		}
		return f, err
	}
	switch src.Kind {
	case sourceCatalog:
		rctx, cancel := o.context(ctx)
		defer cancel()
		return missing(resolveFile(rctx, client, src.Ref))
	case sourceNode:
		return missing(addNodeFile(ctx, o.globals, src))
	}
	lf, err := openLocal(src.Path)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	sha, err := hashLocal(ctx, o.Upload, lf)
	if err != nil {
		return nil, err
	}
	rctx, cancel := o.context(ctx)
	f, err := client.File(rctx, sha)
	cancel()
	switch {
	case err == nil && len(f.Origins) > 0:
		if o.Upload.Progress != nil {
			fmt.Fprintf(o.Upload.Progress, "%s is in the content store already (sha256:%s): not uploading\n", lf.Name, shortDigest(sha))
		}
		return f, nil
	case err != nil && !isNotFound(err):
		return nil, apiError(err)
	}
	return uploadLocal(ctx, o.globals, o.Upload, lf, sha)
}

// --- watching ---

// pushProgressLine renders a push's progress: hosts done, failed, the
// aggregate rate of the finished hosts' bytes, and an ETA from hosts/s.
// "[####    ] 12/20 hosts · 1 failed · 8 running · 112.0MB/s · ETA 6s · 9.8s"
func pushProgressLine(r model.Run, hosts []model.HostResult, live *model.PushProgress, elapsed time.Duration, bar bool) string {
	done, _ := endedCounts(r.Counts)
	var bytes, liveBytes int64
	for _, h := range hosts {
		if h.Status.Terminal() && h.Transfer != nil {
			bytes += h.Transfer.Bytes
		}
	}
	if live != nil {
		for _, n := range live.Hosts {
			liveBytes += n
		}
	}
	bytes += liveBytes
	var b strings.Builder
	progressCounts(&b, r, bar, "hosts")
	rate, eta := 0.0, "-"
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(bytes) / s
		if size := pushSize(r); live != nil && rate > 0 && size > 0 && done < r.Total {
			// Bytes still to move: every unfinished host's missing part.
			left := float64(int64(r.Total-done)*size - liveBytes)
			eta = time.Duration(left / rate * float64(time.Second)).Round(time.Second).String()
		} else if done > 0 && done < r.Total {
			left := float64(r.Total-done) / (float64(done) / s)
			eta = time.Duration(left * float64(time.Second)).Round(time.Second).String()
		}
	}
	if done >= r.Total && r.Total > 0 {
		eta = "0s"
	}
	fmt.Fprintf(&b, " · %s/s · ETA %s · %s", humanBytes(uint64(rate)), eta, elapsed.Round(100*time.Millisecond))
	return b.String()
}

// pushTotals sums where the hosts' bytes came from.
type pushTotals struct {
	Bytes, FromOrigin, FromPeers, Resumed int64
	ByIDC                                 map[string]int64 // by the sender's IDC
	Identical                             int              // hosts skipped as identical
}

func sumTransfers(hosts []model.HostResult) pushTotals {
	t := pushTotals{ByIDC: map[string]int64{}}
	for _, h := range hosts {
		x := h.Transfer
		if x == nil {
			continue
		}
		t.Bytes += x.Bytes
		t.FromOrigin += x.FromOrigin
		t.FromPeers += x.FromPeers
		t.Resumed += x.Resumed
		for idc, n := range x.ByIDC {
			t.ByIDC[idc] += n
		}
		if x.Identical {
			t.Identical++
		}
	}
	return t
}

// totalsLine renders "moved 90.0MB: 30.0MB from origin, 60.0MB from peers; by source IDC: dc1 60.0MB, dc2 30.0MB".
func totalsLine(t pushTotals) string {
	s := fmt.Sprintf("moved %s: %s from origin, %s from peers", humanSize(t.Bytes), humanSize(t.FromOrigin), humanSize(t.FromPeers))
	if t.Resumed > 0 {
		s += fmt.Sprintf(" (%s kept from before a restart)", humanSize(t.Resumed))
	}
	if len(t.ByIDC) > 0 {
		idcs := make([]string, 0, len(t.ByIDC))
		for idc := range t.ByIDC {
			idcs = append(idcs, idc)
		}
		sort.Strings(idcs)
		parts := make([]string, len(idcs))
		for i, idc := range idcs {
			parts[i] = idc + " " + humanSize(t.ByIDC[idc])
		}
		s += "; by source IDC: " + strings.Join(parts, ", ")
	}
	if t.Identical > 0 {
		s += fmt.Sprintf("; %s already identical", plural(t.Identical, "host"))
	}
	return s
}

// pushStatus is a host's status as the push summary shows it.
func pushStatus(h model.HostResult) string {
	if h.Status == model.HostSkipped && h.Transfer != nil && h.Transfer.Identical {
		return "skipped (identical)"
	}
	return string(h.Status)
}

// writePushSummary prints a push run's header, what was pushed where, a
// table of hosts and the totals of where the bytes came from.
func writePushSummary(w io.Writer, v *model.RunView) error {
	fmt.Fprintln(w, runHeader(v.Run, v.Hosts))
	if p := v.Run.Push; p != nil {
		fmt.Fprintf(w, "  push %s (%s, sha256:%s, md5:%s) → %s\n", orDash(p.File.Name), humanSize(p.File.Size),
			shortDigest(p.File.SHA256), shortDigest(p.File.MD5), p.Dest)
	}
	fmt.Fprintln(w)
	t := newTable(w, "HOST", "STATUS", "BYTES", "FROM ORIGIN", "FROM PEERS", "DURATION", "MD5", "ERROR")
	for _, h := range v.Hosts {
		bytes, origin, peers, md5, dur := "-", "-", "-", "-", "-"
		if d := h.Duration(); d > 0 {
			dur = d.Round(time.Millisecond).String()
		}
		if x := h.Transfer; x != nil {
			bytes, origin, peers, md5 = humanSize(x.Bytes), humanSize(x.FromOrigin), humanSize(x.FromPeers), orDash(shortDigest(x.MD5))
			if x.DurationSec > 0 {
				dur = time.Duration(x.DurationSec * float64(time.Second)).Round(time.Millisecond).String()
			}
		}
		t.row(h.Host, pushStatus(h), bytes, origin, peers, dur, md5, truncate(orDash(h.Error), 80))
	}
	if err := t.flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "\n"+totalsLine(sumTransfers(v.Hosts)))
	return err
}

// pushSize is the size of a push run's file, 0 if unknown.
func pushSize(r model.Run) int64 {
	if r.Push == nil {
		return 0
	}
	return r.Push.File.Size
}
