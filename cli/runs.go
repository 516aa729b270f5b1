package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/node/api"
)

// RunRefOptions are the inputs of the verbs that act on one existing run:
// show, logs, rerun and cancel.
type RunRefOptions struct {
	globals
	ID  string
	IDC string // the run's IDC ("" = the answering node's)
}

func runIDCFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "idc", Usage: "the run belongs to `IDC` (default: the answering node's)"}
}

// readRunRef reads the RUN argument and --idc.
func readRunRef(c *ucli.Context, args []string) (RunRefOptions, error) {
	o := RunRefOptions{globals: readGlobals(c), IDC: c.String("idc")}
	if len(args) != 1 {
		return o, usagef("%s takes exactly one RUN id (see herd runs)", c.Command.Name)
	}
	o.ID = args[0]
	if err := model.ValidateRunID(o.ID); err != nil {
		return o, &UsageError{Err: err}
	}
	return o, nil
}

// RunsOptions are the inputs of `herd runs`.
type RunsOptions struct {
	globals
	Query api.RunsQuery
}

func runsCommand() *ucli.Command {
	return nounDefaults(&ucli.Command{
		Name:  "runs",
		Usage: "list runs, newest first",
		Description: `Lists the runs of an IDC with how many hosts succeeded and failed.

  herd runs
  herd runs --status failed --limit 5
  herd runs --idc sh1 --json | jq -r '.runs[].id'`,
		Flags: commonFlags(
			&ucli.StringFlag{Name: "status", Usage: "only runs whose status is `STATUS` (running, succeeded, failed, cancelled)"},
			&ucli.IntFlag{Name: "limit", Aliases: []string{"n"}, Value: 20, Usage: "at most `N` runs"},
			&ucli.StringFlag{Name: "idc", Usage: "runs of `IDC` (default: the answering node's)"},
		),
		Action: func(c *ucli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			o := RunsOptions{globals: readGlobals(c), Query: api.RunsQuery{IDC: c.String("idc"), Status: c.String("status"), Limit: c.Int("limit")}}
			return runRuns(c.Context, o, c.App.Writer)
		},
	})
}

func runRuns(ctx context.Context, o RunsOptions, w io.Writer) error {
	switch model.RunStatus(o.Query.Status) {
	case "", model.RunRunning, model.RunSucceeded, model.RunFailed, model.RunCancelled:
	default:
		return usagef("status %q: want running, succeeded, failed or cancelled", o.Query.Status)
	}
	if o.Query.Limit < 0 {
		return usagef("limit %d: want a positive number", o.Query.Limit)
	}
	l, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.RunList, error) {
		return c.Runs(ctx, o.Query)
	})
	if err != nil {
		return err
	}
	return o.emit(w, l, func() error {
		t := newTable(w, "ID", "STATUS", "HOSTS", "FAILED", "SCRIPT", "AGE")
		for _, r := range l.Runs {
			ok := r.Counts[model.HostSuccess] + r.Counts[model.HostSkipped]
			t.row(r.ID, string(r.Status), fmt.Sprintf("%d/%d", ok, r.Total), fmt.Sprint(failedCount(r.Counts)),
				truncate(runScriptLabel(r.Script), 40), humanAge(time.Since(r.Created)))
		}
		return t.flush()
	})
}

// failedCount counts hosts that ended without success.
func failedCount(counts map[model.HostStatus]int) int {
	_, failed := endedCounts(counts)
	return failed
}

// endedCounts counts the hosts that have ended (done) and those of them
// that ended without success (failed): skipped hosts count as succeeded.
func endedCounts(counts map[model.HostStatus]int) (done, failed int) {
	for s, n := range counts {
		if s.Terminal() {
			done += n
			if s != model.HostSuccess && s != model.HostSkipped {
				failed += n
			}
		}
	}
	return done, failed
}

func showCommand() *ucli.Command {
	return nounDefaults(&ucli.Command{
		Name:      "show",
		Usage:     "show a run: its hosts, their status and their output grouped",
		ArgsUsage: "RUN",
		Description: `Prints the run, a table of its hosts, then the hosts grouped by identical output
(first and last 32 KiB of each; herd logs has all of it).

  herd show r-7f3a2c
  herd show r-7f3a2c --exit-code >/dev/null || echo "some host failed"
  herd show r-7f3a2c --json | jq '.hosts[] | select(.status != "success") | .host'`,
		Flags: commonFlags(runIDCFlag(),
			&ucli.BoolFlag{Name: "exit-code", Usage: "exit 1 unless every host succeeded (as herd run does)"},
		),
		Action: argsAnywhere(func(c *ucli.Context, args []string) error {
			o, err := readRunRef(c, args)
			if err != nil {
				return err
			}
			return runShow(c.Context, o, c.Bool("exit-code"), c.App.Writer)
		}),
	})
}

