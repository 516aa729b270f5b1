package cli

import (
	"context"
	"fmt"
	"github.com/herd-io/herd/jobs/model"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/node"
)

func agentCommand() *ucli.Command {
	def := node.DefaultConfig()
	return &ucli.Command{
		Name:  "agent",
		Usage: "run the herd daemon on this server",
		Description: `Starts this server's herd node: it joins the encrypted gossip mesh of its IDC,
serves node streams to its peers and the HTTP API to the CLI.

Settings come from flags, then HERD_* environment variables, then the YAML file given
with --config (keys are the flag names with underscores; unknown keys are an error).

  herd keygen > /etc/herd/key
  herd agent --idc sh1 --labels role=web,env=prod --bind 198.18.0.10:7946 \
      --join 198.18.0.11:7946 --encrypt "$(cat /etc/herd/key)"

SIGINT/SIGTERM leave the mesh gracefully; SIGHUP re-reads labels from --config.`,
		Flags: []ucli.Flag{
			&ucli.PathFlag{Name: "config", EnvVars: []string{"HERD_CONFIG"}, Usage: "read settings from YAML `FILE`"},
			&ucli.StringFlag{Name: "name", EnvVars: []string{"HERD_NAME"}, Value: def.Name, Usage: "node `NAME`, unique in its IDC"},
			&ucli.StringFlag{Name: "idc", EnvVars: []string{"HERD_IDC"}, Value: def.IDC, Usage: "datacenter (`IDC`) this node belongs to"},
			&ucli.StringFlag{Name: "zone", EnvVars: []string{"HERD_ZONE"}, Usage: "failure `ZONE` (rack, room) inside the IDC"},
			&ucli.StringFlag{Name: "labels", EnvVars: []string{"HERD_LABELS"}, Usage: "labels as `k=v,k2=v2` for selectors"},
			&ucli.PathFlag{Name: "data-dir", EnvVars: []string{"HERD_DATA_DIR"}, Value: def.DataDir, Usage: "`DIR` for identity, token and local state"},
			&ucli.StringFlag{Name: "bind", EnvVars: []string{"HERD_BIND"}, Value: def.Bind, Usage: "gossip listen `ADDR:PORT`"},
			&ucli.StringFlag{Name: "advertise", EnvVars: []string{"HERD_ADVERTISE"}, Usage: "gossip `ADDR:PORT` peers should use (default: from --bind)"},
			&ucli.StringFlag{Name: "p2p", EnvVars: []string{"HERD_P2P"}, Usage: "node-stream listen `ADDR:PORT` (default: bind IP, port 7947)"},
			&ucli.StringFlag{Name: "api", EnvVars: []string{"HERD_API"}, Value: def.API, Usage: "HTTP API listen `ADDR:PORT`"},
			&ucli.StringSliceFlag{Name: "join", EnvVars: []string{"HERD_JOIN"}, Usage: "gossip `ADDR:PORT` of a node to join; repeat or comma-separate; retried with backoff"},
			&ucli.DurationFlag{Name: "join-timeout", EnvVars: []string{"HERD_JOIN_TIMEOUT"}, Usage: "stop with an error if no --join node answers within `DURATION` (0 = keep trying)"},
			&ucli.StringFlag{Name: "encrypt", EnvVars: []string{"HERD_ENCRYPT"}, Usage: "cluster gossip `KEY` (base64, from herd keygen)"},
			&ucli.BoolFlag{Name: "dev", EnvVars: []string{"HERD_DEV"}, Usage: "development mode: allows plaintext gossip and --fs-root"},
			&ucli.StringFlag{Name: "cluster-name", EnvVars: []string{"HERD_CLUSTER_NAME"}, Value: def.ClusterName, Usage: "`NAME` separating meshes that share a network"},
			&ucli.IntFlag{Name: "control-size", EnvVars: []string{"HERD_CONTROL_SIZE"}, Value: def.ControlSize, Usage: "target number of control-group voters in this IDC (`N`)"},
			&ucli.DurationFlag{Name: "output-retention", EnvVars: []string{"HERD_OUTPUT_RETENTION"}, Value: def.OutputRetention, Usage: "keep the full output of scripts run on this node this long; the control group keeps head and tail (`DURATION`)"},
			&ucli.StringFlag{Name: "swarm", EnvVars: []string{"HERD_SWARM"}, Value: def.Swarm, Usage: "listen for file-swarm peers on this `IP:PORT` (peer-to-peer pushes), or \"off\": no swarm (the node then takes only files under 4 MiB and --no-swarm pushes)"},
			&ucli.StringFlag{Name: "upload-rate", EnvVars: []string{"HERD_UPLOAD_RATE"}, Usage: "cap this node's swarm upload, e.g. 50MB (per second; empty = unlimited) (`SIZE`)"},
			&ucli.StringFlag{Name: "download-rate", EnvVars: []string{"HERD_DOWNLOAD_RATE"}, Usage: "cap this node's swarm download, e.g. 100MB (per second; empty = unlimited) (`SIZE`)"},
			&ucli.StringFlag{Name: "swarm-congestion", EnvVars: []string{"HERD_SWARM_CONGESTION"}, Value: def.SwarmCongestion, Usage: "TCP congestion control of swarm connections, e.g. cubic or bbr; \"system\" keeps the kernel's default (`NAME`)"},
			&ucli.IntFlag{Name: "upload-slots", EnvVars: []string{"HERD_UPLOAD_SLOTS"}, Value: def.UploadSlots, Usage: "upload to at most this many swarm peers at once, first come first served; 0 = every peer that asks (`N`)"},
			&ucli.IntFlag{Name: "ssh-concurrency", EnvVars: []string{"HERD_SSH_CONCURRENCY"}, Value: def.SSHConcurrency, Usage: "at most this many SSH sessions from this node to agentless hosts at once (`N`)"},
			&ucli.DurationFlag{Name: "dead-server-timeout", EnvVars: []string{"HERD_DEAD_SERVER_TIMEOUT"}, Value: def.DeadServerTimeout, Usage: "remove a control-group server dead in gossip this long and promote a replacement (`DURATION`)"},
			&ucli.StringFlag{Name: "primary-idc", EnvVars: []string{"HERD_PRIMARY_IDC"}, Usage: "`IDC` that owns global objects; the same on every node (default: this node's IDC)"},
			&ucli.StringFlag{Name: "wan-bind", EnvVars: []string{"HERD_WAN_BIND"}, Usage: "WAN gossip listen `ADDR:PORT`, used while a voter (default: bind IP, port 7948)"},
			&ucli.StringFlag{Name: "wan-advertise", EnvVars: []string{"HERD_WAN_ADVERTISE"}, Usage: "WAN `ADDR:PORT` other IDCs should use"},
			&ucli.StringSliceFlag{Name: "wan-join", EnvVars: []string{"HERD_WAN_JOIN"}, Usage: "WAN `ADDR:PORT` of nodes in other IDCs; repeat or comma-separate"},
			&ucli.StringFlag{Name: "api-token", EnvVars: []string{"HERD_API_TOKEN", "HERD_TOKEN"}, Usage: "bearer `TOKEN` the API requires (default: generated into DATA-DIR/api-token)"},
			&ucli.PathFlag{Name: "api-token-file", EnvVars: []string{"HERD_API_TOKEN_FILE"}, Usage: "read the API token from `FILE`"},
			&ucli.PathFlag{Name: "fs-root", EnvVars: []string{"HERD_FS_ROOT"}, Usage: "dev only: `DIR` that absolute destination paths resolve into"},
			&ucli.DurationFlag{Name: "health-interval", EnvVars: []string{"HERD_HEALTH_INTERVAL"}, Value: def.HealthInterval, Usage: "sample and gossip health every `DURATION`"},
			&ucli.StringFlag{Name: "log-level", EnvVars: []string{"HERD_LOG_LEVEL"}, Value: def.LogLevel, Usage: "`LEVEL`: debug, info, warn or error"},
			&ucli.BoolFlag{Name: "log-json", EnvVars: []string{"HERD_LOG_JSON"}, Usage: "write logs as JSON lines"},
		},
		Action: func(c *ucli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cfg, err := agentConfig(c)
			if err != nil {
				return err
			}
			logger, err := newLogger(c.App.ErrWriter, cfg.LogLevel, c.Bool("log-json"))
			if err != nil {
				return &UsageError{Err: err}
			}
			return runAgent(c.Context, cfg, logger)
		},
	}
}

