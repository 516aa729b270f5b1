package netns

import (
	"slices"
	"strings"
	"testing"
)

func TestLayout(t *testing.T) {
	tests := []struct {
		slot, hosts      int
		subnet, gw       string
		first, last      string
		bridge, veth, ns string
	}{
		{0, 1, "198.18.0.0/24", "198.18.0.1", "198.18.0.11", "198.18.0.11", "hnbr0", "hn0h1", "herd-s0-h1"},
		{7, 244, "198.18.7.0/24", "198.18.7.1", "198.18.7.11", "198.18.7.254", "hnbr7", "hn7h244", "herd-s7-h244"},
		{8, 245, "198.18.8.0/23", "198.18.8.1", "198.18.8.11", "198.18.8.255", "hnbr8", "hn8h245", "herd-s8-h245"},
		{300, 20, "198.19.44.0/24", "198.19.44.1", "198.19.44.11", "198.19.44.30", "hnbr300", "hn300h20", "herd-s300-h20"},
		{508, 1012, "198.19.252.0/22", "198.19.252.1", "198.19.252.11", "198.19.255.254", "hnbr508", "hn508h1012", "herd-s508-h1012"},
		{496, MaxHosts, "198.19.240.0/20", "198.19.240.1", "198.19.240.11", "198.19.255.254", "hnbr496", "hn496h4084", "herd-s496-h4084"},
	}
	for _, tc := range tests {
		t.Run(tc.subnet, func(t *testing.T) {
			g, err := groupSize(tc.hosts)
			if err != nil {
				t.Fatal(err)
			}
			l := layout{slot: tc.slot, group: g, hosts: tc.hosts, pfx: "herd"}
			got := []string{l.subnet().String(), l.gateway().String(), l.hostAddr(1).String(),
				l.hostAddr(tc.hosts).String(), l.bridge(), l.veth(tc.hosts), l.ns(tc.hosts)}
			want := []string{tc.subnet, tc.gw, tc.first, tc.last, tc.bridge, tc.veth, tc.ns}
			if !slices.Equal(got, want) {
				t.Errorf("got %v\nwant %v", got, want)
			}
			sub := l.subnet()
			if !fleetRange.Contains(sub.Addr()) || !fleetRange.Contains(l.nth(1<<(32-sub.Bits())-1)) {
				t.Errorf("subnet %s leaves %s", sub, fleetRange)
			}
			bcast := l.nth(1<<(32-sub.Bits()) - 1)
			for n := 1; n <= tc.hosts; n++ {
				a := l.hostAddr(n)
				if !sub.Contains(a) || a == bcast || a == l.gateway() {
					t.Fatalf("host %d address %s unusable in %s", n, a, sub)
				}
			}
			if len(l.veth(tc.hosts)) > 15 || len(l.bridge()) > 15 {
				t.Errorf("interface name too long: %s %s", l.veth(tc.hosts), l.bridge())
			}
		})
	}
	if _, err := groupSize(MaxHosts + 1); err == nil {
		t.Errorf("groupSize(%d) accepted", MaxHosts+1)
	}
}

