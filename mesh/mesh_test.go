package mesh

import (
	"fmt"
	"log/slog"
	"maps"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestConvergeFiveNodes(t *testing.T) {
	zones := []string{"a", "b", "c", "a", "b"}
	nodes := startCluster(t, 5, func(i int, cfg *Config) {
		cfg.Zone = zones[i]
		cfg.Labels = map[string]string{"role": []string{"web", "db"}[i%2], "rack": fmt.Sprint(i)}
	})
	waitFor(t, 10*time.Second, func() (bool, string) {
		for _, m := range nodes {
			members := m.Members()
			if len(members) != 5 {
				return false, fmt.Sprintf("%s lists %d members", m.cfg.Name, len(members))
			}
			for i, mem := range members {
				want := fmt.Sprintf("node%d", i)
				switch {
				case mem.Name != want:
					return false, fmt.Sprintf("%s: member %d is %q, want %q (sorted)", m.cfg.Name, i, mem.Name, want)
				case mem.Status != StatusAlive:
					return false, fmt.Sprintf("%s sees %s %s", m.cfg.Name, mem.Name, mem.Status)
				case mem.Labels["rack"] != fmt.Sprint(i):
					return false, fmt.Sprintf("%s sees %s labels %v", m.cfg.Name, mem.Name, mem.Labels)
				case mem.Health.Collected.IsZero() || mem.Health.Version != "test":
					return false, fmt.Sprintf("%s has no health of %s yet", m.cfg.Name, mem.Name)
				case runtime.GOOS == "linux" && (mem.Health.MemTotal == 0 || mem.Health.DiskTotal == 0 || mem.Health.HostUptime == 0):
					return false, fmt.Sprintf("%s sees incomplete health of %s: %+v", m.cfg.Name, mem.Name, mem.Health)
				}
			}
		}
		return true, ""
	})

	m := nodes[4]
	mem, ok := m.Member("node1")
	if !ok {
		t.Fatal("node4 does not know node1")
	}
	if mem.Meta.ID != "peer-node1" || mem.Meta.IDC != "dc1" || mem.Meta.Zone != "b" || mem.Meta.API != "127.0.0.1:1" {
		t.Errorf("meta of node1 = %+v", mem.Meta)
	}
	if mem.Addr != nodes[1].LocalAddr() {
		t.Errorf("addr of node1 = %q, want %q", mem.Addr, nodes[1].LocalAddr())
	}
	wantAttrs := map[string]string{"name": "node1", "idc": "dc1", "zone": "b", "status": "alive", "version": "test", "role": "db", "rack": "1"}
	if got := mem.Attributes(); !maps.Equal(got, wantAttrs) {
		t.Errorf("Attributes() = %v, want %v", got, wantAttrs)
	}
	if byID, ok := m.MemberByPeerID("peer-node3"); !ok || byID.Name != "node3" {
		t.Errorf("MemberByPeerID(peer-node3) = %v, %v", byID.Name, ok)
	}
	if !m.IsAlivePeer("peer-node2") || m.IsAlivePeer("peer-nobody") || m.IsAlivePeer("") {
		t.Error("IsAlivePeer disagrees with the table")
	}
	if local := m.LocalMember(); local.Name != "node4" || local.Status != StatusAlive || local.Labels["role"] != "web" {
		t.Errorf("LocalMember() = %+v", local)
	}
	sel, err := ParseSelector("role=web, zone in (a,b)")
	if err != nil {
		t.Fatal(err)
	}
	var picked []string
	for _, mem := range m.Members() {
		if sel.Matches(mem.Attributes()) {
			picked = append(picked, mem.Name)
		}
	}
	if got := strings.Join(picked, ","); got != "node0,node4" {
		t.Errorf("selector %s picked %s, want node0,node4", sel, got)
	}
	if !m.EncryptionEnabled() {
		t.Error("EncryptionEnabled() = false with a key")
	}
}

func TestFailLeaveAndEvents(t *testing.T) {
	first := startMesh(t, testConfig(t, "node0"))
	events := collect(t, first.Subscribe())
	nodes := []*Mesh{first}
	for i := 1; i < 4; i++ {
		m := startMesh(t, testConfig(t, fmt.Sprintf("node%d", i)))
		if _, err := m.Join([]string{first.LocalAddr()}); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, m)
	}
	waitConverged(t, nodes, 4)
	waitFor(t, 5*time.Second, func() (bool, string) {
		for i := 1; i < 4; i++ {
			if !events.has(EventJoin, fmt.Sprintf("node%d", i)) {
				return false, fmt.Sprintf("no join event for node%d", i)
			}
		}
		return true, ""
	})

	// Label and meta changes are updates.
	if err := nodes[1].SetLabels(map[string]string{"tier": "gold"}); err != nil {
		t.Fatal(err)
	}
	if err := nodes[2].UpdateMeta(func(m *Meta) { m.Roles = []string{"voter"} }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() (bool, string) {
		n1, _ := first.Member("node1")
		n2, _ := first.Member("node2")
		switch {
		case n1.Labels["tier"] != "gold":
			return false, "node1's label not seen"
		case len(n2.Meta.Roles) != 1:
			return false, "node2's role not seen"
		case !events.has(EventUpdate, "node1") || !events.has(EventUpdate, "node2"):
			return false, "missing update events"
		}
		return true, ""
	})

	// A crash is a failure...
	if err := nodes[3].Shutdown(); err != nil {
		t.Fatal(err)
	}
	// ...and a Leave is a departure.
	if err := nodes[2].Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		for _, m := range nodes[:2] {
			n3, _ := m.Member("node3")
			n2, _ := m.Member("node2")
			if n3.Status != StatusFailed || n2.Status != StatusLeft {
				return false, fmt.Sprintf("%s sees node3 %s, node2 %s", m.cfg.Name, n3.Status, n2.Status)
			}
		}
		if !events.has(EventFail, "node3") || !events.has(EventLeave, "node2") {
			return false, "missing fail/leave events"
		}
		return true, ""
	})
	if events.has(EventLeave, "node3") {
		t.Error("a crash was reported as a leave")
	}
	// A leave whose intent arrives after memberlist's dead message is
	// first seen as a failure and then corrected (memberTable.applyState):
	// what counts is that the last word on node2 is a Leave.
	var last EventType
	for _, ev := range events.snapshot() {
		if ev.Member.Name == "node2" && (ev.Type == EventFail || ev.Type == EventLeave) {
			last = ev.Type
		}
	}
	if last != EventLeave {
		t.Errorf("the last failure/leave event about node2 is %v, want a leave", last)
	}
	n3, _ := first.Member("node3")
	if n3.Since.IsZero() || time.Since(n3.Since) > 10*time.Second {
		t.Errorf("node3 Since = %v", n3.Since)
	}
	if first.IsAlivePeer("peer-node3") {
		t.Error("a failed node is still an alive peer")
	}
	if got := len(first.Members()); got != 4 {
		t.Errorf("Members() lists %d, want 4 including failed and left", got)
	}
	// Leave after Shutdown is an error, not memberlist's panic.
	if err := nodes[3].Leave(time.Second); err == nil {
		t.Error("Leave after Shutdown succeeded")
	}
	if err := nodes[3].Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestJoinRejectsMismatches(t *testing.T) {
	tests := []struct {
		name   string
		tweak  func(*Config)
		hint   string
		logged string // warning the seed logs
	}{
		{"wrong key", func(c *Config) { c.SecretKey = otherKey }, "check --encrypt", "check --encrypt"},
		{"plaintext", func(c *Config) { c.SecretKey, c.Dev = nil, true }, "check --encrypt", "check --encrypt"},
		{"other IDC", func(c *Config) { c.IDC = "dc2" }, "--idc", "check --idc"},
		{"other cluster", func(c *Config) { c.ClusterName = "other" }, "--idc", "check --idc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A fresh seed each time: its warning is rate limited per host.
			seed := startMesh(t, testConfig(t, "seed"))
			cfg := testConfig(t, "intruder")
			tc.tweak(cfg)
			m := startMesh(t, cfg)
			n, err := m.Join([]string{seed.LocalAddr()})
			if err == nil || n != 0 {
				t.Fatalf("Join = %d, %v; want a refusal", n, err)
			}
			if !strings.Contains(err.Error(), tc.hint) {
				t.Errorf("error %q does not mention %q", err, tc.hint)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			waitFor(t, 5*time.Second, func() (bool, string) {
				_, ok := recorderOf(seed).find(slog.LevelWarn, tc.logged)
				return ok, "seed logged no warning containing " + tc.logged
			})
			if got := len(seed.Members()); got != 1 {
				t.Errorf("seed lists %d members after a refused join", got)
			}
		})
	}

	t.Run("encrypted into plaintext", func(t *testing.T) {
		dev := testConfig(t, "dev")
		dev.SecretKey, dev.Dev = nil, true
		plain := startMesh(t, dev)
		if plain.EncryptionEnabled() {
			t.Error("EncryptionEnabled() = true without a key")
		}
		m := startMesh(t, testConfig(t, "enc"))
		if _, err := m.Join([]string{plain.LocalAddr()}); err == nil || !strings.Contains(err.Error(), "check --encrypt") {
			t.Errorf("Join = %v, want a key hint", err)
		}
	})

	t.Run("undecryptable packet", func(t *testing.T) {
		// A labelled UDP packet encrypted with another key.
		seed := startMesh(t, testConfig(t, "seed"))
		conn, err := net.Dial("udp", seed.LocalAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		label := seed.cfg.poolLabel()
		pkt := append([]byte{244, byte(len(label))}, label...)
		pkt = append(pkt, 1) // encryption version 1
		pkt = append(pkt, make([]byte, 40)...)
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, func() (bool, string) {
			_, ok := recorderOf(seed).find(slog.LevelWarn, "could not be decrypted", "peer="+conn.LocalAddr().String())
			return ok, "no decrypt warning naming the sender"
		})
	})
}