func runShow(ctx context.Context, o RunRefOptions, exitCode bool, w io.Writer) error {
	v, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.RunView, error) {
		v, _, err := c.Run(ctx, o.ID, api.RunQuery{IDC: o.IDC})
		return v, err
	})
	if err != nil {
		return err
	}
	if err := o.emit(w, v, func() error { return writeRunView(w, v) }); err != nil || !exitCode {
		return err
	}
	return exitWith(runExitCode(v.Run))
}

// writeRunView prints a run in full: header, details, host table, groups.
func writeRunView(w io.Writer, v *model.RunView) error {
	r := v.Run
	fmt.Fprintln(w, runHeader(r, v.Hosts))
	fmt.Fprintf(w, "  script:   %s (%s)\n", runScriptLabel(r.Script), orDash(r.Script.Lang))
	if len(r.Script.Args) > 0 {
		fmt.Fprintf(w, "  args:     %q\n", r.Script.Args)
	}
	account := orDash(r.Account)
	if r.OSUser != "" && r.OSUser != r.Account {
		account += " (os user " + r.OSUser + ")"
	}
	fmt.Fprintf(w, "  account:  %s\n", account)
	fmt.Fprintf(w, "  targets:  %s\n", describeTargets(r.Targets))
	fmt.Fprintf(w, "  created:  %s (%s ago)", r.Created.Format(time.RFC3339), humanAge(time.Since(r.Created)))
	if r.CreatedBy != "" {
		fmt.Fprintf(w, " via %s", r.CreatedBy)
	}
	fmt.Fprintln(w)
	if r.RerunOf != "" {
		fmt.Fprintf(w, "  rerun of: %s\n", r.RerunOf)
	}
	if r.Cancelled {
		fmt.Fprintln(w, "  cancel requested")
	}
	fmt.Fprintln(w)
	t := newTable(w, "HOST", "STATUS", "EXIT", "DURATION", "BYTES", "ERROR")
	for _, h := range v.Hosts {
		exit := "-"
		if h.Status == model.HostSuccess || h.Status == model.HostFailed {
			exit = fmt.Sprint(h.ExitCode)
		}
		if h.Signal != "" {
			exit = h.Signal
		}
		dur := "-"
		if d := h.Duration(); d > 0 {
			dur = d.Round(time.Millisecond).String()
		}
		t.row(h.Host, string(h.Status), exit, dur, humanSize(h.Output.Bytes), truncate(orDash(h.Error), 60))
	}
	if err := t.flush(); err != nil {
		return err
	}
	return writeGroups(w, v)
}

// describeTargets renders a target selection as the flags that made it.
func describeTargets(t model.Targets) string {
	var parts []string
	if t.All {
		parts = append(parts, "--all")
	}
	if t.IDC != "" {
		parts = append(parts, "--idc "+t.IDC)
	}
	if len(t.Hosts) > 0 {
		parts = append(parts, "--hosts "+hostList(t.Hosts, 10))
	}
	for _, g := range t.Groups {
		parts = append(parts, "--group "+g)
	}
	if t.Selector != "" {
		parts = append(parts, "--select '"+t.Selector+"'")
	}
	return orDash(strings.Join(parts, " "))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// LogsOptions are the inputs of `herd logs`.
type LogsOptions struct {
	RunRefOptions
	Host   string
	Follow bool
	// Poll is the pause between --follow reads that found nothing new.
	Poll time.Duration
}

func logsCommand() *ucli.Command {
	return nounDefaults(&ucli.Command{
		Name:      "logs",
		Usage:     "print a run's full output, byte for byte",
		ArgsUsage: "RUN",
		Description: `Prints the full combined stdout and stderr of the run's hosts, fetched from the disks
of the agents that ran them, exactly as produced (binary-safe). With several hosts and no
--host, each host's output follows a "==> HOST <==" line.

  herd logs r-7f3a2c --host web-03
  herd logs r-7f3a2c --host web-03 --follow
  herd logs r-7f3a2c > all.txt`,
		Flags: commonFlags(runIDCFlag(),
			&ucli.StringFlag{Name: "host", Aliases: []string{"H"}, Usage: "only `HOST`'s output"},
			&ucli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new output until the host is done"},
		),
		Action: argsAnywhere(func(c *ucli.Context, args []string) error {
			ref, err := readRunRef(c, args)
			if err != nil {
				return err
			}
			o := LogsOptions{RunRefOptions: ref, Host: c.String("host"), Follow: c.Bool("follow")}
			if o.Follow {
				// Following outlives the request timeout; it applies per request.
				var stop context.CancelFunc
				c.Context, stop = signal.NotifyContext(c.Context, os.Interrupt)
				defer stop()
			}
			return runLogs(c.Context, o, c.App.Writer, c.App.ErrWriter)
		}),
	})
}

func runLogs(ctx context.Context, o LogsOptions, stdout, stderr io.Writer) error {
	client, err := o.client()
	if err != nil {
		return err
	}
	hosts := []string{o.Host}
	if o.Host == "" {
		rctx, cancel := o.context(ctx)
		v, _, err := client.Run(rctx, o.ID, api.RunQuery{IDC: o.IDC})
		cancel()
		if err != nil {
			return apiError(err)
		}
		hosts = hosts[:0]
		for _, h := range v.Hosts {
			hosts = append(hosts, h.Host)
		}
	}
	for i, h := range hosts {
		if len(hosts) > 1 {
			sep := ""
			if i > 0 {
				sep = "\n"
			}
			fmt.Fprintf(stdout, "%s==> %s <==\n", sep, h)
		}
		if err := copyHostLog(ctx, client, o, h, stdout, stderr); err != nil {
			return err
		}
	}
	return nil
}

// copyHostLog writes one host's output from offset 0 to w as it is stored.
func copyHostLog(ctx context.Context, client *api.Client, o LogsOptions, host string, w, stderr io.Writer) error {
	poll := o.Poll
	if poll <= 0 {
		poll = time.Second
	}
	var offset int64
	for {
		rctx, cancel := o.context(ctx)
		ch, err := client.RunLogs(rctx, o.ID, api.LogsQuery{IDC: o.IDC, Host: host, Offset: offset})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C while following
			}
			return apiError(err)
		}
		if _, err := w.Write(ch.Data); err != nil {
			return err
		}
		offset += int64(len(ch.Data))
		if ch.Partial {
			fmt.Fprintf(stderr, "herd: %s: the agent that ran it could not be asked; this is only the first and last part the control group keeps (%d bytes in all)\n", host, ch.Size)
			return nil
		}
		switch {
		case ch.Done:
			return nil
		case len(ch.Data) > 0 && offset < ch.Size:
			continue // more is stored already
		case !o.Follow:
			return nil
		}
		if err := sleepCtx(ctx, poll); err != nil {
			return nil
		}
	}
}