// agentConfig merges flags, environment and the config file into a
// validated node.Config. Every error here is a usage error.
func agentConfig(c *ucli.Context) (*node.Config, error) {
	cfg := node.DefaultConfig()
	cfg.Name = c.String("name")
	cfg.IDC = c.String("idc")
	cfg.Zone = c.String("zone")
	cfg.DataDir = c.Path("data-dir")
	cfg.Bind = c.String("bind")
	cfg.Advertise = c.String("advertise")
	cfg.P2P = c.String("p2p")
	cfg.API = c.String("api")
	cfg.Join = splitList(c.StringSlice("join"))
	cfg.JoinTimeout = c.Duration("join-timeout")
	cfg.Dev = c.Bool("dev")
	cfg.ClusterName = c.String("cluster-name")
	cfg.ControlSize = c.Int("control-size")
	cfg.PrimaryIDC = c.String("primary-idc")
	cfg.DeadServerTimeout = c.Duration("dead-server-timeout")
	cfg.OutputRetention = c.Duration("output-retention")
	cfg.SSHConcurrency = c.Int("ssh-concurrency")
	cfg.UploadSlots = c.Int("upload-slots")
	cfg.SwarmCongestion = c.String("swarm-congestion")
	cfg.Swarm = c.String("swarm")
	for _, r := range []struct {
		flag string
		dst  *int64
	}{{"upload-rate", &cfg.UploadRate}, {"download-rate", &cfg.DownloadRate}} {
		if v := c.String(r.flag); v != "" {
			n, err := model.ParseSize(v)
			if err != nil {
				return nil, &UsageError{Err: fmt.Errorf("--%s: %w", r.flag, err)}
			}
			*r.dst = n
		}
	}
	cfg.WANBind = c.String("wan-bind")
	cfg.WANAdvertise = c.String("wan-advertise")
	cfg.WANJoin = splitList(c.StringSlice("wan-join"))
	cfg.APIToken = c.String("api-token")
	cfg.APITokenFile = c.Path("api-token-file")
	cfg.FSRoot = c.Path("fs-root")
	cfg.HealthInterval = c.Duration("health-interval")
	cfg.LogLevel = c.String("log-level")
	if s := c.String("labels"); s != "" {
		labels, err := mesh.ParseLabels(s)
		if err != nil {
			return nil, usagef("labels: %v", err)
		}
		cfg.Labels = labels
	}
	if s := c.String("encrypt"); s != "" {
		key, err := node.ParseEncryptKey(s)
		if err != nil {
			return nil, &UsageError{Err: err}
		}
		cfg.EncryptKey = key
	}
	if path := c.Path("config"); path != "" {
		fc, err := node.LoadConfigFile(path)
		if err != nil {
			return nil, &UsageError{Err: err}
		}
		if err := fc.Apply(cfg, c.IsSet); err != nil {
			return nil, &UsageError{Err: err}
		}
		cfg.ConfigFile = path
	}
	if err := cfg.Validate(); err != nil {
		return nil, &UsageError{Err: err}
	}
	return cfg, nil
}

