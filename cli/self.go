package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	ucli "github.com/urfave/cli/v2"
)

// SelfOptions are the inputs of `herd self`.
type SelfOptions struct {
	globals
	On string
}

func selfCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "self",
		Usage: "describe the node that answers: identity, addresses, health",
		Description: `Shows the node at --node (or, with --on NAME, another member reached over node
streams): its name, IDC, peer ID, addresses, labels and last health sample.`,
		Flags: commonFlags(
			&ucli.StringFlag{Name: "on", Usage: "describe node `NAME` instead of the node at --node"},
		),
		Action: func(c *ucli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			return runSelf(c.Context, SelfOptions{globals: readGlobals(c), On: c.String("on")}, c.App.Writer)
		},
	}
}

func runSelf(ctx context.Context, opts SelfOptions, w io.Writer) error {
	client, ctx, cancel, err := opts.connect(ctx, opts.On)
	defer cancel()
	if err != nil {
		return err
	}
	s, err := client.Self(ctx)
	if err != nil {
		return err
	}
	if opts.JSON {
		return printJSON(w, s)
	}
	m, h := s.Member, s.Member.Health
	t := newTable(w, "FIELD", "VALUE")
	for _, kv := range [][2]string{
		{"name", m.Name}, {"idc", m.IDC}, {"zone", dash(m.Zone)}, {"status", m.Status},
		{"version", dash(m.Version)}, {"peer id", m.PeerID},
		{"gossip", s.Gossip}, {"api", m.API}, {"p2p", m.P2P},
		{"encrypted", fmt.Sprint(s.Encrypted)}, {"labels", dash(formatLabels(m.Labels))},
		{"data dir", s.DataDir}, {"control size", fmt.Sprint(s.ControlSize)},
		{"load", fmt.Sprintf("%.2f %.2f %.2f", h.Load1, h.Load5, h.Load15)},
		{"cpu", fmt.Sprintf("%.1f%%", h.CPUPercent)},
		{"memory", fmt.Sprintf("%s free of %s", humanBytes(h.MemAvailable), humanBytes(h.MemTotal))},
		{"disk", fmt.Sprintf("%s free of %s", humanBytes(h.DiskFree), humanBytes(h.DiskTotal))},
		{"uptime", fmt.Sprintf("agent %s, host %s", humanAge(h.AgentUptime), humanAge(h.HostUptime))},
		{"started", s.Started.Format(time.RFC3339)},
	} {
		t.row(kv[0], kv[1])
	}
	return t.flush()
}
