package sshexec

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/herd-io/herd/jobs/executor"
)

// StatusUnreachable is the status of a run that never got a result from the
// host: dial, handshake, host key or authentication failure, or a connection
// lost mid-run.
const StatusUnreachable = "unreachable"

// Runner runs scripts on SSH targets with bounded concurrency. It is safe for
// concurrent use; each Run uses its own connection.
type Runner struct {
	cfg   Config
	slots chan struct{}

	// sessionHook, if set (tests), is called with +1 when a session opens
	// and -1 when it is closed.
	sessionHook func(delta int)
}

// New validates cfg, fills its defaults and returns a Runner.
func New(cfg Config) (*Runner, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Runner{cfg: c, slots: make(chan struct{}, c.Concurrency)}, nil
}

// Run executes spec.Script on t over SSH; blocks for a concurrency slot first (ctx-aware).
// Output (stdout+stderr interleaved) goes through executor.NewCapture(outputPath, cfg.Limits).
//
// Statuses are those of the local executor (success, failed with the exit
// code, timeout, cancelled) plus StatusUnreachable for connection-level
// failures, with Error saying which. An invalid spec or target is failed
// with ExitCode -1, as a script that could not start. ctx cancellation is an
// operator cancel: the remote process group is killed and the status is
// cancelled. Spec.Timeout counts from the start of the remote command, not
// from the wait for a slot or the connection setup. Run never panics.
func (r *Runner) Run(ctx context.Context, t Target, spec executor.Spec, outputPath string) (res executor.Result) {
	res.Started = time.Now()
	res.ExitCode = -1
	var capt *executor.Capture
	defer func() {
		// One broken run must not take the node and its other runs down.
		if p := recover(); p != nil {
			res = finish(res, capt, executor.StatusFailed, fmt.Sprintf("internal error in sshexec: %v", p))
		}
	}()

	capt, err := executor.NewCapture(outputPath, r.cfg.Limits)
	if err != nil {
		return finish(res, nil, executor.StatusFailed, err.Error())
	}
	if err := spec.Validate(); err != nil {
		return finish(res, capt, executor.StatusFailed, err.Error())
	}
	if err := t.Validate(); err != nil {
		return finish(res, capt, executor.StatusFailed, err.Error())
	}
	token, err := newToken()
	if err != nil {
		return finish(res, capt, executor.StatusFailed, err.Error())
	}
	cmd, err := remoteCommand(spec, t.User, token)
	if err != nil {
		return finish(res, capt, executor.StatusFailed, fmt.Sprintf("invalid spec: %v", err))
	}

	select {
	case r.slots <- struct{}{}:
		defer func() { <-r.slots }()
	case <-ctx.Done():
		return finish(res, capt, executor.StatusCancelled, "cancelled while waiting for an ssh slot")
	}

	client, err := r.dial(ctx, t)
	if err != nil {
		if ctx.Err() != nil {
			return finish(res, capt, executor.StatusCancelled, "cancelled while connecting: "+err.Error())
		}
		return finish(res, capt, StatusUnreachable, err.Error())
	}
	defer client.Close()
	stopKeepalive := keepalive(client, r.cfg.KeepaliveInterval, keepaliveMaxMissed)
	defer stopKeepalive()

	return r.execute(ctx, client, t, spec, run{cmd: cmd, token: token}, capt, res)
}

// run is the remote side of one Run.
type run struct {
	cmd   string // the command line for sshd
	token string // the HERD_SSH_RUN tag of its processes
}

// newToken returns a random tag for one run's remote processes.
func newToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random run token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// dial connects and authenticates to t with TOFU host key checking, all
// within DialTimeout. Errors are phrased for the per-host result.
func (r *Runner) dial(ctx context.Context, t Target) (*ssh.Client, error) {
	addr, _ := t.hostPort() // validated
	auth, err := t.authMethods()
	if err != nil {
		return nil, err
	}
	recorded, found, err := r.cfg.HostKeys.Lookup(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("host key store: look up %s: %w", addr, err)
	}
	algos, callback := tofu(ctx, r.cfg.HostKeys, addr, recorded, found)

	ctx, cancel := context.WithTimeout(ctx, r.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err // "dial tcp 10.0.0.5:22: connect: connection refused"
	}
	// The handshake has no context of its own: bound it by the deadline,
	// and cut it short on cancel.
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User:              t.User,
		Auth:              auth,
		HostKeyCallback:   callback,
		HostKeyAlgorithms: algos,
	})
	if !stop() || err != nil {
		_ = conn.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, handshakeError(err, t.User, addr)
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// handshakeError rewords an ssh handshake failure for the operator.
func handshakeError(err error, user, addr string) error {
	var mismatch *hostKeyMismatchError
	var store *hostKeyStoreError
	var nerr net.Error
	switch {
	case errors.As(err, &mismatch):
		return mismatch
	case errors.As(err, &store):
		return store
	case strings.Contains(err.Error(), "unable to authenticate"):
		// x/crypto has no typed error for this.
		return fmt.Errorf("ssh auth failed for %s@%s: %w", user, addr, err)
	case errors.As(err, &nerr) && nerr.Timeout():
		return fmt.Errorf("ssh handshake with %s timed out: %w", addr, err)
	default:
		return fmt.Errorf("ssh handshake with %s: %w", addr, err)
	}
}

// finish completes res with status and message, closing capt if set.
func finish(res executor.Result, capt *executor.Capture, status, msg string) executor.Result {
	res.Status = status
	res.Error = msg
	if capt != nil {
		if err := capt.Close(); err != nil {
			res.Error = joinMsg(res.Error, fmt.Sprintf("output not fully stored: %v", err))
		}
		res.Output = capt.Summary()
	}
	res.Finished = time.Now()
	if res.Started.After(res.Finished) {
		res.Started = res.Finished
	}
	return res
}

func joinMsg(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// keepalive probes c every interval with OpenSSH's keepalive request and
// closes it after maxMissed intervals without an answer, so a host that
// vanished mid-run (no RST, no FIN) ends as unreachable instead of hanging
// the run. The returned func stops it.
func keepalive(c ssh.Conn, interval time.Duration, maxMissed int) (stop func()) {
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		replies := make(chan struct{}, 1)
		inflight, missed := false, 0
		for {
			select {
			case <-done:
				return
			case <-replies:
				inflight, missed = false, 0
			case <-tick.C:
				if inflight {
					if missed++; missed >= maxMissed {
						_ = c.Close()
						return
					}
					continue
				}
				inflight = true
				go func() {
					// Any answer, even "unsupported", proves the peer alive.
					if _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); err == nil {
						select {
						case replies <- struct{}{}:
						default:
						}
					}
				}()
			}
		}
	}()
	return func() { close(done) }
}
