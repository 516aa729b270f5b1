package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Process is a long-running command on a host, started by Host.Start. The
// fleet kills it (and its process group) at teardown if the test has not.
type Process struct {
	name    string
	host    *Host
	pid     int
	logPath string

	done chan struct{} // closed once the process has been reaped
	err  error         // exit error; valid after done is closed
}

// Start runs argv on h until it exits or the fleet is torn down. The
// process lives in the host's network namespace and in a private mount
// namespace where /srv is the host's own directory (Host.SrvDir). env is
// added to the test process's environment, later entries winning. Its
// stdout and stderr go to one log file (see Process.Log). name labels the
// log and teardown messages.
func (h *Host) Start(name string, argv []string, env []string) (*Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("netns: Start needs a command")
	}
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return nil, fmt.Errorf("netns: process name %q must be non-empty without '/'", name)
	}
	f := h.fleet
	// Holding the lock across cmd.Start makes teardown see every process
	// that got started: it sets closed under the same lock.
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, fmt.Errorf("netns: fleet %s is torn down", f.Subnet)
	}
	logFile, err := createLog(f.logDir, h.Name+"-"+name)
	if err != nil {
		return nil, err
	}
	// The fleet, not a context, bounds the process's life.
	cmd := h.command(context.Background(), argv)
	cmd.Env = append(os.Environ(), env...)
	// An *os.File is handed to the child as is: no copying goroutine, and
	// output written just before a crash is not lost in a pipe.
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	err = cmd.Start()
	logFile.Close() // the child holds its own descriptor
	if err != nil {
		return nil, fmt.Errorf("netns: start %s on %s: %w", name, h.Name, err)
	}
	p := &Process{
		name:    name,
		host:    h,
		pid:     cmd.Process.Pid,
		logPath: logFile.Name(),
		done:    make(chan struct{}),
	}
	// Owned by p: it ends when the process exits, which teardown forces.
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	f.procs = append(f.procs, p)
	return p, nil
}

// createLog opens a new log file named base.log, or base-2.log and so on
// when a process of the same name ran on the host before.
func createLog(dir, base string) (*os.File, error) {
	for i := 1; ; i++ {
		name := base + ".log"
		if i > 1 {
			name = fmt.Sprintf("%s-%d.log", base, i)
		}
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("netns: create log: %w", err)
		}
		return f, nil
	}
}

// Pid is the process id, in the root pid namespace, of the command itself
// (the wrappers exec into it).
func (p *Process) Pid() int { return p.pid }

// Signal sends sig to the process alone, not its group, so a graceful
// shutdown signal reaches the agent and not the jobs it supervises.
func (p *Process) Signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("netns: unsupported signal %v", sig)
	}
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	if err := syscall.Kill(p.pid, s); err != nil {
		return fmt.Errorf("netns: signal %s/%s: %w", p.host.Name, p.name, err)
	}
	return nil
}

// Kill sends SIGKILL to the process's whole process group. It is not an
// error if the process has already exited. Kill does not wait; use Wait.
func (p *Process) Kill() error {
	err := syscall.Kill(-p.pid, syscall.SIGKILL)
	if err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("netns: kill %s/%s: %w", p.host.Name, p.name, err)
	}
	return nil
}

// Wait blocks until the process exits and returns its exit error (nil for
// status 0, *exec.ExitError otherwise), or ctx's error if ctx ends first.
// It may be called any number of times.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Exited reports whether the process has exited, without blocking.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Log returns everything the process has written to stdout and stderr so
// far. If the log cannot be read it returns a line saying why, so a
// failing test's output still explains something.
func (p *Process) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("<log of %s/%s unavailable: %v>", p.host.Name, p.name, err)
	}
	return string(b)
}

// LogPath is the log file's path in the root namespace.
func (p *Process) LogPath() string { return p.logPath }
