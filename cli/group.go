package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/node/api"
)

// GroupOptions are the inputs shared by the `herd group` verbs.
type GroupOptions struct {
	globals
	Name string
}

// readGroupArgs reads NAME and, when hosts is set, at least one HOST after it.
func readGroupArgs(c *ucli.Context, args []string, hosts bool) (GroupOptions, []string, error) {
	o := GroupOptions{globals: readGlobals(c)}
	switch {
	case hosts && len(args) < 2:
		return o, nil, usagef("group %s takes NAME and one or more HOSTs", c.Command.Name)
	case !hosts && len(args) != 1:
		return o, nil, usagef("group %s takes exactly one NAME", c.Command.Name)
	}
	o.Name = args[0]
	if err := model.ValidateName("group name", o.Name); err != nil {
		return o, nil, &UsageError{Err: err}
	}
	names := splitList(args[1:])
	for _, h := range names {
		if err := model.ValidateName("host name", h); err != nil {
			return o, nil, &UsageError{Err: err}
		}
	}
	return o, names, nil
}

func groupCommand() *ucli.Command {
	return nounDefaults(&ucli.Command{
		Name:  "group",
		Usage: "manage static groups of hosts (targets for herd run --group)",
		Description: `A static group is a named list of host names kept in the control group. For groups that
follow labels instead, use herd run --select.

  herd group create db --hosts db-1,db-2 --description "postgres primaries"
  herd group add db db-3
  herd run --group db -- systemctl is-active postgresql`,
		Subcommands: []*ucli.Command{
			{
				Name: "create", Usage: "create a static group", ArgsUsage: "NAME",
				Description: `  herd group create web --hosts web-1,web-2,web-3
  herd group create canary --description "first wave"`,
				Flags: commonFlags(
					&ucli.StringSliceFlag{Name: "hosts", Usage: "initial members (`a,b`; repeatable)"},
					&ucli.StringFlag{Name: "description", Usage: "what the group is (`TEXT`)"},
				),
				Action: argsAnywhere(func(c *ucli.Context, args []string) error {
					o, _, err := readGroupArgs(c, args, false)
					if err != nil {
						return err
					}
					g := model.Group{Name: o.Name, Description: c.String("description"), Hosts: splitList(c.StringSlice("hosts"))}
					for _, h := range g.Hosts {
						if err := model.ValidateName("host name", h); err != nil {
							return usagef("hosts: %v", err)
						}
					}
					if g.Hosts == nil {
						g.Hosts = []string{}
					}
					return runGroupWrite(c.Context, o, func(ctx context.Context, client groupClient) (*model.Group, error) {
						return client.CreateGroup(ctx, g)
					}, "created", c.App.Writer)
				}),
			},
			{
				Name: "list", Usage: "list static groups", Flags: commonFlags(),
				Description: `  herd group list`,
				Action: func(c *ucli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					return runGroupList(c.Context, GroupOptions{globals: readGlobals(c)}, c.App.Writer)
				},
			},
			{
				Name: "show", Usage: "show a static group's hosts", ArgsUsage: "NAME", Flags: commonFlags(),
				Description: `  herd group show db`,
				Action: argsAnywhere(func(c *ucli.Context, args []string) error {
					o, _, err := readGroupArgs(c, args, false)
					if err != nil {
						return err
					}
					return runGroupWrite(c.Context, o, func(ctx context.Context, client groupClient) (*model.Group, error) {
						return client.Group(ctx, o.Name)
					}, "", c.App.Writer)
				}),
			},
			{
				Name: "add", Usage: "add hosts to a static group", ArgsUsage: "NAME HOST...", Flags: commonFlags(),
				Description: `  herd group add db db-3 db-4`,
				Action:      groupHostsAction(false),
			},
			{
				Name: "remove", Usage: "remove hosts from a static group", ArgsUsage: "NAME HOST...", Flags: commonFlags(),
				Description: `  herd group remove db db-1`,
				Action:      groupHostsAction(true),
			},
			{
				Name: "rm", Usage: "delete a static group", ArgsUsage: "NAME", Flags: commonFlags(),
				Description: `  herd group rm canary`,
				Action: argsAnywhere(func(c *ucli.Context, args []string) error {
					o, _, err := readGroupArgs(c, args, false)
					if err != nil {
						return err
					}
					return runGroupRemove(c.Context, o, c.App.Writer)
				}),
			},
		},
	})
}

// groupHostsAction is the action of group add and, with remove set, group
// remove: NAME, then the HOSTs to add to or remove from it.
func groupHostsAction(remove bool) ucli.ActionFunc {
	return argsAnywhere(func(c *ucli.Context, args []string) error {
		o, hosts, err := readGroupArgs(c, args, true)
		if err != nil {
			return err
		}
		add, rm := hosts, []string(nil)
		if remove {
			add, rm = nil, hosts
		}
		return runGroupWrite(c.Context, o, func(ctx context.Context, client groupClient) (*model.Group, error) {
			return client.UpdateGroupHosts(ctx, o.Name, add, rm)
		}, "updated", c.App.Writer)
	})
}

// groupClient is the slice of the API client the group verbs use.
type groupClient interface {
	Group(ctx context.Context, name string) (*model.Group, error)
	CreateGroup(ctx context.Context, g model.Group) (*model.Group, error)
	UpdateGroupHosts(ctx context.Context, name string, add, remove []string) (*model.Group, error)
}

// runGroupWrite performs one call that answers a group and prints it;
// verb ("created", "updated", "") heads the human form.
func runGroupWrite(ctx context.Context, o GroupOptions, call func(context.Context, groupClient) (*model.Group, error), verb string, w io.Writer) error {
	g, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.Group, error) {
		return call(ctx, c)
	})
	if err != nil {
		return err
	}
	g.Hosts = nonNil(g.Hosts)
	return o.emit(w, g, func() error {
		if verb != "" {
			verb += " "
		}
		fmt.Fprintf(w, "%sgroup %s: %s\n", verb, g.Name, plural(len(g.Hosts), "host"))
		if g.Description != "" {
			fmt.Fprintf(w, "  %s\n", g.Description)
		}
		for _, h := range g.Hosts {
			fmt.Fprintf(w, "  %s\n", h)
		}
		return nil
	})
}

func runGroupList(ctx context.Context, o GroupOptions, w io.Writer) error {
	groups, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) ([]model.Group, error) {
		return c.Groups(ctx)
	})
	if err != nil {
		return err
	}
	return o.emit(w, map[string][]model.Group{"groups": nonNil(groups)}, func() error {
		t := newTable(w, "NAME", "HOSTS", "MEMBERS", "DESCRIPTION")
		for _, g := range groups {
			t.row(g.Name, fmt.Sprint(len(g.Hosts)), truncate(orDash(strings.Join(g.Hosts, ",")), 40), truncate(orDash(g.Description), 40))
		}
		return t.flush()
	})
}

func runGroupRemove(ctx context.Context, o GroupOptions, w io.Writer) error {
	return runRemove(ctx, o.globals, w, func(ctx context.Context, c *api.Client) error {
		return c.DeleteGroup(ctx, o.Name)
	}, map[string]string{"deleted": o.Name}, "group "+o.Name)
}
