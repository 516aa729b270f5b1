package sshexec

import (
	"errors"
	"fmt"
	"time"

	"github.com/herd-io/herd/jobs/executor"
)

// Defaults for Config fields left zero.
const (
	DefaultConcurrency       = 50
	DefaultDialTimeout       = 10 * time.Second
	DefaultKillGrace         = 3 * time.Second
	DefaultWaitDelay         = 2 * time.Second
	DefaultKeepaliveInterval = 15 * time.Second
)

// keepaliveMaxMissed is how many keepalive intervals may pass without a reply
// before the connection is declared dead (OpenSSH's ServerAliveCountMax).
const keepaliveMaxMissed = 3

// Config configures a Runner. Zero fields take the defaults documented on
// each; negative values are rejected by New.
type Config struct {
	// Concurrency is the most SSH connections (each with one session) a
	// Runner has open at once; further Runs wait for a slot. Default 50.
	Concurrency int
	// DialTimeout bounds TCP connect plus SSH handshake and authentication.
	// Default 10s.
	DialTimeout time.Duration
	// KillGrace is the delay between the TERM and KILL signals sent to the
	// remote process group on timeout or cancel. Default 3s.
	KillGrace time.Duration
	// WaitDelay is how long, after the remote script exited, Run waits for
	// background children still holding its output open before closing the
	// session. Default 2s (as the local executor).
	WaitDelay time.Duration
	// KeepaliveInterval is how often an idle connection is probed with an
	// OpenSSH keepalive request; after 3 unanswered intervals the host is
	// treated as gone (status unreachable). Default 15s.
	KeepaliveInterval time.Duration
	// Limits bound the captured output; zero fields take
	// executor.DefaultCaptureLimits.
	Limits executor.CaptureLimits
	// HostKeys records trust-on-first-use host keys. Required.
	HostKeys HostKeys
}

// DefaultConfig returns a Config with every default filled in. HostKeys is
// left nil: the caller must supply one.
func DefaultConfig() Config {
	return Config{
		Concurrency:       DefaultConcurrency,
		DialTimeout:       DefaultDialTimeout,
		KillGrace:         DefaultKillGrace,
		WaitDelay:         DefaultWaitDelay,
		KeepaliveInterval: DefaultKeepaliveInterval,
		Limits:            executor.DefaultCaptureLimits(),
	}
}

// withDefaults validates c and fills zero fields.
func (c Config) withDefaults() (Config, error) {
	if c.HostKeys == nil {
		return c, errors.New("sshexec: Config.HostKeys is required")
	}
	if c.Concurrency < 0 || c.DialTimeout < 0 || c.KillGrace < 0 || c.WaitDelay < 0 || c.KeepaliveInterval < 0 {
		return c, fmt.Errorf("sshexec: Concurrency (%d), DialTimeout (%s), KillGrace (%s), WaitDelay (%s) and KeepaliveInterval (%s) must not be negative",
			c.Concurrency, c.DialTimeout, c.KillGrace, c.WaitDelay, c.KeepaliveInterval)
	}
	if c.Limits.HeadBytes < 0 || c.Limits.TailBytes < 0 || c.Limits.MaxStored < 0 {
		return c, fmt.Errorf("sshexec: capture limits must not be negative: %+v", c.Limits)
	}
	d := DefaultConfig()
	if c.Concurrency == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.KillGrace == 0 {
		c.KillGrace = d.KillGrace
	}
	if c.WaitDelay == 0 {
		c.WaitDelay = d.WaitDelay
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = d.KeepaliveInterval
	}
	return c, nil
}
