package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/node/api"
)

// RunOptions are the inputs of `herd run`: the request to send plus how to
// follow it.
type RunOptions struct {
	globals
	Request model.RunRequest
	Watch   WatchOptions
}

// WatchOptions say how run and rerun follow a run once it exists.
type WatchOptions struct {
	// Detach prints the run id (or the Run with --json) and returns at once.
	Detach bool
	// Progress is where the live progress goes (stderr); nil draws none.
	Progress io.Writer
	// TTY redraws one line in place; otherwise a plain line now and then.
	TTY bool
	// Wait bounds each blocking poll (default 30s).
	Wait time.Duration
}

// Flag names of `herd run`. Its --timeout is the script's timeout: the
// request timeout is then only the global `herd --timeout D run ...`.
const (
	flagScriptTimeout = "timeout"
)

func targetFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.BoolFlag{Name: "all", Usage: "every host of the IDC (agents and SSH targets)"},
		&ucli.StringFlag{Name: "idc", Usage: "run in `IDC` (default: the IDC of the answering node)"},
		&ucli.StringSliceFlag{Name: "hosts", Usage: "these hosts (`a,b`; repeatable)"},
		&ucli.StringSliceFlag{Name: "group", Usage: "the hosts of static group `G` (repeatable)"},
		&ucli.StringFlag{Name: "select", Aliases: []string{"l"}, Usage: "live members matching `SELECTOR`, e.g. 'role=web,env in (prod,staging),!canary'"},
	}
}

func watchFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "print the run id and return without watching"},
	}
}

func runCommand() *ucli.Command {
	flags := withoutFlag(commonFlags(), flagTimeout)
	flags = append(flags, targetFlags()...)
	flags = append(flags,
		&ucli.StringFlag{Name: "script", Aliases: []string{"f"}, Usage: "run the script in `FILE` (- reads stdin)"},
		&ucli.StringFlag{Name: "script-name", Aliases: []string{"s"}, Usage: "run library script `NAME[@VERSION]` (default: its online version)"},
		&ucli.StringFlag{Name: "lang", Usage: "interpret the script with `LANG`: sh, bash or python (default: from the #! line, else sh)"},
		&ucli.StringFlag{Name: "args", Usage: "positional `ARGS` for the script, split like a shell does (\"a 'b c'\")"},
		&ucli.GenericFlag{Name: "env", Value: &stringList{}, Usage: "set `K=V` in the script's environment (repeatable)"},
		&ucli.StringFlag{Name: flagScriptTimeout, Usage: "kill the script (and its children) after `DURATION` (default 1h)"},
		&ucli.StringFlag{Name: "workdir", Usage: "run in `DIR` (absolute; default: the account's home)"},
		&ucli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "run as execution account `NAME` (default: the cluster default; see herd account)"},
		&ucli.BoolFlag{Name: "dry-run", Usage: "print the resolved targets and run nothing"},
	)
	flags = append(flags, watchFlags()...)
	return nounDefaults(&ucli.Command{
		Name:      "run",
		Usage:     "run a command or script on many hosts and report every host's outcome",
		ArgsUsage: "[TARGETS] [--script FILE | --script-name NAME[@VERSION] | -- COMMAND ARGS...]",
		Description: `Runs a script on the targeted hosts of one IDC, shows a live progress line on a terminal,
then a summary that groups hosts by identical output. Exit code: 0 when every host
succeeded (or was skipped), 1 when any did not, 2 for bad input.

Targets (their union): --all, --hosts a,b, --group G, --select SELECTOR, within --idc.
The script: words after -- are joined with single spaces into one sh command line (as ssh
does), so quote what the remote shell must see: herd run --all -- 'df -h / | tail -1'.
Or --script FILE, or --script-name NAME[@VERSION] from the library (herd script).

  herd run --all -- uptime
  herd run --select 'role=web,!canary' --user deploy --timeout 2m --script deploy.sh --args "v42 --fast"
  herd run --group db --script-name backup@3fa2b1c4d5e6 --env LEVEL=full --detach

Ctrl-C stops watching; the run continues (herd cancel RUN stops it).`,
		Flags: flags,
		Action: func(c *ucli.Context) error {
			o, err := readRunOptions(c, os.Stdin)
			if err != nil {
				return err
			}
			return watching(c, &o.Watch, func(ctx context.Context, stdout, stderr io.Writer) error {
				return runRun(ctx, o, stdout, stderr)
			})
		},
	})
}

