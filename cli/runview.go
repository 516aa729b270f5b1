package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/node/api"
)

// This file is the one watch/render implementation that run, rerun and
// show share: following a run with blocking polls, the progress line, the
// summary that groups hosts by identical output, and the exit code.

// ExitInterrupted is the exit code when Ctrl-C stops the watching (the run
// itself continues), as shells report an interrupted command.
const ExitInterrupted = 130

// defaultPollWait bounds one blocking poll of a run.
const defaultPollWait = 30 * time.Second

// maxHeaderHosts caps the host names listed in a group header.
const maxHeaderHosts = 50

// startRun makes the call that starts a run, bounded by --timeout (its
// error through apiError), then follows the run with followRun, which
// the timeout does not bound.
func startRun(ctx context.Context, client *api.Client, g globals, w WatchOptions, start func(context.Context) (*model.Run, error), stdout, stderr io.Writer) error {
	rctx, cancel := g.context(ctx)
	r, err := start(rctx)
	cancel()
	if err != nil {
		return apiError(err)
	}
	return followRun(ctx, client, g, w, r, stdout, stderr)
}

// followRun prints r's id (detached) or watches r to the end and prints
// its summary; the returned error carries the exit code.
func followRun(ctx context.Context, client *api.Client, g globals, w WatchOptions, r *model.Run, stdout, stderr io.Writer) error {
	if w.Detach {
		if g.JSON {
			return printJSON(stdout, r)
		}
		_, err := fmt.Fprintln(stdout, r.ID)
		return err
	}
	if w.Progress != nil {
		fmt.Fprintf(w.Progress, "run %s: %d hosts in %s (Ctrl-C stops watching, not the run)\n", r.ID, r.Total, r.IDC)
	}
	view, err := watchRun(ctx, client, g, w, r)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "\nrun %s continues; herd cancel %s to stop it\n", r.ID, r.ID)
			return exitWith(ExitInterrupted)
		}
		return err
	}
	summary := writeSummary
	if view.Run.Push != nil {
		summary = writePushSummary
	}
	if g.JSON {
		if err := printJSON(stdout, view); err != nil {
			return err
		}
	} else if err := summary(stdout, view); err != nil {
		return err
	}
	return exitWith(runExitCode(view.Run))
}

// watchRun follows run r with blocking polls (hosts left out) until it is
// no longer running, drawing progress, then fetches the full view.
// Transient failures (a node restarting, a leader election) are retried
// for up to a minute.
func watchRun(ctx context.Context, client *api.Client, g globals, w WatchOptions, r *model.Run) (*model.RunView, error) {
	wait := w.Wait
	if wait <= 0 {
		wait = defaultPollWait
	}
	p := newProgress(w.Progress, w.TTY, r.Created)
	defer p.finish()
	var (
		index     uint64
		failingAt time.Time
		run       = *r
		hosts     []model.HostResult
		// A push's progress sums its finished hosts' bytes and the live
		// bytes of those still fetching: poll with hosts, every second.
		isPush = r.Push != nil
		live   *model.PushProgress
	)
	if isPush {
		p.line = func(run model.Run, elapsed time.Duration, bar bool) string {
			return pushProgressLine(run, hosts, live, elapsed, bar)
		}
		wait = min(wait, time.Second)
	}
	for run.Status == model.RunRunning || run.Status == "" {
		p.update(run)
		start := time.Now()
		rctx, cancel := requestContext(ctx, g, wait)
		v, next, err := client.Run(rctx, r.ID, api.RunQuery{IDC: r.IDC, Index: index, Wait: wait, NoHosts: !isPush})
		cancel()
		if err != nil {
			if ctx.Err() != nil || !transient(err) {
				return nil, err
			}
			if failingAt.IsZero() {
				failingAt = time.Now()
			} else if time.Since(failingAt) > time.Minute {
				return nil, fmt.Errorf("watching run %s: %w", r.ID, err)
			}
			if err := sleepCtx(ctx, time.Second); err != nil {
				return nil, err
			}
			continue
		}
		failingAt = time.Time{}
		// A server that answers at once without a change would make this
		// loop spin: pace it.
		if next == index && time.Since(start) < 200*time.Millisecond {
			if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
				return nil, err
			}
		}
		index, run, hosts = next, v.Run, v.Hosts
		if isPush && run.Status == model.RunRunning {
			pctx, cancel := requestContext(ctx, g, 0)
			if lp, err := client.PushProgress(pctx, r.IDC, r.ID); err == nil {
				live = lp
			}
			cancel()
		}
	}
	p.update(run)
	rctx, cancel := requestContext(ctx, g, 0)
	defer cancel()
	view, _, err := client.Run(rctx, r.ID, api.RunQuery{IDC: r.IDC})
	return view, err
}

