package netns

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// srvScript runs as `sh -c srvScript sh SRVDIR ARGV...` inside a fresh
// private mount namespace: it binds the host's directory over /srv and then
// becomes the command, so the pid the caller holds is the command's pid.
const srvScript = `mount --bind "$1" /srv || exit 125; shift; exec "$@"`

// command builds the exec.Cmd that runs argv on h: in the host's network
// namespace (`ip netns exec`, which also remounts /sys so /sys/class/net
// shows the host's links) and in a new mount namespace with private
// propagation so the /srv bind never leaks into the root namespace or
// another host. Every step execs the next, so no wrapper process lingers.
func (h *Host) command(ctx context.Context, argv []string) *exec.Cmd {
	args := append([]string{"netns", "exec", h.NS,
		"unshare", "--mount", "--propagation", "private",
		"sh", "-c", srvScript, "sh", h.SrvDir}, argv...)
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group so Kill and context cancellation take the
		// command's children too.
		Setpgid: true,
		// If the test binary dies without cleanups (timeout panic,
		// SIGKILL), the command dies with it; its own children, if any,
		// are left to CleanupStale.
		Pdeathsig: syscall.SIGKILL,
	}
	return cmd
}

// Exec runs argv on h and returns its combined output. It sees the host's
// network and the host's /srv, like a process from Start. Cancelling ctx
// kills the command's whole process group.
func (h *Host) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("netns: Exec needs a command")
	}
	if err := h.fleet.usable(); err != nil {
		return nil, err
	}
	cmd := h.command(ctx, argv)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %s: %w: %s", h.Name, strings.Join(argv, " "), err, tail(string(out), 5))
	}
	return out, nil
}

// CutLink takes the root side of the host's veth down: the host loses its
// carrier and can reach nobody, and nobody can reach it, while its own
// addresses and routes stay in place as on a real cable pull.
func (h *Host) CutLink() error {
	return h.setLink("down")
}

// RestoreLink brings the link cut by CutLink back up. The bridge port
// forwards again at once (no STP), so connectivity returns as fast as the
// peers retransmit.
func (h *Host) RestoreLink() error {
	return h.setLink("up")
}

func (h *Host) setLink(state string) error {
	if err := h.fleet.usable(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := run(ctx, "", "ip", "link", "set", "dev", h.Veth, state); err != nil {
		return fmt.Errorf("netns: %s link %s: %w", h.Name, state, err)
	}
	return nil
}

// Shape limits the host's link to rateMbit in each direction with a token
// bucket filter on both ends of the veth; 0 removes the limit.
func (h *Host) Shape(rateMbit int) error {
	if rateMbit < 0 {
		return fmt.Errorf("netns: rate %d Mbit is negative", rateMbit)
	}
	if err := h.fleet.usable(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.shape(ctx, rateMbit)
}

func (h *Host) shape(ctx context.Context, rateMbit int) error {
	op := "replace"
	if rateMbit == 0 {
		op = "del"
	}
	// tc's -n enters the namespace itself, sparing an `ip netns exec`.
	for _, side := range []struct{ netns, dev string }{{"", h.Veth}, {h.NS, "eth0"}} {
		argv := []string{"tc"}
		if side.netns != "" {
			argv = append(argv, "-n", side.netns)
		}
		argv = append(argv, "qdisc", op, "dev", side.dev, "root")
		if rateMbit > 0 {
			argv = append(argv, tbfArgs(rateMbit)...)
		}
		out, err := run(ctx, "", argv...)
		if err != nil && rateMbit == 0 && strings.Contains(string(out), "handle of zero") {
			continue // nothing to remove: the device has its default qdisc
		}
		if err != nil {
			return fmt.Errorf("netns: shape %s: %w", h.Name, err)
		}
	}
	return nil
}

// usable refuses work on a fleet that has been torn down, whose names may
// already belong to another fleet.
func (f *Fleet) usable() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return fmt.Errorf("netns: fleet %s is torn down", f.Subnet)
	}
	return nil
}