// readRunOptions turns flags and arguments into a RunRequest. Every input
// error is a UsageError (exit 2), found before anything is sent.
func readRunOptions(c *ucli.Context, stdin io.Reader) (RunOptions, error) {
	o := RunOptions{globals: readGlobals(c)}
	// --timeout here is the script's; the request timeout is the root's.
	lineage := c.Lineage()
	o.Timeout = lineage[len(lineage)-1].Duration(flagTimeout)
	o.Watch.Detach = c.Bool("detach")

	t, err := readTargets(c)
	if err != nil {
		return o, err
	}
	spec, ref, err := readScript(c, stdin)
	if err != nil {
		return o, err
	}
	o.Request = model.RunRequest{
		Targets:   t,
		Script:    spec,
		ScriptRef: ref,
		Account:   c.String("user"),
		DryRun:    c.Bool("dry-run"),
	}
	if o.Request.Account != "" {
		if err := model.ValidateName("account", o.Request.Account); err != nil {
			return o, usagef("user: %v", err)
		}
	}
	return o, nil
}

// readTargets reads the target flags and checks them as far as the client can.
func readTargets(c *ucli.Context) (model.Targets, error) {
	t := model.Targets{
		All:      c.Bool("all"),
		IDC:      c.String("idc"),
		Hosts:    splitList(c.StringSlice("hosts")),
		Groups:   splitList(c.StringSlice("group")),
		Selector: strings.TrimSpace(c.String("select")),
	}
	if _, err := mesh.ParseSelector(t.Selector); err != nil {
		return t, usagef("select: %v", err)
	}
	if err := t.Validate(); err != nil {
		return t, &UsageError{Err: err}
	}
	return t, nil
}

// readScript resolves the one script source (inline words, --script FILE or
// --script-name) and the options that shape it.
func readScript(c *ucli.Context, stdin io.Reader) (model.ScriptSpec, string, error) {
	spec := model.ScriptSpec{Lang: c.String("lang"), WorkDir: c.String("workdir")}
	if err := model.ValidateLang(spec.Lang); err != nil {
		return spec, "", usagef("lang: %v", err)
	}
	if s := c.String(flagScriptTimeout); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return spec, "", usagef("timeout %q: want a positive duration like 30s or 5m", s)
		}
		spec.Timeout = model.Duration(d)
	}
	if s := c.String("args"); s != "" {
		args, err := splitShellWords(s)
		if err != nil {
			return spec, "", usagef("args: %v", err)
		}
		spec.Args = args
	}
	env, err := parseEnv(c.Generic("env").(*stringList).values)
	if err != nil {
		return spec, "", err
	}
	spec.Env = env

	inline, file, ref := c.Args().Slice(), c.String("script"), c.String("script-name")
	sources := 0
	for _, set := range []bool{len(inline) > 0, file != "", ref != ""} {
		if set {
			sources++
		}
	}
	switch {
	case sources == 0 && c.Bool("dry-run"):
		return spec, "", nil // a dry run only resolves targets
	case sources == 0:
		return spec, "", usagef("nothing to run: give -- COMMAND ARGS..., --script FILE or --script-name NAME")
	case sources > 1:
		return spec, "", usagef("give one of -- COMMAND, --script FILE and --script-name NAME, not several")
	case len(inline) > 0:
		spec.Command = strings.Join(inline, " ")
		spec.Body = []byte(spec.Command + "\n")
	case file != "":
		body, err := readScriptFile(file, stdin)
		if err != nil {
			return spec, "", err
		}
		spec.Body = body
		if spec.Lang == "" {
			spec.Lang = guessLang(file, body)
		}
	default:
		name, version, _ := strings.Cut(ref, "@")
		if err := model.ValidateName("script name", name); err != nil {
			return spec, "", usagef("script-name: %v", err)
		}
		if strings.Contains(ref, "@") && !scriptVersionRE.MatchString(version) {
			return spec, "", usagef("script-name %q: a version is 12 hex digits (herd script versions %s)", ref, name)
		}
		// The body comes from the library; validate the rest with a stand-in.
		probe := spec
		probe.Body = []byte("true")
		if err := probe.Validate(); err != nil {
			return spec, "", &UsageError{Err: err}
		}
		return spec, ref, nil
	}
	if err := spec.Validate(); err != nil {
		return spec, "", &UsageError{Err: err}
	}
	return spec, "", nil
}

