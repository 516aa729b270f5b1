package cli

import (
	"context"
	"io"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/node/api"
)

// AccountOptions are the inputs shared by the `herd account` verbs.
type AccountOptions struct {
	globals
}

func accountCommand() *ucli.Command {
	return nounDefaults(&ucli.Command{
		Name:  "account",
		Usage: "manage execution accounts: the OS users scripts may run as",
		Description: `A run executes as an account (herd run --user NAME), which maps to an OS user on the
hosts, optionally limited to some static groups or IDCs. A run naming an unregistered
account is refused. Without --user, runs use the default account; with none set, the
agents' own OS user.

  herd account add deploy --os-user deploy --groups web,api
  herd account default deploy
  herd account list`,
		Subcommands: []*ucli.Command{
			{
				Name: "add", Usage: "register (or replace) an execution account", ArgsUsage: "NAME",
				Description: `  herd account add deploy
  herd account add backup --os-user postgres --groups db --idcs sh1,bj2`,
				Flags: commonFlags(
					&ucli.StringFlag{Name: "os-user", Usage: "the OS `USER` on the hosts (default: NAME)"},
					&ucli.StringSliceFlag{Name: "groups", Usage: "only on hosts of these static `GROUPS` (a,b)"},
					&ucli.StringSliceFlag{Name: "idcs", Usage: "only in these `IDCS` (a,b)"},
				),
				Action: argsAnywhere(func(c *ucli.Context, args []string) error {
					if len(args) != 1 {
						return usagef("account add takes exactly one NAME")
					}
					a := model.Account{Name: args[0], OSUser: c.String("os-user"),
						Groups: splitList(c.StringSlice("groups")), IDCs: splitList(c.StringSlice("idcs"))}
					if err := validateAccount(a); err != nil {
						return err
					}
					return runAccountAdd(c.Context, AccountOptions{readGlobals(c)}, a, c.App.Writer)
				}),
			},
			{
				Name: "list", Usage: "list execution accounts", Flags: commonFlags(),
				Description: `  herd account list
  herd account list --json | jq -r .default`,
				Action: func(c *ucli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					return runAccountList(c.Context, AccountOptions{readGlobals(c)}, c.App.Writer)
				},
			},
			{
				Name: "rm", Usage: "remove an execution account", ArgsUsage: "NAME", Flags: commonFlags(),
				Description: `  herd account rm deploy`,
				Action: argsAnywhere(func(c *ucli.Context, args []string) error {
					if len(args) != 1 {
						return usagef("account rm takes exactly one NAME")
					}
					if err := model.ValidateName("account name", args[0]); err != nil {
						return &UsageError{Err: err}
					}
					return runAccountRemove(c.Context, AccountOptions{readGlobals(c)}, args[0], c.App.Writer)
				}),
			},
			{
				Name: "default", Usage: "print or set the account runs use without --user", ArgsUsage: "[NAME]",
				Description: `  herd account default            # print it
  herd account default deploy
  herd account default --clear    # runs use the agents' own OS user`,
				Flags: commonFlags(&ucli.BoolFlag{Name: "clear", Usage: "unset the default"}),
				Action: argsAnywhere(func(c *ucli.Context, args []string) error {
					o := AccountOptions{readGlobals(c)}
					switch {
					case len(args) > 1:
						return usagef("account default takes at most one NAME")
					case len(args) == 1 && c.Bool("clear"):
						return usagef("give a NAME or --clear, not both")
					case len(args) == 1:
						if err := model.ValidateName("account name", args[0]); err != nil {
							return &UsageError{Err: err}
						}
						return runAccountDefault(c.Context, o, args[0], true, c.App.Writer)
					case c.Bool("clear"):
						return runAccountDefault(c.Context, o, "", true, c.App.Writer)
					}
					return runAccountDefault(c.Context, o, "", false, c.App.Writer)
				}),
			},
		},
	})
}

func validateAccount(a model.Account) error {
	if err := model.ValidateName("account name", a.Name); err != nil {
		return &UsageError{Err: err}
	}
	for _, g := range a.Groups {
		if err := model.ValidateName("group name", g); err != nil {
			return usagef("groups: %v", err)
		}
	}
	for _, i := range a.IDCs {
		if err := model.ValidateName("idc", i); err != nil {
			return usagef("idcs: %v", err)
		}
	}
	return nil
}

func runAccountAdd(ctx context.Context, o AccountOptions, a model.Account, w io.Writer) error {
	out, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.Account, error) {
		return c.PutAccount(ctx, a)
	})
	if err != nil {
		return err
	}
	return o.emit(w, out, func() error {
		return writef(w, "account %s runs as OS user %s%s\n", out.Name, orDash(out.OSUser), accountLimits(*out))
	})
}

// accountLimits renders " on groups web, api in IDCs sh1" or "".
func accountLimits(a model.Account) string {
	var s string
	if len(a.Groups) > 0 {
		s += " on groups " + strings.Join(a.Groups, ", ")
	}
	if len(a.IDCs) > 0 {
		s += " in IDCs " + strings.Join(a.IDCs, ", ")
	}
	return s
}

func runAccountList(ctx context.Context, o AccountOptions, w io.Writer) error {
	l, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.AccountList, error) {
		return c.Accounts(ctx)
	})
	if err != nil {
		return err
	}
	l.Accounts = nonNil(l.Accounts)
	return o.emit(w, l, func() error {
		t := newTable(w, "NAME", "OS USER", "GROUPS", "IDCS", "DEFAULT")
		for _, a := range l.Accounts {
			def := ""
			if a.Name == l.Default {
				def = "*"
			}
			t.row(a.Name, orDash(a.OSUser), orDash(strings.Join(a.Groups, ",")), orDash(strings.Join(a.IDCs, ",")), def)
		}
		return t.flush()
	})
}

func runAccountRemove(ctx context.Context, o AccountOptions, name string, w io.Writer) error {
	return runRemove(ctx, o.globals, w, func(ctx context.Context, c *api.Client) error {
		return c.DeleteAccount(ctx, name)
	}, map[string]string{"deleted": name}, "account "+name)
}

// runAccountDefault prints the default account, or with set sets it to
// name ("" clears it).
func runAccountDefault(ctx context.Context, o AccountOptions, name string, set bool, w io.Writer) error {
	l, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.AccountList, error) {
		if set {
			return c.SetDefaultAccount(ctx, name)
		}
		return c.Accounts(ctx)
	})
	if err != nil {
		return err
	}
	return o.emit(w, map[string]string{"default": l.Default}, func() error {
		if l.Default == "" {
			return writef(w, "no default account: runs without --user use the agents' own OS user\n")
		}
		return writef(w, "%s\n", l.Default)
	})
}
