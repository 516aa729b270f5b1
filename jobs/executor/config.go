package executor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Config configures an Executor. Zero fields take their defaults.
type Config struct {
	// WorkRoot is the directory for per-run script files; required and
	// absolute. New creates it with mode 0711 if missing (traversable, not
	// listable, so accounts can reach only their own 0700 run directory). An
	// existing directory is left as it is; it and its ancestors must be
	// traversable by every account scripts run as.
	WorkRoot string
	// KillGrace is the delay between SIGTERM and SIGKILL to the process group
	// on timeout or cancel; default 3s.
	KillGrace time.Duration
	// WaitDelay is how long Run waits, after the main process exits, for
	// background children that still hold the output pipe open; then the pipe
	// is closed and Run returns. Default 2s.
	WaitDelay time.Duration
	// Limits bounds each run's output capture; zero fields take
	// DefaultCaptureLimits values.
	Limits CaptureLimits
}

const (
	defaultKillGrace = 3 * time.Second
	defaultWaitDelay = 2 * time.Second
)

// withDefaults validates c and fills in defaults.
func (c Config) withDefaults() (Config, error) {
	if c.WorkRoot == "" {
		return c, errors.New("executor: WorkRoot is required")
	}
	if !filepath.IsAbs(c.WorkRoot) {
		return c, fmt.Errorf("executor: WorkRoot %q is not an absolute path", c.WorkRoot)
	}
	if c.KillGrace < 0 || c.WaitDelay < 0 {
		return c, fmt.Errorf("executor: KillGrace (%s) and WaitDelay (%s) must not be negative", c.KillGrace, c.WaitDelay)
	}
	if c.KillGrace == 0 {
		c.KillGrace = defaultKillGrace
	}
	if c.WaitDelay == 0 {
		c.WaitDelay = defaultWaitDelay
	}
	lim, err := c.Limits.withDefaults()
	if err != nil {
		return c, fmt.Errorf("executor: %w", err)
	}
	c.Limits = lim
	return c, nil
}

// ensureWorkRoot creates dir with mode 0711 unless it already exists.
func ensureWorkRoot(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("executor: WorkRoot %q is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("executor: stat WorkRoot: %w", err)
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("executor: create WorkRoot: %w", err)
	}
	// MkdirAll is subject to the umask; the mode is part of the contract.
	if err := os.Chmod(dir, 0o711); err != nil {
		return fmt.Errorf("executor: chmod WorkRoot: %w", err)
	}
	return nil
}