var scriptVersionRE = regexp.MustCompile(`^[0-9a-f]{12}$`)

// scriptVersion is the content address of a script body: the first 12 hex
// digits of its SHA-256, as the library names versions.
func scriptVersion(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])[:12]
}

// readScriptFile reads a script from path (- = stdin), bounded by the
// server's limit so an oversized file fails before anything is sent.
func readScriptFile(path string, stdin io.Reader) ([]byte, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, usagef("script: %v", err)
		}
		defer f.Close()
		r = f
	}
	body, err := io.ReadAll(io.LimitReader(r, model.MaxScriptSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading script %s: %w", path, err)
	}
	if len(body) > model.MaxScriptSize {
		return nil, usagef("script %s is larger than the %d KiB limit: distribute large payloads with herd push", path, model.MaxScriptSize>>10)
	}
	if len(body) == 0 {
		return nil, usagef("script %s is empty", path)
	}
	return body, nil
}

// guessLang picks the language of a script given without --lang: from its
// #! line, else from the file name's extension, else sh.
func guessLang(name string, body []byte) string {
	if line, _, _ := strings.Cut(string(body[:min(len(body), 128)]), "\n"); strings.HasPrefix(line, "#!") {
		switch {
		case strings.Contains(line, "python"):
			return "python"
		case strings.Contains(line, "bash"):
			return "bash"
		case strings.HasSuffix(line, "/sh") || strings.Contains(line, "/sh ") || strings.HasSuffix(line, " sh"):
			return "sh"
		}
	}
	switch filepath.Ext(name) {
	case ".py":
		return "python"
	case ".bash":
		return "bash"
	}
	return "sh"
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseEnv turns repeated K=V flags into a map; a later K wins.
func parseEnv(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	env := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return nil, usagef("env %q: want NAME=VALUE", p)
		}
		if !envNameRE.MatchString(k) {
			return nil, usagef("env %q: the name must be letters, digits and '_', not starting with a digit", p)
		}
		env[k] = v
	}
	return env, nil
}

// splitShellWords splits s into words the way sh does for a simple
// command: blanks separate words; single quotes keep everything; double
// quotes keep everything but \" \\ \$ \`; a backslash outside quotes
// escapes the next character. No expansion of any kind.
func splitShellWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
	)
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case ch == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("trailing backslash")
			}
			i++
			cur.WriteByte(s[i])
			in = true
		case ch == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			in = true
		case ch == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			in = true
		default:
			cur.WriteByte(ch)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// stringList is a repeatable flag value that keeps commas (unlike
// StringSliceFlag): --env 'LIST=a,b'.
type stringList struct{ values []string }

// Set appends one occurrence.
func (l *stringList) Set(v string) error { l.values = append(l.values, v); return nil }

// String renders the values for help output.
func (l *stringList) String() string { return strings.Join(l.values, " ") }

// withoutFlag drops the flag called name from flags.
func withoutFlag(flags []ucli.Flag, name string) []ucli.Flag {
	out := flags[:0:0]
	for _, f := range flags {
		if f.Names()[0] != name {
			out = append(out, f)
		}
	}
	return out
}

// nounDefaults finishes a noun's command tree: flag errors of its
// subcommands exit 2 like the top-level commands' (NewApp sets that only
// one level deep), and leaf verbs get no implicit "help" subcommand, which
// would swallow a first argument named "help" or "h" (--help still works).
func nounDefaults(cmd *ucli.Command) *ucli.Command {
	for _, sub := range cmd.Subcommands {
		sub.OnUsageError = func(_ *ucli.Context, err error, _ bool) error { return &UsageError{Err: err} }
		nounDefaults(sub)
	}
	if len(cmd.Subcommands) == 0 {
		cmd.HideHelpCommand = true
	}
	return cmd
}

// apiError makes a 400 from the server a usage error (exit 2); everything
// else stays an operation failure (exit 1). An error that is already a
// usage error is returned as it is, so applying apiError twice is harmless.
func apiError(err error) error {
	var usage *UsageError
	if errors.As(err, &usage) {
		return err
	}
	return kvError(err)
}

