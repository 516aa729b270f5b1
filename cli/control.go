package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"
)

// ControlStatusOptions are the inputs of `herd control status`.
type ControlStatusOptions struct {
	globals
	IDC string
}

func controlCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "control",
		Usage: "inspect the per-IDC control group (Raft) that holds job and config state",
		Subcommands: []*ucli.Command{{
			Name:  "status",
			Usage: "show voters, non-voters, leader, term, indexes and replication lag",
			Description: `Each IDC elects its own control group among its nodes; no operator picks servers.
While an IDC has fewer alive nodes than --control-size, status says what it waits for.

  herd control status
  herd control status --idc bj1      # forwarded once across the WAN to that IDC`,
			Flags: commonFlags(&ucli.StringFlag{Name: "idc", Usage: "show the control group of `IDC`"}),
			Action: func(c *ucli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				return runControlStatus(c.Context, ControlStatusOptions{globals: readGlobals(c), IDC: c.String("idc")}, c.App.Writer)
			},
		}},
	}
}

func runControlStatus(ctx context.Context, o ControlStatusOptions, w io.Writer) error {
	client, ctx, cancel, err := o.connect(ctx, "")
	defer cancel()
	if err != nil {
		return err
	}
	st, err := client.ControlStatus(ctx, o.IDC)
	if err != nil {
		return err
	}
	if o.JSON {
		return printJSON(w, st)
	}
	fmt.Fprintf(w, "IDC %s (primary IDC: %s), control size %d\n", st.IDC, st.PrimaryIDC, st.ControlSize)
	if st.Waiting != "" {
		fmt.Fprintf(w, "not formed: %s\n", st.Waiting)
		return nil
	}
	fmt.Fprintf(w, "leader %s, term %d, commit index %d, applied index %d, last contact %s\n",
		dash(st.Leader), st.Term, st.CommitIndex, st.AppliedIndex, st.LastContact.Round(time.Millisecond))
	if r := st.Replication; r != nil {
		lag := "never"
		if !r.LastSuccess.IsZero() {
			lag = humanAge(time.Since(r.LastSuccess)) + " ago"
		}
		state := "replicating"
		if !r.Running {
			state = "not running here"
		}
		fmt.Fprintf(w, "global replication: %s, source index %d, last success %s", state, r.SourceIndex, lag)
		if r.LastError != "" {
			fmt.Fprintf(w, ", last error: %s", r.LastError)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	t := newTable(w, "SERVER", "SUFFRAGE", "ZONE", "HEALTHY", "PEER ID")
	for _, s := range st.Servers {
		suffrage := s.Suffrage
		if s.Name == st.Leader {
			suffrage += " (leader)"
		}
		t.row(s.Name, suffrage, dash(s.Zone), fmt.Sprint(s.Healthy), s.PeerID)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(st.WANMembers) > 0 {
		var parts []string
		for _, m := range st.WANMembers {
			parts = append(parts, fmt.Sprintf("%s[%s]", m.Name, m.Status))
		}
		fmt.Fprintf(w, "\nWAN pool: %s\n", strings.Join(parts, " "))
	}
	return nil
}