// RerunOptions are the inputs of `herd rerun`.
type RerunOptions struct {
	RunRefOptions
	Failed bool
	Watch  WatchOptions
}

func rerunCommand() *ucli.Command {
	return nounDefaults(&ucli.Command{
		Name:      "rerun",
		Usage:     "run a run's script again, on all its hosts or only the failed ones",
		ArgsUsage: "RUN",
		Description: `Starts a new run linked to RUN, with the same script, account and options, and watches it
like herd run does (same summary and exit code). --failed limits it to the hosts that
ended failed, timeout, unreachable or cancelled.

  herd rerun r-7f3a2c --failed
  herd rerun r-7f3a2c --detach`,
		Flags: commonFlags(append([]ucli.Flag{runIDCFlag(),
			&ucli.BoolFlag{Name: "failed", Usage: "only the hosts that did not succeed"},
		}, watchFlags()...)...),
		Action: argsAnywhere(func(c *ucli.Context, args []string) error {
			ref, err := readRunRef(c, args)
			if err != nil {
				return err
			}
			o := RerunOptions{RunRefOptions: ref, Failed: c.Bool("failed")}
			o.Watch.Detach = c.Bool("detach")
			return watching(c, &o.Watch, func(ctx context.Context, stdout, stderr io.Writer) error {
				return runRerun(ctx, o, stdout, stderr)
			})
		}),
	})
}

func runRerun(ctx context.Context, o RerunOptions, stdout, stderr io.Writer) error {
	client, err := o.client()
	if err != nil {
		return err
	}
	return startRun(ctx, client, o.globals, o.Watch, func(ctx context.Context) (*model.Run, error) {
		return client.Rerun(ctx, o.ID, o.IDC, o.Failed)
	}, stdout, stderr)
}

func cancelCommand() *ucli.Command {
	return nounDefaults(&ucli.Command{
		Name:      "cancel",
		Usage:     "cancel a run: hosts not started never start, running scripts are killed",
		ArgsUsage: "RUN",
		Description: `Marks the run cancelled. Hosts that have not started end "cancelled"; running scripts
are killed with their whole process group. Hosts already finished keep their result.

  herd cancel r-7f3a2c
  herd cancel r-7f3a2c --json`,
		Flags: commonFlags(runIDCFlag()),
		Action: argsAnywhere(func(c *ucli.Context, args []string) error {
			o, err := readRunRef(c, args)
			if err != nil {
				return err
			}
			return runCancel(c.Context, o, c.App.Writer)
		}),
	})
}

func runCancel(ctx context.Context, o RunRefOptions, w io.Writer) error {
	r, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.Run, error) {
		return c.CancelRun(ctx, o.ID, o.IDC)
	})
	if err != nil {
		return err
	}
	return o.emit(w, r, func() error {
		left := r.Counts[model.HostPending] + r.Counts[model.HostRunning]
		if r.Status == model.RunRunning && left > 0 {
			return writef(w, "run %s: cancel requested; %s still stopping (%s)\n", r.ID, plural(left, "host"), statusCounts(r.Counts))
		}
		return writef(w, "run %s is %s (%s)\n", r.ID, r.Status, statusCounts(r.Counts))
	})
}
