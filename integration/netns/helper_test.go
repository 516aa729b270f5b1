package netns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test binary doubles as the network tool the hosts run, so the tests
// need no packages beyond iproute2: TestMain turns into a helper when
// helperEnv is set.
const (
	helperEnv  = "HERD_NETNS_HELPER"  // "echo" or "dial"
	addrEnv    = "HERD_NETNS_ADDR"    // listen or dial address
	timeoutEnv = "HERD_NETNS_TIMEOUT" // dial timeout (time.ParseDuration)
	echoPort   = "7000"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Getenv(addrEnv)))
	}
	os.Exit(m.Run())
}

func runHelper(mode, addr string) int {
	switch mode {
	case "echo":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("listening", ln.Addr())
		for {
			c, err := ln.Accept()
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			go func() { // owned by the connection: ends when the peer closes
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	case "dial":
		timeout, err := time.ParseDuration(os.Getenv(timeoutEnv))
		if err != nil {
			timeout = 2 * time.Second
		}
		if err := roundTrip(addr, timeout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("ok", addr)
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

// roundTrip connects to an echo server and checks one line comes back.
func roundTrip(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read echo from %s: %w", addr, err)
	}
	if line != "ping\n" {
		return fmt.Errorf("echo from %s: got %q", addr, line)
	}
	return nil
}

// self is the test binary, as the hosts should exec it.
func self(t testing.TB) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// skipUnlessAvailable skips tests that look at the machine before New does.
func skipUnlessAvailable(t testing.TB) {
	t.Helper()
	if ok, why := Available(); !ok {
		t.Skipf("netns: %s", why)
	}
}

// startEcho runs the echo helper on h and waits until the root namespace
// can use it.
func startEcho(t testing.TB, h *Host) (*Process, string) {
	t.Helper()
	addr := net.JoinHostPort(h.IP, echoPort)
	p, err := h.Start("echo", []string{self(t)}, []string{helperEnv + "=echo", addrEnv + "=" + addr})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "echo on "+h.Name, func() error {
		if p.Exited() {
			return fmt.Errorf("echo exited: %v\n%s", p.Wait(context.Background()), p.Log())
		}
		return roundTrip(addr, 500*time.Millisecond)
	})
	return p, addr
}

// hostDial makes h connect to an echo server at addr.
func hostDial(ctx context.Context, t testing.TB, h *Host, addr string, timeout time.Duration) error {
	_, err := h.Exec(ctx, "env", helperEnv+"=dial", addrEnv+"="+addr,
		timeoutEnv+"="+timeout.String(), self(t))
	return err
}

// waitFor polls cond until it returns nil or the deadline passes, then
// fails the test with the last error. The pause between tries is a poll
// interval, never the synchronisation itself.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v: %v", what, timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// serveEcho runs an echo server on ln in the test process until the test
// ends.
func serveEcho(t testing.TB, ln net.Listener) {
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				_, _ = io.Copy(c, c)
			})
		}
	})
}

// transfer pushes size bytes through the echo server at addr and reads
// them back, returning how long that took. Writing and reading run at the
// same time, so with each direction shaped separately the elapsed time is
// about size over the rate, not twice that.
func transfer(t testing.TB, addr string, size int) time.Duration {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	werr := make(chan error, 1)
	go func() { // owned by transfer: it waits on werr below
		_, err := c.Write(make([]byte, size))
		werr <- err
	}()
	n, err := io.CopyN(io.Discard, c, int64(size))
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("read back %d of %d bytes: %v", n, size, err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	return elapsed
}

// testPrefix names this process's fleets, so a test binary running at the
// same time (another package, or this one twice) never owns a namespace of
// the same name.
var testPrefix = fmt.Sprintf("t%x", os.Getpid())

// kobj identifies one kernel object a fleet made. A link is known by name
// and ifindex because another fleet may reuse the name as soon as the slot
// is free; namespaces carry testPrefix instead.
type kobj struct {
	Name    string `json:"name"`
	Ifindex int    `json:"ifindex,omitempty"` // 0 for a namespace
}

func ifindex(name string) int {
	b, err := os.ReadFile("/sys/class/net/" + name + "/ifindex")
	if err != nil {
		return -1
	}
	var n int
	if _, err := fmt.Sscan(string(b), &n); err != nil {
		return -1
	}
	return n
}

// fleetObjects lists every kernel object f made.
func fleetObjects(t testing.TB, f *Fleet) []kobj {
	t.Helper()
	objs := []kobj{{Name: f.Bridge, Ifindex: ifindex(f.Bridge)}}
	for _, h := range f.Hosts {
		objs = append(objs, kobj{Name: h.NS}, kobj{Name: h.Veth, Ifindex: ifindex(h.Veth)})
	}
	for _, o := range objs {
		if o.Ifindex < 0 {
			t.Fatalf("link %s of a live fleet not found", o.Name)
		}
	}
	return objs
}

// present returns the names of those objects that still exist.
func present(objs []kobj) []string {
	var out []string
	for _, o := range objs {
		if o.Ifindex == 0 {
			if _, err := os.Lstat(netnsDir + "/" + o.Name); err == nil {
				out = append(out, o.Name)
			}
		} else if ifindex(o.Name) == o.Ifindex {
			out = append(out, o.Name)
		}
	}
	return out
}

// assertReleased checks that slot no longer records pid as its owner. The
// slot itself may already belong to a fleet of another test binary.
func assertReleased(t testing.TB, slot, pid int) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("slot %d released by pid %d", slot, pid), func() error {
		b, err := os.ReadFile(slotPath(slot))
		if err != nil {
			return err
		}
		st, used, err := decodeState(b)
		if err != nil {
			return err // caught mid-rewrite by its new owner
		}
		if used && st.PID == pid {
			return fmt.Errorf("state %+v", st)
		}
		return nil
	})
}

// pidGone reports whether pid has exited (a zombie counts: it holds no
// namespace and runs no code).
func pidGone(pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
		return nil
	}
	return fmt.Errorf("pid %d still running", pid)
}
