package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestFleetConnectivity(t *testing.T) {
	start := time.Now()
	f := New(t, Config{Hosts: 20})
	t.Logf("New(20 hosts) took %v", time.Since(start).Round(time.Millisecond))

	ln, err := net.Listen("tcp", net.JoinHostPort(f.Gateway, "0"))
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, ln)
	gw := ln.Addr().String()

	addrs := make([]string, len(f.Hosts))
	for i, h := range f.Hosts {
		_, addrs[i] = startEcho(t, h) // also proves root -> host
	}
	ctx := t.Context()
	var wg sync.WaitGroup
	for i, h := range f.Hosts {
		wg.Go(func() {
			if err := hostDial(ctx, t, h, gw, 2*time.Second); err != nil {
				t.Errorf("%s -> gateway: %v", h.Name, err)
			}
			peer := addrs[(i+1)%len(addrs)]
			if err := hostDial(ctx, t, h, peer, 2*time.Second); err != nil {
				t.Errorf("%s -> %s: %v", h.Name, peer, err)
			}
		})
	}
	wg.Wait()

	// The host side looks like a plain server: eth0 with the fleet
	// address, no IPv6 at all.
	h := f.Hosts[19]
	out, err := h.Exec(ctx, "ip", "-o", "addr", "show")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "eth0    inet "+h.IP+"/24") || strings.Contains(string(out), "inet6") {
		t.Errorf("%s addresses:\n%s", h.Name, out)
	}
	out, err = h.Exec(ctx, "ip", "route", "show", "default")
	if err != nil || !strings.Contains(string(out), "via "+f.Gateway) {
		t.Errorf("%s default route %q, %v", h.Name, out, err)
	}
	for _, dev := range []string{f.Bridge, h.Veth} {
		b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + dev + "/disable_ipv6")
		if err == nil && string(b) != "1\n" {
			t.Errorf("IPv6 on root-side %s: disable_ipv6=%q", dev, b)
		}
	}
}

// TestLargeFleet builds a fleet that needs a /23, the multi-slot path.
func TestLargeFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 250 namespaces")
	}
	start := time.Now()
	f := New(t, Config{Hosts: 250})
	t.Logf("New(250 hosts) took %v", time.Since(start).Round(time.Millisecond))
	if !strings.HasSuffix(f.Subnet, "/23") {
		t.Errorf("subnet %s, want a /23", f.Subnet)
	}
	last := f.Hosts[len(f.Hosts)-1]
	_, addr := startEcho(t, last)
	if err := hostDial(t.Context(), t, f.Hosts[0], addr, 2*time.Second); err != nil {
		t.Errorf("h1 -> %s (%s): %v", last.Name, last.IP, err)
	}
	if len(f.lease.locks) != 2 {
		t.Errorf("leased %d slots, want 2", len(f.lease.locks))
	}
}

