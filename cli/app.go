// Package cli is herd's command line: one urfave/cli app whose commands talk
// to any node's HTTP API. Each verb lives in its own file as an Options
// struct plus a run function, so commands are testable without a terminal.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/herd-io/herd/node"
	"github.com/herd-io/herd/node/api"
)

// Exit codes scripts can trust.
const (
	ExitOK      = 0 // the operation succeeded
	ExitFailure = 1 // the operation ran and failed, or a runtime error
	ExitUsage   = 2 // bad flags, arguments or input; nothing was done
)

// UsageError marks an error caused by the caller's input.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// usagef returns a UsageError with a formatted message.
func usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Run executes the herd command line and returns the process exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	app := NewApp(stdout, stderr)
	err := app.Run(args)
	if err == nil {
		return ExitOK
	}
	var exit ucli.ExitCoder
	var usage *UsageError
	switch {
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "herd: %v\n", err)
		return ExitUsage
	case errors.As(err, &exit):
		if msg := err.Error(); msg != "" {
			fmt.Fprintf(stderr, "herd: %s\n", msg)
		}
		return exit.ExitCode()
	default:
		fmt.Fprintf(stderr, "herd: %v\n", err)
		return ExitFailure
	}
}

// Global flag names, shared by commands that read them.
const (
	flagNode    = "node"
	flagToken   = "token"
	flagTokenF  = "token-file"
	flagJSON    = "json"
	flagTimeout = "timeout"
)

// NewApp builds the herd command tree.
func NewApp(stdout, stderr io.Writer) *ucli.App {
	app := &ucli.App{
		Name:  "herd",
		Usage: "run jobs, push files and converge configuration across a server fleet",
		Description: `Every server runs the same binary as "herd agent"; the agents form an encrypted
gossip mesh per datacenter (IDC). Any node answers the CLI: point --node (or HERD_NODE)
at one and give the API token with --token (or HERD_TOKEN).

Try a local mesh:   herd dev --nodes 5 --idcs 2
Then, in a shell:   eval "$(herd dev ... | grep ^export)"; herd members`,
		Version:              node.Version,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideVersion:          true,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: flagNode, EnvVars: []string{"HERD_NODE"}, Value: api.DefaultAddress,
				Usage: "API address (`HOST:PORT`) of the node to talk to; any node answers"},
			&ucli.StringFlag{Name: flagToken, EnvVars: []string{"HERD_TOKEN"},
				Usage: "API `TOKEN` (default: read from --token-file)"},
			&ucli.StringFlag{Name: flagTokenF, EnvVars: []string{"HERD_TOKEN_FILE"},
				Usage: "read the API token from `FILE` (default: /var/lib/herd/api-token when readable)"},
			&ucli.BoolFlag{Name: flagJSON, Usage: "print machine-readable JSON instead of tables"},
			&ucli.DurationFlag{Name: flagTimeout, Value: api.DefaultTimeout,
				Usage: "give up on a request after `DURATION` (e.g. 30s, 2m)"},
		},
		Commands: []*ucli.Command{
			agentCommand(),
			membersCommand(),
			selfCommand(),
			pingCommand(),
			kvCommand(),
			runCommand(),
			runsCommand(),
			showCommand(),
			logsCommand(),
			rerunCommand(),
			cancelCommand(),
			scriptCommand(),
			accountCommand(),
			groupCommand(),
			fileCommand(),
			pushCommand(),
			hostCommand(),
			controlCommand(),
			devCommand(),
			keygenCommand(),
			versionCommand(),
			completionCommand(),
		},
		OnUsageError: func(_ *ucli.Context, err error, _ bool) error {
			return &UsageError{Err: err}
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown command %q; see 'herd --help'", c.Args().First())
			}
			return ucli.ShowAppHelp(c)
		},
	}
	for _, cmd := range app.Commands {
		cmd.OnUsageError = app.OnUsageError
	}
	return app
}

// globals are the global flags every API command needs.
type globals struct {
	Node      string
	Token     string
	TokenFile string
	JSON      bool
	Timeout   time.Duration
}

// readGlobals resolves the global flags. Operators type them before or
// after the verb (`herd --json members`, `herd members --json`), so API
// commands carry local copies without defaults (commonFlags); a value set
// on the command wins, otherwise the root's value (flag, env or default).
func readGlobals(c *ucli.Context) globals {
	at := func(name string) *ucli.Context {
		lineage := c.Lineage()
		for _, lc := range lineage {
			if slices.Contains(lc.LocalFlagNames(), name) {
				return lc
			}
		}
		return lineage[len(lineage)-1]
	}
	return globals{
		Node:      at(flagNode).String(flagNode),
		Token:     at(flagToken).String(flagToken),
		TokenFile: at(flagTokenF).String(flagTokenF),
		JSON:      at(flagJSON).Bool(flagJSON),
		Timeout:   at(flagTimeout).Duration(flagTimeout),
	}
}

// commonFlags are command-level copies of the global flags, so they may
// also follow the verb. They have no defaults and no env vars: those live
// on the root flags, which readGlobals falls back to.
func commonFlags(extra ...ucli.Flag) []ucli.Flag {
	return append([]ucli.Flag{
		&ucli.StringFlag{Name: flagNode, Usage: "API address (`HOST:PORT`) of the node to talk to (env HERD_NODE)"},
		&ucli.StringFlag{Name: flagToken, Usage: "API `TOKEN` (env HERD_TOKEN)"},
		&ucli.StringFlag{Name: flagTokenF, Usage: "read the API token from `FILE`"},
		&ucli.BoolFlag{Name: flagJSON, Usage: "print JSON instead of a table"},
		&ucli.DurationFlag{Name: flagTimeout, Usage: "give up after `DURATION` (default 30s)"},
	}, extra...)
}

// defaultTokenFile is where an agent with default settings keeps its token.
const defaultTokenFile = "/var/lib/herd/" + node.TokenFileName

// client builds the API client from the global flags.
func (g globals) client() (*api.Client, error) {
	token := g.Token
	if token == "" {
		path := g.TokenFile
		if path == "" {
			path = defaultTokenFile
		}
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			token = string(trimSpace(data))
		case g.TokenFile != "":
			return nil, usagef("token-file: %v", err)
		}
	}
	c, err := api.NewClient(g.Node, token)
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	return c, nil
}

// connect is the prelude of every API command: a client (whose requests
// node on serves, when set) and a context bounded by --timeout. cancel is
// never nil.
func (g globals) connect(parent context.Context, on string) (*api.Client, context.Context, context.CancelFunc, error) {
	c, err := g.client()
	if err != nil {
		return nil, parent, func() {}, err
	}
	if on != "" {
		c = c.On(on)
	}
	ctx, cancel := g.context(parent)
	return c, ctx, cancel, nil
}

// context returns a context bounded by --timeout.
func (g globals) context(parent context.Context) (context.Context, context.CancelFunc) {
	if g.Timeout <= 0 {
		return context.WithCancel(parent)
	}
	return context.WithTimeout(parent, g.Timeout)
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// noArgs rejects positional arguments for commands that take none.
func noArgs(c *ucli.Context) error {
	if c.NArg() > 0 {
		return usagef("%s takes no arguments, got %q", c.Command.Name, c.Args().First())
	}
	return nil
}
