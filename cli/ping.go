package cli

import (
	"context"
	"fmt"
	"io"

	ucli "github.com/urfave/cli/v2"
)

// PingOptions are the inputs of `herd ping`.
type PingOptions struct {
	globals
	Target string
}

func pingCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "ping",
		Usage:     "measure the node-stream round trip from the answering node to another",
		ArgsUsage: "NAME",
		Flags:     commonFlags(),
		Description: `Asks the node at --node to open an authenticated, encrypted node stream to member
NAME and time a ping over it. A failure means the two nodes cannot talk directly
(firewall on the p2p port, or NAME is not a live member).`,
		Action: func(c *ucli.Context) error {
			if c.NArg() != 1 {
				return usagef("ping takes exactly one member NAME")
			}
			return runPing(c.Context, PingOptions{globals: readGlobals(c), Target: c.Args().First()}, c.App.Writer)
		},
	}
}

func runPing(ctx context.Context, opts PingOptions, w io.Writer) error {
	client, ctx, cancel, err := opts.connect(ctx, "")
	defer cancel()
	if err != nil {
		return err
	}
	p, err := client.Ping(ctx, opts.Target)
	if err != nil {
		return err
	}
	if opts.JSON {
		return printJSON(w, p)
	}
	_, err = fmt.Fprintf(w, "%s -> %s: %s\n", p.From, p.To, p.RTT)
	return err
}