// requestContext bounds one request by --timeout plus the time the server
// may hold it.
func requestContext(ctx context.Context, g globals, hold time.Duration) (context.Context, context.CancelFunc) {
	if g.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, g.Timeout+hold)
}

// transient reports whether a failed poll is worth repeating.
func transient(err error) bool {
	var ce *api.ConnectError
	var re *api.RequestError
	switch {
	case errors.As(err, &ce):
		return true
	case errors.As(err, &re):
		return re.Status >= 500 || re.Err.Code == api.CodeUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return false
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// runExitCode is 0 when every host succeeded or was skipped, else 1.
func runExitCode(r model.Run) int {
	ok := r.Counts[model.HostSuccess] + r.Counts[model.HostSkipped]
	if r.Status == model.RunSucceeded || (r.Total > 0 && ok == r.Total) {
		return ExitOK
	}
	return ExitFailure
}

// progress draws a run's progress on stderr: one line redrawn in place on
// a terminal, otherwise a plain line when something changed and at least
// plainEvery passed.
type progress struct {
	w        io.Writer
	tty      bool
	start    time.Time
	now      func() time.Time
	last     string
	lastAt   time.Time
	drawn    bool
	plainGap time.Duration
	// line renders the progress (default progressLine).
	line func(r model.Run, elapsed time.Duration, bar bool) string
}

const plainEvery = 10 * time.Second

func newProgress(w io.Writer, tty bool, start time.Time) *progress {
	if start.IsZero() {
		start = time.Now()
	}
	return &progress{w: w, tty: tty, start: start, now: time.Now, plainGap: plainEvery, line: progressLine}
}

// progressCounts writes the start of a progress line, the same for runs
// and pushes: an optional bar, then "12/20 UNIT · 1 failed · 8 running"
// and the pending hosts if any. It returns how many hosts are done.
func progressCounts(b *strings.Builder, r model.Run, bar bool, unit string) int {
	done, failed := endedCounts(r.Counts)
	if bar {
		const width = 24
		fill := 0
		if r.Total > 0 {
			fill = min(done, r.Total) * width / r.Total
		}
		b.WriteString("[" + strings.Repeat("#", fill) + strings.Repeat(" ", width-fill) + "] ")
	}
	fmt.Fprintf(b, "%d/%d %s · %d failed · %d running", done, r.Total, unit, failed, r.Counts[model.HostRunning])
	if n := r.Counts[model.HostPending]; n > 0 {
		fmt.Fprintf(b, " · %d pending", n)
	}
	return done
}

// progressLine renders counts as "[####    ] 12/20 done · 1 failed · 8 running · 3.1 hosts/s · 4s".
func progressLine(r model.Run, elapsed time.Duration, bar bool) string {
	var b strings.Builder
	done := progressCounts(&b, r, bar, "done")
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	fmt.Fprintf(&b, " · %.1f hosts/s · %s", rate, elapsed.Round(100*time.Millisecond))
	return b.String()
}

func (p *progress) update(r model.Run) {
	if p.w == nil {
		return
	}
	now := p.now()
	line := p.line(r, now.Sub(p.start), p.tty)
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		p.drawn = true
		return
	}
	// The elapsed part always changes; compare the counts only.
	counts := p.line(r, 0, false)
	if counts != p.last && now.Sub(p.lastAt) >= p.plainGap {
		fmt.Fprintf(p.w, "%s\n", line)
		p.last, p.lastAt = counts, now
	}
}

// finish ends the redrawn line so later output starts on its own line.
func (p *progress) finish() {
	if p.w != nil && p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// outputGroup is a set of hosts that ended the same way with the same output.
type outputGroup struct {
	Status   model.HostStatus
	ExitCode int
	Signal   string
	Hosts    []string
	Output   model.Output // the first host's; identical for all by digest
}

// outputKey identifies identical outcomes: digest, status and exit code.
func outputKey(h model.HostResult) string {
	sum := h.Output.SHA256
	if sum == "" && h.Output.Bytes > 0 {
		// No digest from the server: fall back to what we have.
		d := sha256.New()
		d.Write(h.Output.Head)
		d.Write([]byte{0})
		d.Write(h.Output.Tail)
		sum = fmt.Sprintf("%x/%d", d.Sum(nil), h.Output.Bytes)
	}
	return fmt.Sprintf("%s|%s|%d|%s", sum, h.Status, h.ExitCode, h.Signal)
}

// groupByOutput groups hosts whose output, status and exit code are the
// same. Hosts that produced nothing and carry an Error (unreachable, could
// not start) are left to the error list instead. Groups come largest
// first; ties in status display order, then by first host name. Host names
// within a group are sorted.
func groupByOutput(hosts []model.HostResult) []outputGroup {
	idx := map[string]int{}
	var groups []outputGroup
	for _, h := range hosts {
		if h.Output.Bytes == 0 && h.Error != "" {
			continue
		}
		k := outputKey(h)
		i, ok := idx[k]
		if !ok {
			i = len(groups)
			idx[k] = i
			groups = append(groups, outputGroup{Status: h.Status, ExitCode: h.ExitCode, Signal: h.Signal, Output: h.Output})
		}
		groups[i].Hosts = append(groups[i].Hosts, h.Host)
	}
	for i := range groups {
		sort.Strings(groups[i].Hosts)
	}
	sort.SliceStable(groups, func(i, j int) bool {
		a, b := groups[i], groups[j]
		if len(a.Hosts) != len(b.Hosts) {
			return len(a.Hosts) > len(b.Hosts)
		}
		if sa, sb := statusRank(a.Status), statusRank(b.Status); sa != sb {
			return sa < sb
		}
		return a.Hosts[0] < b.Hosts[0]
	})
	return groups
}

func statusRank(s model.HostStatus) int {
	if i := slices.Index(model.AllHostStatuses, s); i >= 0 {
		return i
	}
	return len(model.AllHostStatuses)
}

// outcome renders "success, exit 0", "timeout, signal KILL", "unreachable".
func outcome(status model.HostStatus, exit int, signal string) string {
	s := string(status)
	switch status {
	case model.HostSuccess, model.HostFailed:
		s += fmt.Sprintf(", exit %d", exit)
	}
	if signal != "" {
		s += ", signal " + signal
	}
	return s
}

// hostList renders names as "a, b, c", eliding past limit.
func hostList(names []string, limit int) string {
	if len(names) <= limit {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:limit], ", ") + fmt.Sprintf(", … (+%d more)", len(names)-limit)
}

func plural(n int, one string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %ss", n, one)
}

// statusCounts renders "18 success, 1 failed, 1 unreachable" in display order.
func statusCounts(counts map[model.HostStatus]int) string {
	var parts []string
	for _, s := range model.AllHostStatuses {
		if n := counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	if len(parts) == 0 {
		return "no hosts"
	}
	return strings.Join(parts, ", ")
}

// countHosts tallies statuses from the hosts themselves (the view's own
// truth when Run.Counts lags or is absent).
func countHosts(hosts []model.HostResult) map[model.HostStatus]int {
	c := map[model.HostStatus]int{}
	for _, h := range hosts {
		c[h.Status]++
	}
	return c
}

// runHeader renders the first line of a summary.
func runHeader(r model.Run, hosts []model.HostResult) string {
	counts := r.Counts
	if len(hosts) > 0 {
		counts = countHosts(hosts)
	}
	var took string
	if r.Finished != nil {
		took = " in " + r.Finished.Sub(r.Created).Round(10*time.Millisecond).String()
	}
	return fmt.Sprintf("run %s %s%s: %s of %s", r.ID, r.Status, took, statusCounts(counts), plural(r.Total, "host"))
}

// writeSummary prints the run's header, the hosts grouped by identical
// output with that output, then the hosts that failed to run with why.
func writeSummary(w io.Writer, v *model.RunView) error {
	if _, err := fmt.Fprintln(w, runHeader(v.Run, v.Hosts)); err != nil {
		return err
	}
	return writeGroups(w, v)
}

// writeGroups prints the grouped output and the error list of a view.
func writeGroups(w io.Writer, v *model.RunView) error {
	for _, g := range groupByOutput(v.Hosts) {
		fmt.Fprintf(w, "\n== %s (%s): %s ==\n", plural(len(g.Hosts), "host"), outcome(g.Status, g.ExitCode, g.Signal), hostList(g.Hosts, maxHeaderHosts))
		if err := writeOutput(w, v.Run.ID, g.Hosts[0], g.Status, g.Output); err != nil {
			return err
		}
	}
	var failed []model.HostResult
	for _, h := range v.Hosts {
		if h.Error != "" {
			failed = append(failed, h)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\n== %s did not run to completion ==\n", plural(len(failed), "host"))
	t := newTable(w, "HOST", "STATUS", "ERROR")
	for _, h := range failed {
		t.row(h.Host, string(h.Status), oneLine(h.Error))
	}
	return t.flush()
}

// writeOutput prints a host's kept output byte for byte: the head, a
// marker for the elided middle, the tail.
func writeOutput(w io.Writer, runID, host string, status model.HostStatus, o model.Output) error {
	if o.Bytes == 0 && len(o.Head) == 0 {
		msg := "(no output)"
		if !status.Terminal() {
			msg = "(no output yet)"
		}
		_, err := fmt.Fprintln(w, msg)
		return err
	}
	var b bytes.Buffer
	b.Write(o.Head)
	if o.Truncated {
		elided := o.Bytes - int64(len(o.Head)) - int64(len(o.Tail))
		if b.Len() > 0 && b.Bytes()[b.Len()-1] != '\n' {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "[... %d bytes elided; herd logs %s --host %s for all ...]\n", elided, runID, host)
	}
	b.Write(o.Tail)
	if b.Len() > 0 && b.Bytes()[b.Len()-1] != '\n' {
		b.WriteByte('\n')
	}
	_, err := w.Write(b.Bytes())
	return err
}

// oneLine squeezes a message onto one table line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// shortDigest is a display form of a sha256 hex digest.
func shortDigest(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// runScriptLabel is how a run's script is named in tables: name@version,
// else the inline command, else the digest of the body.
func runScriptLabel(s model.ScriptSpec) string {
	switch {
	case s.Name != "":
		if s.Version != "" {
			return s.Name + "@" + s.Version
		}
		return s.Name
	case s.Command != "":
		return s.Command
	case len(s.Body) > 0:
		sum := sha256.Sum256(s.Body)
		return s.Lang + " script " + hex.EncodeToString(sum[:])[:12]
	}
	return s.Lang + " script"
}

// truncate cuts s to n runes with an ellipsis.
func truncate(s string, n int) string {
	r := []rune(oneLine(s))
	if len(r) <= n {
		return string(r)
	}
	return string(r[:n-1]) + "…"
}