func TestSetLabelsAndMetaLimits(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	if err := nodes[0].SetLabels(map[string]string{"env": "prod", "team": "infra"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() (bool, string) {
		for _, m := range nodes {
			mem, _ := m.Member("node0")
			if mem.Labels["env"] != "prod" || mem.Labels["team"] != "infra" {
				return false, fmt.Sprintf("%s sees node0 labels %v", m.cfg.Name, mem.Labels)
			}
		}
		return true, ""
	})

	for _, tc := range []struct {
		labels map[string]string
		want   string
	}{
		{map[string]string{"idc": "x"}, "reserved"},
		{map[string]string{"bad key": "x"}, "invalid character"},
		{map[string]string{"k": "a b"}, "invalid character"},
		{bigLabels(20), "labels too large"},
	} {
		if err := nodes[0].SetLabels(tc.labels); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetLabels(%d labels) = %v, want error containing %q", len(tc.labels), err, tc.want)
		}
	}
	if got := nodes[0].LocalMember().Labels["env"]; got != "prod" {
		t.Errorf("a rejected SetLabels changed the labels: env=%q", got)
	}

	err := nodes[1].UpdateMeta(func(m *Meta) { m.API = strings.Repeat("x", 600) })
	if err == nil || !strings.Contains(err.Error(), "512") || !strings.Contains(err.Error(), "bytes") {
		t.Errorf("UpdateMeta(too big) = %v, want an error naming the size and limit", err)
	}
	if err := nodes[1].UpdateMeta(func(m *Meta) { m.IDC = "elsewhere" }); err == nil {
		t.Error("UpdateMeta changed the IDC")
	}
	if err := nodes[1].UpdateMeta(func(m *Meta) { m.API = "127.0.0.1:9999" }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() (bool, string) {
		mem, _ := nodes[2].Member("node1")
		return mem.Meta.API == "127.0.0.1:9999" && mem.Meta.IDC == "dc1", fmt.Sprintf("node2 sees node1 meta %+v", mem.Meta)
	})

	cfg := testConfig(t, "big")
	cfg.Meta.P2P = strings.Repeat("p", 600)
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "512") {
		t.Errorf("New with oversized meta = %v", err)
	}
	cfg = testConfig(t, "biglabels")
	cfg.Labels = bigLabels(20)
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "labels too large") {
		t.Errorf("New with oversized labels = %v", err)
	}
}

