package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests here run the test binary again as a child that builds a fleet
// and then dies badly, because a dying test cannot be observed from inside.
const crashEnv = "HERD_NETNS_CRASH" // "kill": block until killed; "panic": panic

// crashReport is what the child prints once its fleet is up.
type crashReport struct {
	Objects []kobj `json:"objects"`
	Slot    int    `json:"slot"`
	Orphan  int    `json:"orphan"` // a process that escaped the fleet's process group
}

const crashMarker = "CRASHCHILD "

// TestCrashChild is the child half; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	mode := os.Getenv(crashEnv)
	if mode == "" {
		t.Skip("child of TestStaleCleanup and TestCleanupOnPanic")
	}
	f := New(t, Config{Hosts: 2, Prefix: testPrefix})
	h := f.Hosts[0]
	// setsid: the sleep survives both the Pdeathsig of its parent and a
	// kill of the parent's process group, like a daemonised job would.
	if _, err := h.Start("orphan", []string{"sh", "-c", "setsid sleep 1000 & echo $! > /srv/orphan.pid; wait"}, nil); err != nil {
		t.Fatal(err)
	}
	var orphan int
	waitFor(t, 5*time.Second, "orphan pid", func() error {
		b, err := os.ReadFile(filepath.Join(h.SrvDir, "orphan.pid"))
		if err == nil {
			_, err = fmt.Sscan(string(b), &orphan)
		}
		return err
	})
	b, err := json.Marshal(crashReport{Objects: fleetObjects(t, f), Slot: f.lay.slot, Orphan: orphan})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(crashMarker + string(b))
	switch mode {
	case "panic":
		panic("crash child panics on purpose")
	default:
		// Block until the parent kills us; it holds our stdin open.
		_, _ = io.Copy(io.Discard, os.Stdin)
	}
}

// crashChild is a running TestCrashChild.
type crashChild struct {
	cmd    *exec.Cmd
	rep    crashReport
	out    *syncBuffer
	exited chan error // receives cmd.Wait's result once
}

// syncBuffer collects the child's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// report returns the child's crash report once printed.
func (b *syncBuffer) report() (crashReport, bool, error) {
	var rep crashReport
	for _, line := range strings.Split(b.String(), "\n") {
		if s, ok := strings.CutPrefix(line, crashMarker); ok {
			return rep, true, json.Unmarshal([]byte(s), &rep)
		}
	}
	return rep, false, nil
}

// startCrashChild runs TestCrashChild in mode and returns once its fleet
// is up.
func startCrashChild(t *testing.T, mode string) *crashChild {
	t.Helper()
	cmd := exec.Command(self(t), "-test.run=^TestCrashChild$", "-test.count=1", "-test.v")
	// The child's t.TempDir lands under ours, so nothing of it outlives us
	// even though its own cleanups never run.
	cmd.Env = append(os.Environ(), crashEnv+"="+mode, "TMPDIR="+t.TempDir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &crashChild{cmd: cmd, out: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stdout = c.out
	cmd.Stderr = c.out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.exited <- cmd.Wait() }() // ends when the child does; cleanup below makes sure
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
	})
	deadline := time.After(60 * time.Second)
	for {
		rep, ok, err := c.out.report()
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			c.rep = rep
			return c
		}
		select {
		case err := <-c.exited:
			if strings.Contains(c.out.String(), "--- SKIP") {
				t.Skipf("child skipped:\n%s", c.out)
			}
			t.Fatalf("child exited (%v) without reporting its fleet:\n%s", err, c.out)
		case <-deadline:
			t.Fatalf("child did not report its fleet in time:\n%s", c.out)
		case <-time.After(20 * time.Millisecond): // poll interval
		}
	}
}

// TestStaleCleanup kills a test binary that owns a fleet, so none of its
// cleanups run, and checks that CleanupStale removes what it left: the
// namespaces, links, the escaped process and the slot's owner record.
func TestStaleCleanup(t *testing.T) {
	skipUnlessAvailable(t)
	c := startCrashChild(t, "kill")
	rep := c.rep

	if l, ok, err := tryLockSlot(rep.Slot); err != nil || ok {
		if ok {
			l.unlock()
		}
		t.Fatalf("slot %d not locked by the live child (ok=%v, %v)", rep.Slot, ok, err)
	}
	b, err := os.ReadFile(slotPath(rep.Slot))
	if err != nil {
		t.Fatal(err)
	}
	st, used, err := decodeState(b)
	if err != nil || !used || st.PID != c.cmd.Process.Pid || st.Test != "TestCrashChild" {
		t.Errorf("slot state %+v (used %v, %v), want owner pid %d", st, used, err, c.cmd.Process.Pid)
	}

	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-c.exited
	// A SIGKILLed owner runs no cleanup, so its fleet and the escaped
	// process should still be there. Only a test binary sweeping at the
	// same moment could have beaten us to them.
	if left := present(rep.Objects); len(left) != len(rep.Objects) {
		t.Logf("fleet partly gone before CleanupStale (concurrent sweeper?): %v of %v", left, rep.Objects)
	}
	if err := pidGone(rep.Orphan); err == nil {
		t.Logf("orphan %d gone before CleanupStale (concurrent sweeper?)", rep.Orphan)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := CleanupStale(ctx); err != nil {
		t.Fatal(err)
	}
	// Another test binary sweeping at the same moment holds the slot lock
	// and does the work instead of us, so wait for the result rather than
	// expect it on return.
	waitFor(t, 10*time.Second, "stale fleet removed", func() error {
		if left := present(rep.Objects); len(left) > 0 {
			return fmt.Errorf("left: %v", left)
		}
		return nil
	})
	waitFor(t, 5*time.Second, "orphan killed", func() error { return pidGone(rep.Orphan) })
	assertReleased(t, rep.Slot, c.cmd.Process.Pid)
}

// TestCleanupOnPanic checks that a panicking test still tears its fleet
// down (testing runs cleanups before it re-panics).
func TestCleanupOnPanic(t *testing.T) {
	skipUnlessAvailable(t)
	c := startCrashChild(t, "panic")
	rep := c.rep
	if err := <-c.exited; err == nil {
		t.Fatalf("panicking child exited 0:\n%s", c.out)
	}
	if left := present(rep.Objects); len(left) > 0 {
		t.Errorf("panicking test left %v", left)
	}
	waitFor(t, 5*time.Second, "orphan killed", func() error { return pidGone(rep.Orphan) })
	assertReleased(t, rep.Slot, c.cmd.Process.Pid)
}
