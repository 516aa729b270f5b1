package integration_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herd-io/herd/integration/cluster"
	"github.com/herd-io/herd/integration/netns"
	"github.com/herd-io/herd/node/api"
)

// fleet is a set of netns hosts each running the real herd agent binary.
type fleet struct {
	t     testing.TB
	hosts *netns.Fleet
	procs []*netns.Process
	idcs  []string
	token string
	key   string

	controlSize int
	noAgent     map[int]bool
	prelude     map[int]string
}

type fleetOptions struct {
	hosts, idcs int
	rateMbit    int
	// controlSize is the agents' --control-size; zero means 1.
	controlSize int
	// noAgent lists hosts (by index) that start no agent: bare netns
	// hosts for agentless (SSH) targets. They count in hosts and idcs but
	// nobody joins them and waitConverged does not expect them.
	noAgent []int
	extra   []string
	// prelude maps a host (by index) to shell commands its agent's
	// wrapper runs first, in the agent's own mount namespace, on every
	// start: e.g. a small tmpfs that only that agent sees. A failing
	// prelude keeps the agent from starting.
	prelude map[int]string
}

// startFleet starts one agent per netns host (except o.noAgent); host i
// belongs to IDC dc(i%idcs+1) and joins the first two agent hosts of its
// IDC.
func startFleet(t testing.TB, o fleetOptions) *fleet {
	t.Helper()
	if ok, why := netns.Available(); !ok {
		t.Skipf("netns fleet unavailable: %s", why)
	}
	hosts := netns.New(t, netns.Config{Hosts: o.hosts, RateMbit: o.rateMbit, Prefix: "herd"})
	f := &fleet{t: t, hosts: hosts, token: randHex(t, 16), controlSize: max(o.controlSize, 1), noAgent: map[int]bool{}, prelude: o.prelude}
	for _, i := range o.noAgent {
		f.noAgent[i] = true
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	f.key = base64.StdEncoding.EncodeToString(key)
	for i := range hosts.Hosts {
		f.idcs = append(f.idcs, fmt.Sprintf("dc%d", i%o.idcs+1))
	}
	f.procs = make([]*netns.Process, len(hosts.Hosts))
	for i := range hosts.Hosts {
		if !f.noAgent[i] {
			f.start(i, o.extra)
		}
	}
	return f
}

func (f *fleet) start(i int, extra []string) {
	f.t.Helper()
	h := f.hosts.Hosts[i]
	var join []string
	for j, other := range f.hosts.Hosts {
		if j != i && !f.noAgent[j] && f.idcs[j] == f.idcs[i] && len(join) < 2 {
			join = append(join, net.JoinHostPort(other.IP, "7946"))
		}
	}
	argv := []string{cluster.Binary(f.t), "agent",
		"--name", h.Name, "--idc", f.idcs[i],
		"--bind", net.JoinHostPort(h.IP, "7946"),
		"--p2p", net.JoinHostPort(h.IP, "7947"),
		"--api", net.JoinHostPort(h.IP, "7600"),
		"--swarm", net.JoinHostPort(h.IP, "7949"),
		"--data-dir", "/srv/herd",
		"--encrypt", f.key, "--api-token", f.token,
		"--control-size", fmt.Sprint(f.controlSize), "--health-interval", "2s",
		"--labels", fmt.Sprintf("host=%d", i),
	}
	if len(join) > 0 {
		argv = append(argv, "--join", strings.Join(join, ","))
	}
	argv = append(argv, extra...)
	if pre := f.prelude[i]; pre != "" {
		// sh execs the agent, so the pid held is still the agent's.
		argv = append([]string{"sh", "-c", pre + "\nexec \"$@\"", "sh"}, argv...)
	}
	p, err := h.Start("agent", argv, nil)
	if err != nil {
		f.t.Fatalf("starting agent on %s: %v", h.Name, err)
	}
	f.procs[i] = p
}

func (f *fleet) client(i int) *api.Client {
	c, err := api.NewClient(net.JoinHostPort(f.hosts.Hosts[i].IP, "7600"), f.token)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// statuses returns node name → status as host i sees its IDC.
func (f *fleet) statuses(ctx context.Context, i int) (map[string]string, error) {
	ms, err := f.client(i).Members(ctx, api.MembersQuery{})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range ms.Members {
		out[m.Name] = m.Status
	}
	return out, nil
}

// waitConverged waits until every live host sees every live host of its
// IDC alive. Hosts without an agent count as dead.
func (f *fleet) waitConverged(ctx context.Context, dead map[int]bool) error {
	if len(f.noAgent) > 0 {
		all := map[int]bool{}
		for i := range dead {
			all[i] = dead[i]
		}
		for i := range f.noAgent {
			all[i] = true
		}
		dead = all
	}
	return cluster.WaitFor(ctx, 100*time.Millisecond, func() error {
		want := map[string]int{}
		for i := range f.hosts.Hosts {
			if !dead[i] {
				want[f.idcs[i]]++
			}
		}
		for i := range f.hosts.Hosts {
			if dead[i] {
				continue
			}
			st, err := f.statuses(ctx, i)
			if err != nil {
				return fmt.Errorf("%s: %w", f.hosts.Hosts[i].Name, err)
			}
			alive := 0
			for _, s := range st {
				if s == "alive" {
					alive++
				}
			}
			if alive != want[f.idcs[i]] {
				return fmt.Errorf("%s sees %d alive, want %d", f.hosts.Hosts[i].Name, alive, want[f.idcs[i]])
			}
		}
		return nil
	})
}

func (f *fleet) logs(i int) string { return f.procs[i].Log() }

func randHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Twenty hosts in network namespaces, two IDCs: each IDC's pool converges,
// every host of an IDC gives the same member set, and a SIGKILLed host is
// marked failed by every other host of its IDC while a SIGTERMed one is left.
func TestFleetConvergesAndDetectsFailure(t *testing.T) {
	f := startFleet(t, fleetOptions{hosts: 20, idcs: 2})
	ctx := ctxTimeout(t, 90*time.Second)
	if err := f.waitConverged(ctx, nil); err != nil {
		t.Fatalf("%v\nlog of host 0:\n%s", err, f.logs(0))
	}
	sets := map[string]string{}
	for i := range f.hosts.Hosts {
		st, err := f.statuses(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for n := range st {
			names = append(names, n)
		}
		sort.Strings(names)
		got := strings.Join(names, ",")
		if prev, ok := sets[f.idcs[i]]; ok && prev != got {
			t.Fatalf("%s sees %s, another host of %s sees %s", f.hosts.Hosts[i].Name, got, f.idcs[i], prev)
		}
		sets[f.idcs[i]] = got
		if len(names) != 10 {
			t.Fatalf("%s sees %d members of %s, want 10", f.hosts.Hosts[i].Name, len(names), f.idcs[i])
		}
	}

	// Host 2 (dc1) crashes, host 4 (dc1) leaves gracefully.
	if err := f.procs[2].Kill(); err != nil {
		t.Fatal(err)
	}
	if err := f.procs[4].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	crashed, left := f.hosts.Hosts[2].Name, f.hosts.Hosts[4].Name
	err := cluster.WaitFor(ctx, 100*time.Millisecond, func() error {
		for i := range f.hosts.Hosts {
			if i == 2 || i == 4 || f.idcs[i] != "dc1" {
				continue
			}
			st, err := f.statuses(ctx, i)
			if err != nil {
				return err
			}
			if st[crashed] != "failed" || st[left] != "left" {
				return fmt.Errorf("%s sees %s=%s %s=%s", f.hosts.Hosts[i].Name, crashed, st[crashed], left, st[left])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// dc2 never saw them at all: IDC pools are separate.
	st, err := f.statuses(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st[crashed]; ok {
		t.Fatalf("dc2 host sees dc1's %s", crashed)
	}
}

// detectFailure kills host victim and returns how long until every other
// live host of its IDC marks it failed, and whether any other live host was
// ever seen failed meanwhile (a false positive). dead lists hosts killed
// earlier.
func (f *fleet) detectFailure(ctx context.Context, victim int, dead map[int]bool) (time.Duration, []string, error) {
	deadNames := map[string]bool{}
	for i := range dead {
		deadNames[f.hosts.Hosts[i].Name] = true
	}
	name := f.hosts.Hosts[victim].Name
	var mu sync.Mutex
	var falsePositives []string
	start := time.Now()
	if err := f.procs[victim].Kill(); err != nil {
		return 0, nil, err
	}
	err := cluster.WaitFor(ctx, 25*time.Millisecond, func() error {
		for i := range f.hosts.Hosts {
			if i == victim || dead[i] || f.idcs[i] != f.idcs[victim] {
				continue
			}
			st, err := f.statuses(ctx, i)
			if err != nil {
				return err
			}
			for n, s := range st {
				if n != name && !deadNames[n] && (s == "failed" || s == "left") {
					mu.Lock()
					falsePositives = append(falsePositives, f.hosts.Hosts[i].Name+" saw "+n+" "+s)
					mu.Unlock()
				}
			}
			if st[name] != "failed" {
				return fmt.Errorf("%s sees %s %s", f.hosts.Hosts[i].Name, name, st[name])
			}
		}
		return nil
	})
	return time.Since(start), falsePositives, err
}

// index returns the fleet index of the host called name.
func (f *fleet) index(name string) int {
	for i, h := range f.hosts.Hosts {
		if h.Name == name {
			return i
		}
	}
	f.t.Fatalf("no host %s", name)
	return -1
}