// isNotFound reports whether err is the API's not_found answer.
func isNotFound(err error) bool {
	var re *api.RequestError
	return errors.As(err, &re) && re.Err.Code == api.CodeNotFound
}

// exitStatus ends a command with a bare exit code: the command has already
// said why. It wraps the ExitCoder instead of being one because urfave
// would otherwise call os.Exit itself.
type exitStatus struct{ code int }

func (e exitStatus) Error() string { return "" }
func (e exitStatus) Unwrap() error { return ucli.Exit("", e.code) }

// exitWith returns nil for ExitOK, else an error that makes Run exit code.
func exitWith(code int) error {
	if code == ExitOK {
		return nil
	}
	return exitStatus{code}
}

func runRun(ctx context.Context, o RunOptions, stdout, stderr io.Writer) error {
	client, err := o.client()
	if err != nil {
		return err
	}
	if o.Request.DryRun {
		rctx, cancel := o.context(ctx)
		defer cancel()
		dr, err := client.DryRun(rctx, o.Request)
		if err != nil {
			return apiError(err)
		}
		return printDryRun(stdout, dr, o.JSON)
	}
	return startRun(ctx, client, o.globals, o.Watch, func(ctx context.Context) (*model.Run, error) {
		return client.CreateRun(ctx, o.Request)
	}, stdout, stderr)
}

func printDryRun(w io.Writer, dr *model.DryRun, asJSON bool) error {
	if asJSON {
		return printJSON(w, dr)
	}
	fmt.Fprintf(w, "%d hosts in %s would run:\n", len(dr.Targets), dr.IDC)
	t := newTable(w, "HOST", "KIND")
	for _, tg := range dr.Targets {
		t.row(tg.Name, string(tg.Kind))
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(dr.Unknown) > 0 {
		_, err := fmt.Fprintf(w, "unknown (would be unreachable): %s\n", strings.Join(dr.Unknown, ", "))
		return err
	}
	return nil
}

// watching runs a command that starts a run and follows it (run, rerun,
// push): its progress goes to stderr, redrawn in place on a terminal, and
// Ctrl-C stops the watching, not the run. watch is filled in before run
// is called.
func watching(c *ucli.Context, watch *WatchOptions, run func(ctx context.Context, stdout, stderr io.Writer) error) error {
	watch.Progress, watch.TTY = c.App.ErrWriter, isTerminal(c.App.ErrWriter)
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt)
	defer stop()
	return run(ctx, c.App.Writer, c.App.ErrWriter)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// argsAnywhere wraps an action so its flags may also follow the positional
// arguments, as operators type them (`herd script add NAME --file F`):
// urfave stops parsing flags at the first argument, so the action sets the
// ones it finds among the arguments itself. Words after "--" stay
// positional. The action receives the positional arguments.
func argsAnywhere(action func(c *ucli.Context, args []string) error) ucli.ActionFunc {
	return func(c *ucli.Context) error {
		args := c.Args().Slice()
		var pos []string
		for i := 0; i < len(args); i++ {
			a := args[i]
			if a == "--" {
				pos = append(pos, args[i+1:]...)
				break
			}
			if len(a) < 2 || a[0] != '-' {
				pos = append(pos, a)
				continue
			}
			name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
			f := lookupFlag(c.Command.Flags, name)
			if f == nil {
				return usagef("flag provided but not defined: %s", a)
			}
			if name == "help" || name == "h" {
				ucli.HelpPrinter(c.App.Writer, ucli.CommandHelpTemplate, c.Command)
				return nil
			}
			if tv, ok := f.(ucli.DocGenerationFlag); ok && tv.TakesValue() {
				if !hasVal {
					if i+1 >= len(args) {
						return usagef("flag needs an argument: %s", a)
					}
					i++
					val = args[i]
				}
			} else if !hasVal {
				val = "true"
			}
			if err := c.Set(name, val); err != nil {
				return usagef("invalid value %q for flag %s: %v", val, a, err)
			}
		}
		return action(c, pos)
	}
}

// lookupFlag finds the flag called name (or an alias of it) in flags.
func lookupFlag(flags []ucli.Flag, name string) ucli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}
