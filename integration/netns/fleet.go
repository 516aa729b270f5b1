package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fleet is a set of hosts on one bridge. Its exported fields are read-only.
type Fleet struct {
	// Hosts are the fleet's hosts, Hosts[i].Name == fmt.Sprint("h", i+1).
	Hosts []*Host
	// Bridge is the bridge interface in the root namespace.
	Bridge string
	// Gateway is the bridge's address: the root namespace as seen from
	// the hosts, and the hosts' default route. A listener in the test
	// process bound to it is reachable from every host.
	Gateway string
	// Subnet is the fleet's on-link prefix, e.g. "198.18.3.0/24".
	Subnet string
	// Prefix starts every namespace name: "<Config.Prefix>-s<slot>".
	Prefix string

	t      testing.TB
	lay    layout
	lease  *lease
	logDir string

	mu     sync.Mutex
	procs  []*Process
	closed bool
}

// Host is one network namespace of a fleet. Its exported fields are
// read-only.
type Host struct {
	// Name is "h<N>", N counting from 1.
	Name string
	// NS is the network namespace name ("<Fleet.Prefix>-h<N>").
	NS string
	// IP is the host's address on eth0 (198.18.x.N+10).
	IP string
	// Veth is the root-namespace end of the host's link.
	Veth string
	// SrvDir is the root-namespace directory that processes on this host
	// see as /srv. It persists across processes on the host and is removed
	// with the test's temporary directory.
	SrvDir string

	fleet *Fleet
}

// New builds a fleet and registers its teardown with t.Cleanup, which runs
// even when the test fails or panics. It skips t when Available says no and
// fails t when the fleet cannot be built. Leftovers of crashed earlier runs
// are removed first (see CleanupStale).
func New(t testing.TB, cfg Config) *Fleet {
	t.Helper()
	if ok, why := Available(); !ok {
		t.Skipf("netns: %s", why)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second+time.Duration(cfg.Hosts)*100*time.Millisecond)
	defer cancel()

	if err := CleanupStale(ctx); err != nil {
		// Somebody else's mess must not fail this test; allocation skips
		// whatever it could not clear.
		t.Logf("netns: stale cleanup: %v", err)
	}
	if err := os.MkdirAll("/srv", 0o755); err != nil {
		t.Fatalf("netns: create /srv mount point: %v", err)
	}
	dir := t.TempDir()
	ls, lay, err := allocate(ctx, layout{hosts: cfg.Hosts, pfx: cfg.Prefix}, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	f := &Fleet{
		Bridge:  lay.bridge(),
		Gateway: lay.gateway().String(),
		Subnet:  lay.subnet().String(),
		Prefix:  lay.fleetPrefix(),
		t:       t,
		lay:     lay,
		lease:   ls,
		logDir:  filepath.Join(dir, "logs"),
	}
	// Registered before anything exists so a setup failure half way is
	// torn down too; teardown works by name and ignores what is missing.
	t.Cleanup(f.teardown)
	if err := os.Mkdir(f.logDir, 0o755); err != nil {
		t.Fatalf("netns: %v", err)
	}
	for n := 1; n <= cfg.Hosts; n++ {
		h := &Host{
			Name:   fmt.Sprintf("h%d", n),
			NS:     lay.ns(n),
			IP:     lay.hostAddr(n).String(),
			Veth:   lay.veth(n),
			SrvDir: filepath.Join(dir, "hosts", fmt.Sprintf("h%d", n), "srv"),
			fleet:  f,
		}
		if err := os.MkdirAll(h.SrvDir, 0o755); err != nil {
			t.Fatalf("netns: %v", err)
		}
		f.Hosts = append(f.Hosts, h)
	}
	start := time.Now()
	if err := f.setup(ctx, cfg.RateMbit); err != nil {
		t.Fatalf("netns: build fleet %s: %v", f.Subnet, err)
	}
	t.Logf("netns: fleet %s (%d hosts, bridge %s) ready in %v", f.Subnet, len(f.Hosts), f.Bridge, time.Since(start).Round(time.Millisecond))
	return f
}

// setup creates the kernel objects. Root-namespace work goes through two
// `ip -b` batches; each host then needs one exec inside its namespace.
func (f *Fleet) setup(ctx context.Context, rateMbit int) error {
	bits := f.lay.bits()
	lines := []string{
		fmt.Sprintf("link add %s address %s type bridge stp_state 0 forward_delay 0", f.Bridge, f.lay.bridgeMAC()),
	}
	for _, h := range f.Hosts {
		lines = append(lines,
			"netns add "+h.NS,
			// The peer is born inside the namespace, already called eth0,
			// so there is no rename and no name clash in the root namespace.
			fmt.Sprintf("link add %s type veth peer name eth0 netns %s", h.Veth, h.NS))
	}
	if err := ipBatch(ctx, false, lines); err != nil {
		return err
	}
	// IPv6 off before anything goes up, or every link starts duplicate
	// address detection and router solicitation chatter.
	if err := setSysctl("net/ipv6/conf/"+f.Bridge+"/disable_ipv6", "1"); err != nil {
		return err
	}
	lines = []string{
		fmt.Sprintf("addr add %s/%d dev %s", f.Gateway, bits, f.Bridge),
		"link set dev " + f.Bridge + " up",
	}
	for _, h := range f.Hosts {
		if err := setSysctl("net/ipv6/conf/"+h.Veth+"/disable_ipv6", "1"); err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("link set dev %s master %s up", h.Veth, f.Bridge))
	}
	if err := ipBatch(ctx, false, lines); err != nil {
		return err
	}
	if err := forEachHost(ctx, f.Hosts, func(ctx context.Context, h *Host) error {
		return h.configure(ctx, bits, rateMbit)
	}); err != nil {
		return err
	}
	return f.waitForwarding(ctx)
}

