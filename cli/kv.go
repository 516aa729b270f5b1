package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	ucli "github.com/urfave/cli/v2"

	"github.com/herd-io/herd/node/api"
)

// KVOptions are the inputs shared by the `herd kv` verbs.
type KVOptions struct {
	globals
	Scope string
	CAS   *uint64
	Query api.KVQuery
}

func kvScopeFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "idc", Usage: "scope the key to `IDC` instead of global"},
	}
}

func kvCASFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "cas", Usage: "only if the key is at `VERSION` (0: only if it does not exist)"}
}

func kvReadFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.BoolFlag{Name: "consistent", Usage: "linearizable read: the leader confirms leadership with a quorum first"},
		&ucli.BoolFlag{Name: "stale", Usage: "any control member may answer, possibly a little behind"},
		&ucli.Uint64Flag{Name: "index", Usage: "block until the state index passes `N` (from a previous answer)"},
		&ucli.DurationFlag{Name: "wait", Usage: "with --index, block at most `DURATION` (default 5m)"},
	}
}

func readKVOptions(c *ucli.Context) (KVOptions, error) {
	o := KVOptions{globals: readGlobals(c), Scope: c.String("idc")}
	if o.Scope == "" {
		o.Scope = "global"
	}
	if c.IsSet("cas") {
		n, err := strconv.ParseUint(c.String("cas"), 10, 64)
		if err != nil {
			return o, usagef("cas: %q is not a version number", c.String("cas"))
		}
		o.CAS = &n
	}
	o.Query = api.KVQuery{
		Scope:      o.Scope,
		Consistent: c.Bool("consistent"),
		Stale:      c.Bool("stale"),
		Index:      c.Uint64("index"),
		Wait:       c.Duration("wait"),
	}
	if o.Query.Consistent && o.Query.Stale {
		return o, usagef("give --consistent or --stale, not both")
	}
	if o.Query.Index > 0 {
		// A blocking read outlives the default request timeout.
		o.Timeout = 0
	}
	return o, nil
}

func kvCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "kv",
		Usage: "read and write versioned config objects in the control group",
		Description: `Keys are paths like app/web/version. Objects are global by default (owned by the
primary IDC and replicated to every IDC) or scoped to one IDC with --idc. Every write bumps
the object's version; --cas VERSION writes only if nobody changed it meanwhile.

  herd kv put app/web/version 42
  herd kv put --cas 1 app/web/version 43        # fails if the version is not 1
  herd kv put --idc sh1 lb/pool @pool.txt        # value from a file; - reads stdin
  herd kv get app/web/version
  herd kv get --index 7 --wait 1m app/web/version   # block until it changes
  herd kv list app/`,
		Subcommands: []*ucli.Command{
			{
				Name: "put", Usage: "write a key", ArgsUsage: "KEY VALUE|@FILE|-",
				Flags: commonFlags(append(kvScopeFlags(), kvCASFlag())...),
				Action: func(c *ucli.Context) error {
					if c.NArg() != 2 {
						return usagef("kv put takes KEY and VALUE (or @FILE, or - for stdin)")
					}
					o, err := readKVOptions(c)
					if err != nil {
						return err
					}
					value, err := readValue(c.Args().Get(1), os.Stdin)
					if err != nil {
						return err
					}
					return runKVPut(c.Context, o, c.Args().Get(0), value, c.App.Writer)
				},
			},
			{
				Name: "get", Usage: "read a key (prints the raw value; --json for the object)", ArgsUsage: "KEY",
				Flags: commonFlags(append(kvScopeFlags(), kvReadFlags()...)...),
				Action: func(c *ucli.Context) error {
					if c.NArg() != 1 {
						return usagef("kv get takes exactly one KEY")
					}
					o, err := readKVOptions(c)
					if err != nil {
						return err
					}
					return runKVGet(c.Context, o, c.Args().First(), c.App.Writer)
				},
			},
			{
				Name: "list", Usage: "list keys under a prefix", ArgsUsage: "[PREFIX]",
				Flags: commonFlags(append(kvScopeFlags(), kvReadFlags()...)...),
				Action: func(c *ucli.Context) error {
					if c.NArg() > 1 {
						return usagef("kv list takes at most one PREFIX")
					}
					o, err := readKVOptions(c)
					if err != nil {
						return err
					}
					return runKVList(c.Context, o, c.Args().First(), c.App.Writer)
				},
			},
			{
				Name: "delete", Usage: "delete a key", ArgsUsage: "KEY",
				Flags: commonFlags(append(kvScopeFlags(), kvCASFlag())...),
				Action: func(c *ucli.Context) error {
					if c.NArg() != 1 {
						return usagef("kv delete takes exactly one KEY")
					}
					o, err := readKVOptions(c)
					if err != nil {
						return err
					}
					return runKVDelete(c.Context, o, c.Args().First(), c.App.Writer)
				},
			},
		},
	}
}

