package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/herd-io/herd/node"
	"github.com/herd-io/herd/node/devmesh"
)

// DevOptions are the inputs of `herd dev`.
type DevOptions struct {
	Nodes       int
	IDCs        int
	Dir         string
	ControlSize int
	LogLevel    string
	JSON        bool
}

func devCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "dev",
		Usage: "run a local mesh of real agents on loopback, for trying herd out",
		Description: `Starts N real "herd agent" processes on 127.0.0.1, each with its own data dir and
ports, spread round-robin over K IDCs (dc1, dc2, ...), with one generated gossip key and
API token. It stays in the foreground until Ctrl-C, then stops every agent gracefully
and removes a temporary --dir.

It prints the lines a shell can eval, and each node's name, IDC, PID and API address;
the same is written as JSON to DIR/cluster.json for scripts:

  herd dev --nodes 5 --idcs 2 --dir /tmp/herd-dev &
  eval "$(grep -h '^export' /tmp/herd-dev/env)"; herd members

Each node gets a dev-only --fs-root (DIR/nodeN/root) that absolute destination paths
resolve into, so pushes show one real copy per node.`,
		Flags: []ucli.Flag{
			&ucli.IntFlag{Name: "nodes", Aliases: []string{"n"}, Value: 3, Usage: "number of agents (`N`)"},
			&ucli.IntFlag{Name: "idcs", Value: 1, Usage: "spread the agents over `K` IDCs"},
			&ucli.PathFlag{Name: "dir", Usage: "keep data dirs, logs and cluster.json in `DIR` (default: a temporary dir, removed at exit)"},
			&ucli.IntFlag{Name: "control-size", Usage: "control-group voters per IDC (default: 3 when every IDC has 3 nodes, else 1)"},
			&ucli.StringFlag{Name: "log-level", Value: "info", Usage: "agents' log `LEVEL`"},
			&ucli.BoolFlag{Name: flagJSON, Usage: "print the cluster description as JSON"},
		},
		Action: func(c *ucli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			opts := DevOptions{
				Nodes:       c.Int("nodes"),
				IDCs:        c.Int("idcs"),
				Dir:         c.Path("dir"),
				ControlSize: c.Int("control-size"),
				LogLevel:    c.String("log-level"),
				JSON:        readGlobals(c).JSON,
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDev(ctx, opts, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func runDev(ctx context.Context, opts DevOptions, stdout, stderr io.Writer) error {
	if opts.Nodes < 1 || opts.Nodes > 200 {
		return usagef("nodes: %d is out of range 1..200", opts.Nodes)
	}
	if opts.IDCs < 1 || opts.IDCs > opts.Nodes {
		return usagef("idcs: %d is out of range 1..%d", opts.IDCs, opts.Nodes)
	}
	if _, err := node.ParseLogLevel(opts.LogLevel); err != nil {
		return &UsageError{Err: err}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locating the herd binary: %w", err)
	}
	fmt.Fprintf(stderr, "starting %d agents in %d IDC(s)...\n", opts.Nodes, opts.IDCs)
	cluster, err := devmesh.Start(ctx, devmesh.Options{
		Binary:      self,
		Nodes:       opts.Nodes,
		IDCs:        opts.IDCs,
		Dir:         opts.Dir,
		ControlSize: opts.ControlSize,
		LogLevel:    opts.LogLevel,
	})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(stderr, "stopping the dev mesh...")
		if err := cluster.Stop(15 * time.Second); err != nil {
			fmt.Fprintf(stderr, "herd dev: %v\n", err)
		}
	}()
	if err := writeDevEnv(cluster); err != nil {
		return err
	}
	if opts.JSON {
		if err := printJSON(stdout, cluster); err != nil {
			return err
		}
	} else {
		printDev(stdout, cluster)
	}
	watchDev(ctx, cluster, stderr)
	return nil
}

// printDev prints the eval-able exports and the node table.
func printDev(w io.Writer, c *devmesh.Cluster) {
	first := c.Nodes[0]
	fmt.Fprintf(w, "export HERD_NODE=%s HERD_TOKEN=%s\n", first.API, c.Token)
	fmt.Fprintf(w, "# dev mesh ready: %d nodes, gossip encrypted; details in %s\n", len(c.Nodes), filepath.Join(c.Dir, devmesh.InfoFile))
	t := newTable(w, "# NAME", "IDC", "PID", "API", "LOG")
	for _, n := range c.Nodes {
		t.row("# "+n.Name, n.IDC, fmt.Sprint(n.PID), n.API, n.Log)
	}
	_ = t.flush()
	fmt.Fprintln(w, "# press Ctrl-C to stop every node")
}

// writeDevEnv writes DIR/env with the export line, for shells in other
// terminals: eval "$(cat DIR/env)".
func writeDevEnv(c *devmesh.Cluster) error {
	line := fmt.Sprintf("export HERD_NODE=%s HERD_TOKEN=%s\n", c.Nodes[0].API, c.Token)
	return os.WriteFile(filepath.Join(c.Dir, "env"), []byte(line), 0o600)
}

// watchDev waits for Ctrl-C, reporting nodes that die on their own.
func watchDev(ctx context.Context, c *devmesh.Cluster, stderr io.Writer) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	reported := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			for _, n := range c.Nodes {
				if n.Exited() && !reported[n.Name] {
					reported[n.Name] = true
					fmt.Fprintf(stderr, "herd dev: %s (pid %d) exited; see %s\n", n.Name, n.PID, n.Log)
				}
			}
		}
	}
}