// configure sets up the namespace side of one host: IPv6 off (writing
// "all" also sets "default" and reaches lo and eth0), addresses, routes,
// and optional shaping.
func (h *Host) configure(ctx context.Context, bits, rateMbit int) error {
	f := h.fleet
	script := `f=/proc/sys/net/ipv6/conf/all/disable_ipv6; if [ -e $f ]; then echo 1 > $f || exit 1; fi; exec ip -b -`
	batch := strings.Join([]string{
		"link set dev lo up",
		fmt.Sprintf("addr add %s/%d dev eth0", h.IP, bits),
		"link set dev eth0 up",
		"route add default via " + f.Gateway + " dev eth0",
	}, "\n") + "\n"
	if _, err := run(ctx, batch, "nsenter", "--net="+filepath.Join(netnsDir, h.NS), "sh", "-c", script); err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	if rateMbit > 0 {
		return h.shape(ctx, rateMbit)
	}
	return nil
}

// waitForwarding polls until every bridge port forwards. With STP off and
// no forward delay that is immediate, but New promises a fleet that passes
// traffic when it returns, so it checks rather than assumes.
func (f *Fleet) waitForwarding(ctx context.Context) error {
	for _, h := range f.Hosts {
		path := "/sys/class/net/" + h.Veth + "/brport/state"
		for {
			b, err := os.ReadFile(path)
			if err == nil && strings.TrimSpace(string(b)) == "3" { // BR_STATE_FORWARDING
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s never reached forwarding (state %q, %v): %w", h.Veth, b, err, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// forEachHost runs fn for every host on a few goroutines and returns the
// errors joined. It returns only after every goroutine has finished.
func forEachHost(ctx context.Context, hosts []*Host, fn func(context.Context, *Host) error) error {
	const workers = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		next = make(chan *Host)
	)
	for range min(workers, len(hosts)) {
		wg.Go(func() {
			for h := range next {
				if err := fn(ctx, h); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, h := range hosts {
		next <- h
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// teardown kills every process the fleet started and everything else in its
// namespaces, deletes the namespaces, veths and bridge, and releases the
// slots. Failures are test errors: a leak would break later runs.
func (f *Fleet) teardown() {
	f.mu.Lock()
	f.closed = true
	procs := f.procs
	f.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, p := range procs {
		_ = p.Kill()
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-ctx.Done():
			f.t.Errorf("netns: %s/%s (pid %d) did not exit after SIGKILL", p.host.Name, p.name, p.Pid())
		}
	}
	if f.t.Failed() {
		for _, p := range procs {
			f.t.Logf("netns: log of %s/%s (%s), last lines:\n%s", p.host.Name, p.name, p.logPath, tail(p.Log(), 40))
		}
	}
	slots := map[int]bool{}
	for _, l := range f.lease.locks {
		slots[l.slot] = true
	}
	if err := cleanSlots(ctx, slots); err != nil {
		f.t.Errorf("netns: teardown of %s: %v", f.Subnet, err)
		// Keep the state so CleanupStale in a later process retries, and
		// release the locks so it can.
		f.lease.release(false)
		return
	}
	f.lease.release(true)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
