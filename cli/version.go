package cli

import (
	"fmt"
	"runtime"

	ucli "github.com/urfave/cli/v2"

	"github.com/herd-io/herd/node"
)

func versionCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "version",
		Usage: "print the herd version",
		Flags: []ucli.Flag{&ucli.BoolFlag{Name: flagJSON, Usage: "print JSON"}},
		Action: func(c *ucli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if readGlobals(c).JSON {
				return printJSON(c.App.Writer, map[string]string{
					"version": node.Version, "go": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH,
				})
			}
			_, err := fmt.Fprintf(c.App.Writer, "herd %s (%s, %s/%s)\n", node.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
