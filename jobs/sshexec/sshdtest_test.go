package sshexec

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-io/herd/jobs/executor"
	"github.com/herd-io/herd/jobs/sshexec/sshdtest"
)

// testEnv is a real sshd plus a Runner and a Target that logs into it as root
// with a fresh key.
type testEnv struct {
	srv    *sshdtest.Server
	keys   *MemoryHostKeys
	runner *Runner
	target Target
	dir    string
}

// newTestEnv starts sshd and a Runner with short timings; tweak adjusts the
// Config before New.
func newTestEnv(t *testing.T, tweak func(*Config)) *testEnv {
	t.Helper()
	priv, authorized := sshdtest.NewClientKey(t)
	srv := sshdtest.Start(t, sshdtest.Options{AuthorizedKey: authorized})
	keys := NewMemoryHostKeys()
	cfg := DefaultConfig()
	cfg.HostKeys = keys
	cfg.DialTimeout = 5 * time.Second
	cfg.KillGrace = 500 * time.Millisecond
	cfg.WaitDelay = 500 * time.Millisecond
	if tweak != nil {
		tweak(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{
		srv:    srv,
		keys:   keys,
		runner: r,
		target: Target{Name: "h1", Addr: srv.Addr, User: "root", Key: priv},
		dir:    t.TempDir(),
	}
}

// run runs spec on the env's target and returns the result and the stored
// output file.
func (e *testEnv) run(t *testing.T, ctx context.Context, spec executor.Spec) (executor.Result, []byte) {
	t.Helper()
	return e.runOn(t, ctx, e.target, spec)
}

func (e *testEnv) runOn(t *testing.T, ctx context.Context, tg Target, spec executor.Spec) (executor.Result, []byte) {
	t.Helper()
	out := filepath.Join(e.dir, "out-"+strings.ReplaceAll(t.Name(), "/", "_")+"-"+time.Now().Format("150405.000000000"))
	res := e.runner.Run(ctx, tg, spec, out)
	b, err := os.ReadFile(out)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return res, b
}

// waitFor retries cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // poll interval of a deadline-bounded retry
	}
}

// waitForFile waits until path contains want.
func waitForFile(t *testing.T, path string, want []byte) {
	t.Helper()
	waitFor(t, 15*time.Second, "output "+string(want), func() bool {
		b, _ := os.ReadFile(path)
		return bytes.Contains(b, want)
	})
}

// pgrep reports whether a process whose command line matches pattern is alive.
func pgrep(t *testing.T, pattern string) bool {
	t.Helper()
	err := exec.Command("pgrep", "-f", pattern).Run()
	if err == nil {
		return true
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 {
		return false
	}
	t.Fatalf("pgrep -f %q: %v", pattern, err)
	return false
}

// marker returns digits unique to this process and call, usable as the
// fraction of a sleep duration ("sleep 1000.<marker>") so pgrep finds exactly
// this test's processes.
func marker() string {
	return fmt.Sprintf("%d%07d", markerSeq.Add(1), os.Getpid())
}

var markerSeq atomic.Int64