// splitList flattens repeated and comma-separated values and drops blanks.
func splitList(in []string) []string {
	var out []string
	for _, v := range in {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// runAgent starts the agent and runs it until a signal or a fatal error.
func runAgent(parent context.Context, cfg *node.Config, logger *slog.Logger) error {
	if parent == nil {
		parent = context.Background()
	}
	agent, err := node.New(cfg, logger)
	if err != nil {
		return err
	}
	if err := agent.Start(parent); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	for {
		select {
		case err := <-agent.Fatal():
			_ = agent.Kill()
			return err
		case <-parent.Done():
			return leave(agent, logger)
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reloadLabels(agent, cfg, logger)
				continue
			}
			logger.Info("signal received, leaving the mesh", "signal", sig.String())
			go func() {
				// A second interrupt skips the graceful leave.
				<-sigs
				logger.Warn("second signal: exiting at once")
				os.Exit(ExitFailure)
			}()
			return leave(agent, logger)
		}
	}
}

func leave(agent *node.Agent, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := agent.Leave(ctx); err != nil {
		logger.Warn("leave was not clean", "err", err)
	}
	return nil
}

// reloadLabels re-reads labels from the config file on SIGHUP.
func reloadLabels(agent *node.Agent, cfg *node.Config, logger *slog.Logger) {
	if cfg.ConfigFile == "" {
		logger.Warn("SIGHUP: no --config file to reload labels from")
		return
	}
	fc, err := node.LoadConfigFile(cfg.ConfigFile)
	if err != nil {
		logger.Error("SIGHUP: reload failed, keeping current labels", "err", err)
		return
	}
	labels := fc.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	if err := agent.ReloadLabels(labels); err != nil {
		logger.Error("SIGHUP: reload failed, keeping current labels", "err", err)
	}
}

// newLogger builds the agent's slog logger.
func newLogger(w io.Writer, level string, asJSON bool) (*slog.Logger, error) {
	lvl, err := node.ParseLogLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if asJSON {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}
