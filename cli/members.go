package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/node/api"
)

// MembersOptions are the inputs of `herd members`.
type MembersOptions struct {
	globals
	Query api.MembersQuery
	// On names the node that answers; "" = the node at --node.
	On string
	// Wide adds labels and peer IDs to the table.
	Wide bool
}

func membersCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "members",
		Usage: "list the nodes of an IDC with their status and health",
		Description: `Lists the members of the answering node's gossip pool (its IDC), or with --idc
those of another IDC, answered by one of its nodes across the WAN pool. Health comes from
gossip, so any node gives the same answer without a central server.

  herd members
  herd members --status alive --select 'role=web,env in (prod,staging),!canary'
  herd members --json | jq '.members[].name'

Selector grammar: comma-separated requirements, all of which must hold:
  k=v  k==v  k!=v  k in (a,b)  k notin (a,b)  k (label present)  !k (label absent)
Built-in attributes name, idc, zone, status and version match like labels.`,
		Flags: commonFlags(
			&ucli.StringFlag{Name: "idc", Usage: "only members of `IDC`"},
			&ucli.StringFlag{Name: "status", Usage: "only members whose status is `STATUS` (alive, suspect, failed, left)"},
			&ucli.StringFlag{Name: "select", Aliases: []string{"l"}, Usage: "only members matching `SELECTOR`"},
			&ucli.StringFlag{Name: "on", Usage: "ask node `NAME` (reached over node streams) instead of --node"},
			&ucli.BoolFlag{Name: "wide", Aliases: []string{"w"}, Usage: "also show labels and peer IDs"},
		),
		Action: func(c *ucli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			opts := MembersOptions{
				globals: readGlobals(c),
				Query:   api.MembersQuery{IDC: c.String("idc"), Status: c.String("status"), Selector: c.String("select")},
				On:      c.String("on"),
				Wide:    c.Bool("wide"),
			}
			return runMembers(c.Context, opts, c.App.Writer)
		},
	}
}

func runMembers(ctx context.Context, opts MembersOptions, w io.Writer) error {
	// Check the selector here so a typo is a usage error, not a server error.
	if _, err := mesh.ParseSelector(opts.Query.Selector); err != nil {
		return usagef("select: %v", err)
	}
	switch opts.Query.Status {
	case "", "alive", "suspect", "failed", "left":
	default:
		return usagef("status %q: want alive, suspect, failed or left", opts.Query.Status)
	}
	client, ctx, cancel, err := opts.connect(ctx, opts.On)
	defer cancel()
	if err != nil {
		return err
	}
	out, err := client.Members(ctx, opts.Query)
	if err != nil {
		return err
	}
	if opts.JSON {
		return printJSON(w, out)
	}
	header := []string{"NAME", "IDC", "ZONE", "ADDRESS", "STATUS", "LOAD", "MEM", "DISK", "AGE"}
	if opts.Wide {
		header = append(header, "VERSION", "LABELS", "PEER ID")
	}
	t := newTable(w, header...)
	now := time.Now()
	for _, m := range out.Members {
		h := m.Health
		row := []string{
			m.Name, m.IDC, dash(m.Zone), m.Addr, m.Status,
			fmt.Sprintf("%.2f", h.Load1),
			percent(h.MemTotal-h.MemAvailable, h.MemTotal),
			percent(h.DiskTotal-h.DiskFree, h.DiskTotal),
			humanAge(now.Sub(m.Since)),
		}
		if opts.Wide {
			row = append(row, dash(m.Version), dash(formatLabels(m.Labels)), m.PeerID)
		}
		t.row(row...)
	}
	return t.flush()
}

func formatLabels(l map[string]string) string {
	parts := make([]string, 0, len(l))
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