func TestSrvIsPrivatePerHost(t *testing.T) {
	skipUnlessAvailable(t)
	rootBefore, rootErr := os.ReadFile("/srv/a")
	f := New(t, Config{Hosts: 2})
	h1, h2 := f.Hosts[0], f.Hosts[1]
	ctx := t.Context()

	for _, h := range f.Hosts {
		p, err := h.Start("writer", []string{"sh", "-c", "echo from-$0 > /srv/x", h.Name}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(ctx); err != nil {
			t.Fatalf("%s writer: %v\n%s", h.Name, err, p.Log())
		}
	}
	if _, err := h1.Exec(ctx, "sh", "-c", "echo hello > /srv/a"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		host *Host
		cmd  string
		want string
	}{
		{h1, "cat /srv/x", "from-h1\n"},
		{h2, "cat /srv/x", "from-h2\n"},
		{h1, "cat /srv/a", "hello\n"},
		{h2, "test -e /srv/a && echo leaked || echo absent", "absent\n"},
	}
	for _, tc := range tests {
		out, err := tc.host.Exec(ctx, "sh", "-c", tc.cmd)
		if err != nil || string(out) != tc.want {
			t.Errorf("%s: %s = %q, %v; want %q", tc.host.Name, tc.cmd, out, err, tc.want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(h1.SrvDir, "a")); err != nil || string(b) != "hello\n" {
		t.Errorf("h1 SrvDir/a = %q, %v", b, err)
	}
	rootAfter, rootErrAfter := os.ReadFile("/srv/a")
	if string(rootAfter) != string(rootBefore) || errors.Is(rootErr, os.ErrNotExist) != errors.Is(rootErrAfter, os.ErrNotExist) {
		t.Errorf("root /srv/a changed: before %q (%v), after %q (%v)", rootBefore, rootErr, rootAfter, rootErrAfter)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), h1.SrvDir) {
		t.Errorf("host /srv bind leaked into the root mount namespace:\n%s", mi)
	}
}

func TestCutAndRestoreLink(t *testing.T) {
	f := New(t, Config{Hosts: 2})
	h1, h2 := f.Hosts[0], f.Hosts[1]
	_, addr1 := startEcho(t, h1)
	ctx := t.Context()
	if err := hostDial(ctx, t, h2, addr1, 2*time.Second); err != nil {
		t.Fatalf("before cut: h2 -> h1: %v", err)
	}

	if err := h1.CutLink(); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	waitFor(t, 5*time.Second, "h1 unreachable from root", func() error {
		if roundTrip(addr1, 300*time.Millisecond) == nil {
			return errors.New("still reachable")
		}
		return nil
	})
	t.Logf("link cut observed after %v", time.Since(cut).Round(time.Millisecond))
	if err := hostDial(ctx, t, h2, addr1, 500*time.Millisecond); err == nil {
		t.Error("h2 still reaches h1 after CutLink")
	}
	if err := hostDial(ctx, t, h1, net.JoinHostPort(h2.IP, echoPort), 500*time.Millisecond); err == nil {
		t.Error("h1 still reaches out after CutLink")
	}

	if err := h1.RestoreLink(); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	waitFor(t, 10*time.Second, "h1 reachable again", func() error { return roundTrip(addr1, 300*time.Millisecond) })
	t.Logf("link back after %v", time.Since(restored).Round(time.Millisecond))
	if err := hostDial(ctx, t, h2, addr1, 2*time.Second); err != nil {
		t.Errorf("after restore: h2 -> h1: %v", err)
	}
}

func TestShape(t *testing.T) {
	const size = 2 << 20
	f := New(t, Config{Hosts: 1})
	h := f.Hosts[0]
	_, addr := startEcho(t, h)

	// Best of three, so a busy machine does not pass off scheduling delay
	// as link speed.
	unshaped := transfer(t, addr, size)
	for range 2 {
		unshaped = min(unshaped, transfer(t, addr, size))
	}
	const rate = 10
	if err := h.Shape(rate); err != nil {
		t.Fatal(err)
	}
	shaped := transfer(t, addr, size)
	mbit := float64(size) * 8 / shaped.Seconds() / 1e6
	t.Logf("2 MiB echo: unshaped %v, shaped at %d Mbit %v (%.1f Mbit/s)", unshaped.Round(time.Millisecond), rate, shaped.Round(time.Millisecond), mbit)
	if mbit > 2*rate {
		t.Errorf("shaped throughput %.1f Mbit/s exceeds twice the %d Mbit limit", mbit, rate)
	}
	if shaped < 3*unshaped {
		t.Errorf("shaped transfer %v is not noticeably slower than unshaped %v", shaped, unshaped)
	}

	if err := h.Shape(0); err != nil {
		t.Fatal(err)
	}
	if err := h.Shape(0); err != nil { // removing twice is fine
		t.Fatal(err)
	}
	again := transfer(t, addr, size)
	if again > shaped/2 {
		t.Errorf("after Shape(0) the transfer took %v, shaped took %v", again, shaped)
	}

	t.Run("config", func(t *testing.T) {
		f := New(t, Config{Hosts: 1, RateMbit: 50})
		h := f.Hosts[0]
		out, err := exec.Command("tc", "qdisc", "show", "dev", h.Veth).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "tbf") || !strings.Contains(string(out), "rate 50Mbit") {
			t.Errorf("root side qdisc: %s %v", out, err)
		}
		out, err = h.Exec(t.Context(), "tc", "qdisc", "show", "dev", "eth0")
		if err != nil || !strings.Contains(string(out), "tbf") || !strings.Contains(string(out), "rate 50Mbit") {
			t.Errorf("host side qdisc: %s %v", out, err)
		}
	})
}

func TestProcess(t *testing.T) {
	f := New(t, Config{Hosts: 1})
	h := f.Hosts[0]
	ctx := t.Context()

	t.Run("kill takes the tree", func(t *testing.T) {
		p, err := h.Start("tree", []string{"sh", "-c", "echo out; echo err >&2; sleep 1000 & echo $! > /srv/child.pid; wait"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var child int
		waitFor(t, 5*time.Second, "child pid", func() error {
			b, err := os.ReadFile(filepath.Join(h.SrvDir, "child.pid"))
			if err != nil {
				return err
			}
			_, err = fmt.Sscan(string(b), &child)
			return err
		})
		waitCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if err := p.Wait(waitCtx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait on a running process = %v, want deadline exceeded", err)
		}
		if p.Pid() <= 0 || p.Exited() {
			t.Errorf("pid %d exited %v", p.Pid(), p.Exited())
		}
		if err := p.Kill(); err != nil {
			t.Fatal(err)
		}
		var ee *exec.ExitError
		if err := p.Wait(ctx); !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("Wait after Kill = %v, want killed", err)
		}
		waitFor(t, 5*time.Second, "child of killed process", func() error { return pidGone(child) })
		if log := p.Log(); !strings.Contains(log, "out\n") || !strings.Contains(log, "err\n") {
			t.Errorf("log = %q", log)
		}
		if err := p.Kill(); err != nil {
			t.Errorf("second Kill: %v", err)
		}
	})

	t.Run("signal reaches the process", func(t *testing.T) {
		p, err := h.Start("term", []string{"sh", "-c", "trap 'echo got-term; exit 3' TERM; echo ready; sleep 1000 & wait"}, []string{"HERD_TEST_VAR=x"})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "trap installed", func() error {
			if !strings.Contains(p.Log(), "ready") {
				return errors.New("not ready")
			}
			return nil
		})
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		var ee *exec.ExitError
		if err := p.Wait(ctx); !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("Wait = %v, want exit status 3", err)
		}
		if !strings.Contains(p.Log(), "got-term") {
			t.Errorf("log = %q", p.Log())
		}
		if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("Signal after exit = %v", err)
		}
	})

	t.Run("env and logs", func(t *testing.T) {
		p, err := h.Start("env", []string{"sh", "-c", `echo "v=$HERD_TEST_VAR"`}, []string{"HERD_TEST_VAR=one", "HERD_TEST_VAR=two"})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if p.Log() != "v=two\n" {
			t.Errorf("log = %q", p.Log())
		}
		p2, err := h.Start("env", []string{"true"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if p2.LogPath() == p.LogPath() {
			t.Errorf("second process of the same name reuses log %s", p.LogPath())
		}
		if err := p2.Wait(ctx); err != nil {
			t.Error(err)
		}
	})

	t.Run("exec honours ctx", func(t *testing.T) {
		ectx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := h.Exec(ectx, "sleep", "1000"); err == nil {
			t.Error("Exec outlived its context")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("cancelled Exec returned after %v", d)
		}
		if _, err := h.Exec(ctx, "sh", "-c", "exit 7"); err == nil || !strings.Contains(err.Error(), "exit status 7") {
			t.Errorf("Exec exit 7 = %v", err)
		}
	})
}

// TestTeardown checks that the cleanup New registers leaves nothing: no
// process, namespace, link or lease, and that a torn-down fleet refuses
// work.
func TestTeardown(t *testing.T) {
	skipUnlessAvailable(t)
	var (
		f     *Fleet
		objs  []kobj
		child int
	)
	t.Run("fleet", func(t *testing.T) {
		f = New(t, Config{Hosts: 2, Prefix: testPrefix})
		objs = fleetObjects(t, f)
		p, err := f.Hosts[1].Start("orphan", []string{"sh", "-c", "setsid sleep 1000 & echo $! > /srv/pid; wait"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "pid file", func() error {
			b, err := os.ReadFile(filepath.Join(f.Hosts[1].SrvDir, "pid"))
			if err == nil {
				_, err = fmt.Sscan(string(b), &child)
			}
			return err
		})
		if pidGone(child) == nil || p.Exited() {
			t.Fatalf("setsid sleep %d or its parent already gone:\n%s", child, p.Log())
		}
	})
	if f == nil {
		t.Fatal("fleet subtest did not run")
	}
	if left := present(objs); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	// setsid put the sleep in its own session and group: only the
	// namespace sweep can have killed it.
	waitFor(t, 5*time.Second, "escaped process", func() error { return pidGone(child) })
	if _, err := f.Hosts[0].Start("late", []string{"true"}, nil); err == nil {
		t.Error("Start on a torn-down fleet succeeded")
	}
	if _, err := f.Hosts[0].Exec(t.Context(), "true"); err == nil {
		t.Error("Exec on a torn-down fleet succeeded")
	}
	assertReleased(t, f.lay.slot, os.Getpid())
}

func TestParallelFleets(t *testing.T) {
	skipUnlessAvailable(t)
	const fleets = 2
	var (
		mu       sync.Mutex
		subnets  = map[string]string{}
		objs     []kobj
		slots    []int
		allBuilt sync.WaitGroup
	)
	allBuilt.Add(fleets)
	t.Run("group", func(t *testing.T) {
		for i := range fleets {
			t.Run(fmt.Sprint("fleet", i), func(t *testing.T) {
				t.Parallel()
				built := sync.OnceFunc(allBuilt.Done) // also on failure, so the peer never waits for nothing
				defer built()
				f := New(t, Config{Hosts: 3, Prefix: testPrefix})
				mu.Lock()
				if other, dup := subnets[f.Subnet]; dup {
					t.Errorf("subnet %s handed to %s and %s", f.Subnet, other, t.Name())
				}
				subnets[f.Subnet] = t.Name()
				objs = append(objs, fleetObjects(t, f)...)
				slots = append(slots, f.lay.slot)
				mu.Unlock()
				// Both fleets must exist at once for the check to mean
				// anything; with -parallel 1 they cannot, so wait boundedly.
				built()
				waited := make(chan struct{})
				go func() { allBuilt.Wait(); close(waited) }() // ends once every subtest has called built
				select {
				case <-waited:
				case <-time.After(30 * time.Second):
					t.Log("peer fleet not built concurrently (is -parallel 1?)")
				}
				_, addr := startEcho(t, f.Hosts[1])
				if err := hostDial(t.Context(), t, f.Hosts[0], addr, 2*time.Second); err != nil {
					t.Error(err)
				}
			})
		}
	})
	if len(subnets) != fleets {
		t.Fatalf("subnets %v", subnets)
	}
	if left := present(objs); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	for _, s := range slots {
		assertReleased(t, s, os.Getpid())
	}
}