func bigLabels(n int) map[string]string {
	l := make(map[string]string, n)
	for i := range n {
		l[fmt.Sprintf("key%02d", i)] = strings.Repeat("v", 60)
	}
	return l
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*Config)
		want  string
	}{
		{"no idc", func(c *Config) { c.IDC = "" }, "IDC is required"},
		{"slash in idc", func(c *Config) { c.IDC = "a/b" }, "invalid character"},
		{"no key", func(c *Config) { c.SecretKey = nil }, "encryption key is required"},
		{"short key", func(c *Config) { c.SecretKey = []byte("short") }, "16, 24 or 32"},
		{"no name", func(c *Config) { c.Name = "" }, "name is required"},
		{"bad label", func(c *Config) { c.Labels = map[string]string{"status": "x"} }, "reserved"},
		{"bad port", func(c *Config) { c.BindPort = 70000 }, "out of range"},
		{"negative interval", func(c *Config) { c.HealthInterval = -time.Second }, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "v")
			tc.tweak(cfg)
			if m, err := New(cfg); err == nil {
				_ = m.Shutdown()
				t.Fatal("New succeeded")
			} else if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
}

func TestShutdownStopsEveryGoroutine(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	// A subscription nobody reads, with events queued in it.
	_ = nodes[0].Subscribe()
	read := nodes[1].Subscribe()
	if err := nodes[2].UserEvent("ping", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() (bool, string) {
		select {
		case ev := <-read.C:
			return ev.Type == EventUser, "no user event"
		default:
			return false, "no event yet"
		}
	})
	for _, m := range nodes {
		if err := m.Shutdown(); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := <-read.C; ok {
		// Drain: C must be closed after Shutdown.
		for range read.C {
		}
	}
	after := nodes[0].Subscribe()
	if _, ok := <-after.C; ok {
		t.Error("Subscribe after Shutdown delivered an event")
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		leaked := meshGoroutines()
		return len(leaked) == 0, fmt.Sprintf("%d goroutines left:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	})
}

// meshGoroutines returns the stacks of goroutines running mesh or
// memberlist code, other than tests.
func meshGoroutines() []string {
	return goroutinesRunning("hashicorp/memberlist", "herd/mesh.")
}

// memberlistGoroutines returns the stacks of goroutines running memberlist
// code.
func memberlistGoroutines() []string { return goroutinesRunning("hashicorp/memberlist") }

func goroutinesRunning(pkgs ...string) []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "testing.tRunner") {
			continue
		}
		for _, p := range pkgs {
			if strings.Contains(g, p) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}