// maxCLIValue mirrors the server's value limit so a huge file fails early.
const maxCLIValue = 512 << 10

// readValue resolves VALUE, @FILE or - (stdin).
func readValue(arg string, stdin io.Reader) ([]byte, error) {
	var r io.Reader
	switch {
	case arg == "-":
		r = stdin
	case len(arg) > 1 && arg[0] == '@':
		f, err := os.Open(arg[1:])
		if err != nil {
			return nil, usagef("value: %v", err)
		}
		defer f.Close()
		r = f
	default:
		return []byte(arg), nil
	}
	data, err := io.ReadAll(io.LimitReader(r, maxCLIValue+1))
	if err != nil {
		return nil, fmt.Errorf("reading value: %w", err)
	}
	if len(data) > maxCLIValue {
		return nil, usagef("value is larger than the %d-byte limit", maxCLIValue)
	}
	return data, nil
}

func runKVPut(ctx context.Context, o KVOptions, key string, value []byte, w io.Writer) error {
	client, ctx, cancel, err := o.connect(ctx, "")
	defer cancel()
	if err != nil {
		return err
	}
	e, err := client.KVPut(ctx, key, value, o.Scope, o.CAS)
	if err != nil {
		return kvError(err)
	}
	if o.JSON {
		return printJSON(w, e)
	}
	_, err = fmt.Fprintf(w, "%s (%s) is at version %d (index %d)\n", e.Key, e.Scope, e.Version, e.ModifyIndex)
	return err
}

func runKVGet(ctx context.Context, o KVOptions, key string, w io.Writer) error {
	client, ctx, cancel, err := o.connect(ctx, "")
	defer cancel()
	if err != nil {
		return err
	}
	e, err := client.KVGet(ctx, key, o.Query)
	if err != nil {
		return kvError(err)
	}
	if o.JSON {
		return printJSON(w, e)
	}
	_, err = w.Write(e.Value)
	return err
}

func runKVList(ctx context.Context, o KVOptions, prefix string, w io.Writer) error {
	client, ctx, cancel, err := o.connect(ctx, "")
	defer cancel()
	if err != nil {
		return err
	}
	l, err := client.KVList(ctx, prefix, o.Query)
	if err != nil {
		return kvError(err)
	}
	if o.JSON {
		return printJSON(w, l)
	}
	t := newTable(w, "KEY", "SCOPE", "VERSION", "SIZE", "MODIFIED")
	for _, e := range l.Entries {
		t.row(e.Key, e.Scope, fmt.Sprint(e.Version), humanBytes(uint64(len(e.Value))), fmt.Sprint(e.ModifyIndex))
	}
	return t.flush()
}

func runKVDelete(ctx context.Context, o KVOptions, key string, w io.Writer) error {
	client, ctx, cancel, err := o.connect(ctx, "")
	defer cancel()
	if err != nil {
		return err
	}
	if err := client.KVDelete(ctx, key, o.Scope, o.CAS); err != nil {
		return kvError(err)
	}
	if o.JSON {
		return printJSON(w, map[string]string{"deleted": key, "scope": o.Scope})
	}
	_, err = fmt.Fprintf(w, "deleted %s (%s)\n", key, o.Scope)
	return err
}

// kvError makes bad input from the server a usage error (exit 2); CAS
// conflicts and unavailability stay operation failures (exit 1).
func kvError(err error) error {
	var re *api.RequestError
	if errors.As(err, &re) && re.Err.Code == api.CodeBadRequest {
		return &UsageError{Err: err}
	}
	return err
}
