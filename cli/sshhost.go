package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"

	ucli "github.com/urfave/cli/v2"

	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/node/api"
)

// SSHHostOptions are the inputs shared by the `herd host` verbs.
type SSHHostOptions struct {
	globals
}

// maxKeyFile bounds a private key file: real ones are a few KiB.
const maxKeyFile = 64 << 10

func hostCommand() *ucli.Command {
	return nounDefaults(&ucli.Command{
		Name:  "host",
		Usage: "manage agentless hosts reached over SSH",
		Description: `An SSH target runs scripts without a herd agent: an agent of its IDC connects over SSH
and reports the same results. Its host key is recorded on first use and checked after.
Targets are named like agents: herd run --hosts NAME, --all and --group include them.

  herd host add-ssh legacy-db 10.0.3.7 --idc sh1 --user root --key ~/.ssh/herd_ed25519
  DBPW=... herd host add-ssh old-nas 10.0.3.9:2222 --idc sh1 --user admin --password-env DBPW
  herd host list`,
		Subcommands: []*ucli.Command{
			{
				Name: "add-ssh", Usage: "register (or replace) an SSH target", ArgsUsage: "NAME ADDR[:PORT]",
				Description: `ADDR is host or host:port (default port 22). Give --key FILE (a PEM private key) or
--password-env VAR (the password is read from that environment variable, never the
command line). Secrets are stored in the control group and never shown again.

  herd host add-ssh legacy-db 10.0.3.7 --idc sh1 --user root --key ./id_ed25519
  herd host add-ssh router-1 [fd00::1]:2200 --idc bj2 --user ops --password-env ROUTER_PW`,
				Flags: commonFlags(
					&ucli.StringFlag{Name: "idc", Usage: "the `IDC` whose agents reach it (required)"},
					&ucli.StringFlag{Name: "user", Usage: "log in as `USER` (required)"},
					&ucli.StringFlag{Name: "key", Usage: "authenticate with the PEM private key in `FILE`"},
					&ucli.StringFlag{Name: "password-env", Usage: "authenticate with the password in environment variable `VAR`"},
				),
				Action: argsAnywhere(func(c *ucli.Context, args []string) error {
					h, err := readSSHHost(c, args, os.Getenv)
					if err != nil {
						return err
					}
					return runSSHHostAdd(c.Context, SSHHostOptions{readGlobals(c)}, h, c.App.Writer)
				}),
			},
			{
				Name: "list", Usage: "list SSH targets", Flags: commonFlags(),
				Description: `  herd host list
  herd host list --json | jq -r '.hosts[] | select(.host_key == "") | .name'   # never reached`,
				Action: func(c *ucli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					return runSSHHostList(c.Context, SSHHostOptions{readGlobals(c)}, c.App.Writer)
				},
			},
			{
				Name: "rm", Usage: "remove an SSH target", ArgsUsage: "NAME", Flags: commonFlags(),
				Description: `  herd host rm legacy-db`,
				Action: argsAnywhere(func(c *ucli.Context, args []string) error {
					if len(args) != 1 {
						return usagef("host rm takes exactly one NAME")
					}
					name := args[0]
					if err := model.ValidateName("host name", name); err != nil {
						return &UsageError{Err: err}
					}
					return runSSHHostRemove(c.Context, SSHHostOptions{readGlobals(c)}, name, c.App.Writer)
				}),
			},
		},
	})
}

// readSSHHost builds an SSHHost from add-ssh's arguments; getenv reads
// the --password-env variable.
func readSSHHost(c *ucli.Context, args []string, getenv func(string) string) (model.SSHHost, error) {
	if len(args) != 2 {
		return model.SSHHost{}, usagef("host add-ssh takes NAME and ADDR[:PORT]")
	}
	h := model.SSHHost{Name: args[0], IDC: c.String("idc"), User: c.String("user")}
	if err := model.ValidateName("host name", h.Name); err != nil {
		return h, &UsageError{Err: err}
	}
	addr, err := sshAddr(args[1])
	if err != nil {
		return h, err
	}
	h.Addr = addr
	switch {
	case h.IDC == "":
		return h, usagef("host add-ssh needs --idc IDC (the agents of that IDC reach it)")
	case h.User == "":
		return h, usagef("host add-ssh needs --user USER")
	}
	if err := model.ValidateName("idc", h.IDC); err != nil {
		return h, usagef("idc: %v", err)
	}
	key, pwEnv := c.String("key"), c.String("password-env")
	switch {
	case key == "" && pwEnv == "":
		return h, usagef("host add-ssh needs --key FILE or --password-env VAR")
	case key != "" && pwEnv != "":
		return h, usagef("give --key or --password-env, not both")
	case key != "":
		f, err := os.Open(key)
		if err != nil {
			return h, usagef("key: %v", err)
		}
		defer f.Close()
		pem, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
		if err != nil {
			return h, fmt.Errorf("reading key %s: %w", key, err)
		}
		if len(pem) > maxKeyFile {
			return h, usagef("key %s is larger than %d KiB: is it a private key?", key, maxKeyFile>>10)
		}
		h.Key = pem
	default:
		h.Password = getenv(pwEnv)
		if h.Password == "" {
			return h, usagef("password-env: environment variable %s is empty or unset", pwEnv)
		}
	}
	return h, nil
}

// sshAddr normalizes host or host:port to host:port, port 22 by default.
func sshAddr(s string) (string, error) {
	if host, port, err := net.SplitHostPort(s); err == nil {
		if host == "" || port == "" {
			return "", usagef("address %q: want HOST or HOST:PORT", s)
		}
		return s, nil
	}
	if s == "" || s[0] == '[' {
		return "", usagef("address %q: want HOST or HOST:PORT ([IPv6]:PORT)", s)
	}
	return net.JoinHostPort(s, "22"), nil
}

func runSSHHostAdd(ctx context.Context, o SSHHostOptions, h model.SSHHost, w io.Writer) error {
	out, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.SSHHost, error) {
		return c.PutSSHHost(ctx, h)
	})
	if err != nil {
		return err
	}
	return o.emit(w, out, func() error {
		return writef(w, "ssh host %s: %s@%s in %s (%s); its host key is recorded on first use\n",
			out.Name, out.User, out.Addr, out.IDC, sshAuth(*out))
	})
}

// sshAuth names how a target authenticates.
func sshAuth(h model.SSHHost) string {
	switch {
	case h.HasKey && h.HasPassword:
		return "key+password"
	case h.HasKey:
		return "key"
	case h.HasPassword:
		return "password"
	}
	return "-"
}

func runSSHHostList(ctx context.Context, o SSHHostOptions, w io.Writer) error {
	hosts, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) ([]model.SSHHost, error) {
		return c.SSHHosts(ctx)
	})
	if err != nil {
		return err
	}
	return o.emit(w, map[string][]model.SSHHost{"hosts": nonNil(hosts)}, func() error {
		t := newTable(w, "NAME", "ADDR", "IDC", "USER", "AUTH", "HOSTKEY")
		for _, h := range hosts {
			hk := h.HostKey
			if hk == "" {
				hk = "(not yet seen)"
			}
			t.row(h.Name, h.Addr, h.IDC, h.User, sshAuth(h), hk)
		}
		return t.flush()
	})
}

func runSSHHostRemove(ctx context.Context, o SSHHostOptions, name string, w io.Writer) error {
	return runRemove(ctx, o.globals, w, func(ctx context.Context, c *api.Client) error {
		return c.DeleteSSHHost(ctx, name)
	}, map[string]string{"deleted": name}, "ssh host "+name)
}
