package mesh

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

var (
	testKey  = []byte("0123456789abcdef")
	otherKey = []byte("fedcba9876543210")
)

// fastTimings tightens memberlist for loopback tests: failures are
// detected in about a second and push/pull runs every second.
func fastTimings(c *memberlist.Config) {
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.GossipInterval = 50 * time.Millisecond
	c.PushPullInterval = time.Second
	c.SuspicionMult = 2
	c.TCPTimeout = time.Second
	c.GossipToTheDeadTime = 5 * time.Second
}

// testConfig returns a config for a node on 127.0.0.1 with an ephemeral
// port, the test key and fast timings.
func testConfig(t testing.TB, name string) *Config {
	cfg := DefaultConfig()
	cfg.Name = name
	cfg.IDC = "dc1"
	cfg.BindAddr = "127.0.0.1"
	cfg.BindPort = 0
	cfg.SecretKey = testKey
	cfg.HealthInterval = 250 * time.Millisecond
	cfg.DataDir = t.TempDir()
	cfg.Logger = newRecorder().logger()
	cfg.Memberlist = fastTimings
	cfg.Meta = Meta{ID: "peer-" + name, API: "127.0.0.1:1", Version: "test"}
	return cfg
}

// startMesh creates a mesh that is shut down when the test ends.
func startMesh(t testing.TB, cfg *Config) *Mesh {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.Name, err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

// startCluster starts n nodes, joins them to the first and waits until
// every node sees every other alive.
func startCluster(t testing.TB, n int, tweak func(i int, cfg *Config)) []*Mesh {
	t.Helper()
	nodes := make([]*Mesh, n)
	for i := range nodes {
		cfg := testConfig(t, fmt.Sprintf("node%d", i))
		if tweak != nil {
			tweak(i, cfg)
		}
		nodes[i] = startMesh(t, cfg)
		if i > 0 {
			if _, err := nodes[i].Join([]string{nodes[0].LocalAddr()}); err != nil {
				t.Fatalf("join node%d: %v", i, err)
			}
		}
	}
	waitConverged(t, nodes, n)
	return nodes
}

func waitConverged(t testing.TB, nodes []*Mesh, alive int) {
	t.Helper()
	waitFor(t, 10*time.Second, func() (bool, string) {
		for _, m := range nodes {
			if got := countStatus(m, StatusAlive); got != alive {
				return false, fmt.Sprintf("%s sees %d alive, want %d", m.cfg.Name, got, alive)
			}
		}
		return true, ""
	})
}

func countStatus(m *Mesh, s Status) int {
	n := 0
	for _, mem := range m.Members() {
		if mem.Status == s {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds or the deadline passes; cond explains
// what it is still waiting for.
func waitFor(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %s", timeout, why)
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not synchronisation
	}
}

// collector drains a subscription in the background.
type collector struct {
	mu     sync.Mutex
	events []Event
	done   chan struct{}
}

func collect(t testing.TB, s *Subscription) *collector {
	c := &collector{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for ev := range s.C {
			c.mu.Lock()
			c.events = append(c.events, ev)
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { s.Close(); <-c.done })
	return c
}

func (c *collector) snapshot() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

// has reports whether an event of type typ about member name arrived.
func (c *collector) has(typ EventType, name string) bool {
	for _, ev := range c.snapshot() {
		if ev.Type == typ && ev.Member.Name == name {
			return true
		}
	}
	return false
}

// userEvents returns the user events received, as "name:payload".
func (c *collector) userEvents() []string {
	var out []string
	for _, ev := range c.snapshot() {
		if ev.Type == EventUser {
			out = append(out, ev.User.Name+":"+string(ev.User.Payload))
		}
	}
	slices.Sort(out)
	return out
}

// recorder is a slog handler that keeps records for assertions, and
// prints them with -v.
type recorder struct {
	mu      *sync.Mutex
	records *[]slog.Record
	attrs   []slog.Attr
}

func newRecorder() *recorder {
	return &recorder{mu: new(sync.Mutex), records: new([]slog.Record)}
}

func (r *recorder) logger() *slog.Logger { return slog.New(r) }

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || testing.Verbose()
}

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(r.attrs...)
	r.mu.Lock()
	*r.records = append(*r.records, rec)
	r.mu.Unlock()
	if testing.Verbose() && rec.Level >= slog.LevelWarn {
		fmt.Fprintf(os.Stderr, "%s %s %s\n", rec.Time.Format("15:04:05.000"), rec.Level, recordText(rec))
	}
	return nil
}

func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	out := *r
	out.attrs = append(slices.Clone(r.attrs), as...)
	return &out
}

func (r *recorder) WithGroup(string) slog.Handler { return r }

func recordText(rec slog.Record) string {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	return b.String()
}

// find returns the first record at level or above whose text contains
// every one of subs.
func (r *recorder) find(level slog.Level, subs ...string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
next:
	for _, rec := range *r.records {
		if rec.Level < level {
			continue
		}
		text := recordText(rec)
		for _, s := range subs {
			if !strings.Contains(text, s) {
				continue next
			}
		}
		return text, true
	}
	return "", false
}

func recorderOf(m *Mesh) *recorder { return m.log.Handler().(*recorder) }