func TestParseNames(t *testing.T) {
	links := []struct {
		name       string
		slot, host int
		ok         bool
	}{
		{"hnbr0", 0, 0, true},
		{"hnbr511", 511, 0, true},
		{"hn5h12", 5, 12, true},
		{"hnbr512", 0, 0, false},
		{"hnbr", 0, 0, false},
		{"hnbr05", 0, 0, false},
		{"hn5h0", 0, 0, false},
		{"hn5h", 0, 0, false},
		{"hn05h1", 0, 0, false},
		{"hn-1h1", 0, 0, false},
		{"eth0", 0, 0, false},
		{"hn5h1x", 0, 0, false},
	}
	for _, tc := range links {
		s, h, ok := parseLinkName(tc.name)
		if ok != tc.ok || (ok && (s != tc.slot || h != tc.host)) {
			t.Errorf("parseLinkName(%q) = %d, %d, %v; want %d, %d, %v", tc.name, s, h, ok, tc.slot, tc.host, tc.ok)
		}
	}
	nss := []struct {
		name       string
		pfx        string
		slot, host int
		ok         bool
	}{
		{"herd-s0-h1", "herd", 0, 1, true},
		{"crash2-s511-h4084", "crash2", 511, 4084, true},
		{"herd-s512-h1", "", 0, 0, false},
		{"herd-s5-h01", "", 0, 0, false},
		{"herd-s5-h0", "", 0, 0, false},
		{"Herd-s5-h1", "", 0, 0, false},
		{"x-y-s3-h1", "", 0, 0, false},
		{"-s3-h1", "", 0, 0, false},
		{"herdprobe123", "", 0, 0, false},
		{"herd-h1", "", 0, 0, false},
	}
	for _, tc := range nss {
		p, s, h, ok := parseNSName(tc.name)
		if ok != tc.ok || (ok && (p != tc.pfx || s != tc.slot || h != tc.host)) {
			t.Errorf("parseNSName(%q) = %q, %d, %d, %v; want %q, %d, %d, %v", tc.name, p, s, h, ok, tc.pfx, tc.slot, tc.host, tc.ok)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{DefaultConfig(), true},
		{Config{Hosts: MaxHosts}, true},
		{Config{Hosts: MaxHosts + 1}, false},
		{Config{Hosts: -1}, false},
		{Config{RateMbit: -5}, false},
		{Config{Prefix: "a-b"}, false},
		{Config{Prefix: "Herd"}, false},
		{Config{Prefix: "abcdefghijklmnopq"}, false},
	}
	for _, tc := range tests {
		err := tc.cfg.withDefaults().validate()
		if (err == nil) != tc.ok {
			t.Errorf("validate(%+v) = %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
}

func TestTBFArgs(t *testing.T) {
	tests := []struct {
		mbit int
		want string
	}{
		{1, "tbf rate 1mbit burst 32768 latency 50ms"},
		{10, "tbf rate 10mbit burst 32768 latency 50ms"},
		{1000, "tbf rate 1000mbit burst 1250000 latency 50ms"},
	}
	for _, tc := range tests {
		if got := strings.Join(tbfArgs(tc.mbit), " "); got != tc.want {
			t.Errorf("tbfArgs(%d) = %q, want %q", tc.mbit, got, tc.want)
		}
	}
}

func TestParseStartTime(t *testing.T) {
	// comm with spaces and a ')' must not shift the fields.
	stat := "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10"
	got, err := parseStartTime(stat)
	if err != nil || got != 987654 {
		t.Errorf("parseStartTime = %d, %v; want 987654", got, err)
	}
	if _, err := parseStartTime("42 (x) S 1"); err == nil {
		t.Error("short stat accepted")
	}
}

func FuzzParseNSName(f *testing.F) {
	for _, s := range []string{"herd-s0-h1", "a-s511-h9", "x-y-s3-h1", "-s-h", "herd-s5-h01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		pfx, s, h, ok := parseNSName(name)
		if ok && nsName(pfx, s, h) != name {
			t.Errorf("%q parsed to %q %d %d which prints as %q", name, pfx, s, h, nsName(pfx, s, h))
		}
	})
}

func FuzzParseLinkName(f *testing.F) {
	for _, s := range []string{"hnbr0", "hn5h12", "hnbr", "hn05h1", "hnhh"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		s, h, ok := parseLinkName(name)
		if !ok {
			return
		}
		again := vethName(s, h)
		if h == 0 {
			again = bridgeName(s)
		}
		if again != name {
			t.Errorf("%q parsed to %d %d which prints as %q", name, s, h, again)
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"pid":1,"start":2,"prefix":"herd","slot":3,"group":1,"hosts":4,"created":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(""))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = decodeState(b)
	})
}

func FuzzParseStartTime(f *testing.F) {
	f.Add("42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10")
	f.Add(")")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseStartTime(s)
	})
}
