// Command herd is the single binary every server runs: `herd agent` is the
// daemon, every other command is the CLI that talks to any node.
package main

import (
	"os"

	"github.com/herd-io/herd/cli"
)

func main() {
	os.Exit(cli.Run(os.Args, os.Stdout, os.Stderr))
}
