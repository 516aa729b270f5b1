package executor

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testConfig is the executor config tests start from: a WorkRoot reachable by
// other accounts and timings short enough to keep the suite quick.
func testConfig(t *testing.T) Config {
	t.Helper()
	base := t.TempDir()
	// t.TempDir's directories are 0700; accounts other than root must be able
	// to traverse down to their run directory, as under /var/lib/herd.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return Config{
		WorkRoot:  filepath.Join(base, "work"),
		KillGrace: 5 * time.Second,
		WaitDelay: 500 * time.Millisecond,
	}
}

// newTestExecutor builds an executor from testConfig, adjusted by mod.
func newTestExecutor(t *testing.T, mod func(*Config)) *Executor {
	t.Helper()
	cfg := testConfig(t)
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// runScript runs spec and returns the result and the stored output file.
func runScript(t *testing.T, ctx context.Context, e *Executor, spec Spec) (Result, []byte) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "output")
	res := e.Run(ctx, spec, out)
	data, err := os.ReadFile(out)
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("read output: %v", err)
	}
	return res, data
}

// alive reports whether pid is a live (non-zombie) process. Orphans may never
// be reaped in a container whose init does not wait, so zombies count as dead.
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return false
	}
	state := data[i+2]
	return state != 'Z' && state != 'X'
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readPid reads a pid the script wrote to dir/name (written via rename, so a
// present file is complete).
func readPid(t *testing.T, dir, name string) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("script did not record %s pid: %v", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("bad pid in %s: %q", name, data)
	}
	return pid
}

// killOnCleanup makes sure a process the test deliberately left running
// does not outlive the test.
func killOnCleanup(t *testing.T, pid int) {
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
}

// pidDir is a directory where scripts record pids, readable by any account.
func pidDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	return d
}
