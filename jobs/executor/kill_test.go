package executor

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// treeScript starts a child and, through a second shell, a grandchild, records
// both pids (via rename, so a visible file is complete) and waits on them.
// trap is put first, e.g. "trap ” TERM" to make the whole tree ignore SIGTERM.
func treeScript(trap string) []byte {
	return []byte(trap + `
sleep 1000 & echo $! > "$D/child.tmp" && mv "$D/child.tmp" "$D/child"
sh -c 'sleep 1000 & echo $! > "$D/grandchild.tmp" && mv "$D/grandchild.tmp" "$D/grandchild"; wait' &
echo started
wait
`)
}

// checkTreeDead asserts the recorded child and grandchild are dead. Run has
// already returned; the short bounded wait only covers SIGKILL delivery,
// which the kernel completes asynchronously.
func checkTreeDead(t *testing.T, dir string) {
	t.Helper()
	names := []string{"child", "grandchild"}
	pids := make([]int, len(names))
	for i, name := range names {
		pids[i] = readPid(t, dir, name)
		killOnCleanup(t, pids[i]) // so a failing run leaks nothing
	}
	for i, name := range names {
		waitFor(t, time.Second, name+" to be dead", func() bool { return !alive(pids[i]) })
	}
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	// A long grace proves Run notices the group died of SIGTERM and does not
	// sit out the grace period.
	e := newTestExecutor(t, func(c *Config) { c.KillGrace = 30 * time.Second })
	dir := pidDir(t)
	start := time.Now()
	res, out := runScript(t, context.Background(), e, Spec{
		Script: treeScript(""), Timeout: time.Second, Env: map[string]string{"D": dir},
	})
	elapsed := time.Since(start)
	if res.Status != StatusTimeout || res.ExitCode != -1 || res.Signal != "terminated" {
		t.Errorf("result = %+v, want timeout, -1, terminated", res)
	}
	if string(out) != "started\n" {
		t.Errorf("output = %q", out)
	}
	checkTreeDead(t, dir)
	if elapsed > 15*time.Second {
		t.Errorf("Run took %s: it waited out KillGrace though SIGTERM worked", elapsed)
	}
}

func TestTimeoutEscalatesToSIGKILL(t *testing.T) {
	e := newTestExecutor(t, func(c *Config) { c.KillGrace = 300 * time.Millisecond })
	dir := pidDir(t)
	res, _ := runScript(t, context.Background(), e, Spec{
		Script: treeScript("trap '' TERM"), Timeout: time.Second, Env: map[string]string{"D": dir},
	})
	if res.Status != StatusTimeout || res.ExitCode != -1 || res.Signal != "killed" {
		t.Errorf("result = %+v, want timeout, -1, killed", res)
	}
	checkTreeDead(t, dir)
}

func TestCancelKillsProcessGroup(t *testing.T) {
	e := newTestExecutor(t, nil)
	dir := pidDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Cancel once the whole tree is up, whatever the machine's speed.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(filepath.Join(dir, "grandchild")); err == nil {
				if _, err := os.Stat(filepath.Join(dir, "child")); err == nil {
					break
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	res, _ := runScript(t, ctx, e, Spec{Script: treeScript(""), Env: map[string]string{"D": dir}})
	if res.Status != StatusCancelled || res.ExitCode != -1 || res.Signal == "" || res.Error == "" {
		t.Errorf("result = %+v, want cancelled, -1, a signal and an error", res)
	}
	checkTreeDead(t, dir)
}

func TestCancelBeforeStart(t *testing.T) {
	e := newTestExecutor(t, nil)
	dir := pidDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, _ := runScript(t, ctx, e, Spec{Script: []byte(`touch "$D/ran"`), Env: map[string]string{"D": dir}})
	if res.Status != StatusCancelled || res.ExitCode != -1 {
		t.Errorf("result = %+v, want cancelled, -1", res)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Error("script ran although ctx was already cancelled")
	}
}

// A normal exit leaves background children alone (operators start daemons
// this way), and Run returns within about WaitDelay even when such a child
// keeps the output pipe open.
func TestNormalExitLeavesBackgroundChildren(t *testing.T) {
	t.Run("detached", func(t *testing.T) {
		e := newTestExecutor(t, func(c *Config) { c.WaitDelay = 20 * time.Second })
		dir := pidDir(t)
		start := time.Now()
		res, out := runScript(t, context.Background(), e, Spec{
			Script: []byte(`nohup sleep 1000 >/dev/null 2>&1 & echo $! > "$D/daemon"; echo done`),
			Env:    map[string]string{"D": dir},
		})
		elapsed := time.Since(start)
		pid := readPid(t, dir, "daemon")
		killOnCleanup(t, pid)
		if res.Status != StatusSuccess || string(out) != "done\n" {
			t.Errorf("result %+v output %q", res, out)
		}
		if elapsed > 10*time.Second {
			t.Errorf("Run took %s though no one held the pipe", elapsed)
		}
		if !alive(pid) {
			t.Error("background daemon was killed by a normal exit")
		}
	})
	t.Run("holding the pipe past the timeout", func(t *testing.T) {
		const waitDelay = time.Second
		e := newTestExecutor(t, func(c *Config) { c.WaitDelay = waitDelay })
		dir := pidDir(t)
		start := time.Now()
		// The timeout fires while Run waits for the pipe: it must not
		// kill the child of a script that has already finished.
		res, out := runScript(t, context.Background(), e, Spec{
			Script:  []byte(`sleep 1000 & echo $! > "$D/daemon"; echo done`),
			Env:     map[string]string{"D": dir},
			Timeout: 300 * time.Millisecond,
		})
		elapsed := time.Since(start)
		pid := readPid(t, dir, "daemon")
		killOnCleanup(t, pid)
		if res.Status != StatusSuccess || res.ExitCode != 0 || string(out) != "done\n" {
			t.Errorf("result %+v output %q", res, out)
		}
		if elapsed < waitDelay || elapsed > waitDelay+10*time.Second {
			t.Errorf("Run took %s, want about WaitDelay (%s)", elapsed, waitDelay)
		}
		if !alive(pid) {
			t.Error("background child was killed by a normal exit")
		}
	})
}
