package mesh

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseProcFiles(t *testing.T) {
	l1, l5, l15, err := parseLoadavg("0.52 1.58 12.00 1/467 12345\n")
	if err != nil || l1 != 0.52 || l5 != 1.58 || l15 != 12 {
		t.Errorf("parseLoadavg = %v %v %v %v", l1, l5, l15, err)
	}
	for _, bad := range []string{"", "1 2", "a b c", "-1 0 0", "NaN 0 0"} {
		if _, _, _, err := parseLoadavg(bad); err == nil {
			t.Errorf("parseLoadavg(%q) accepted", bad)
		}
	}

	stat := "cpu  100 10 50 800 40 0 0 0 5 0\ncpu0 50 5 25 400 20 0 0 0 0 0\nintr 1\n"
	busy, total, err := parseCPUStat(stat)
	if err != nil || total != 1000 || busy != 160 {
		t.Errorf("parseCPUStat = %d %d %v, want busy 160 of 1000 (guest excluded, iowait idle)", busy, total, err)
	}
	if _, _, err := parseCPUStat("cpu0 1 2 3 4\n"); err == nil {
		t.Error("parseCPUStat without an aggregate line accepted")
	}
	if _, _, err := parseCPUStat("cpu 1 x 3 4\n"); err == nil {
		t.Error("parseCPUStat with a bad counter accepted")
	}
	if b, tot, err := parseCPUStat("cpu 1 2 3 4\n"); err != nil || tot != 10 || b != 6 {
		t.Errorf("old kernels with 4 counters: %d %d %v", b, tot, err)
	}

	mem := "MemTotal:       16384 kB\nMemFree:  100 kB\nMemAvailable:   8192 kB\n"
	mt, ma, err := parseMeminfo(mem)
	if err != nil || mt != 16384*1024 || ma != 8192*1024 {
		t.Errorf("parseMeminfo = %d %d %v", mt, ma, err)
	}
	if _, _, err := parseMeminfo("MemTotal: 1 kB\n"); err == nil {
		t.Error("parseMeminfo without MemAvailable accepted")
	}

	up, err := parseUptime("350735.47 234388.90\n")
	if err != nil || up != 350735*time.Second {
		t.Errorf("parseUptime = %v %v", up, err)
	}
	if _, err := parseUptime("x"); err == nil {
		t.Error("parseUptime(x) accepted")
	}
}

func TestHealthCollector(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("loadavg", "1.00 2.00 3.00 1/1 1\n")
	write("stat", "cpu 100 0 100 800 0 0 0 0\n")
	write("meminfo", "MemTotal: 4 kB\nMemAvailable: 2 kB\n")
	write("uptime", "60.00 1.00\n")
	start := time.Unix(1000, 0)
	c := newHealthCollector(dir, "v1", start)
	c.procDir = dir
	h, err := c.collect(start.Add(90 * time.Second))
	if runtime.GOOS == "linux" && err != nil {
		t.Fatal(err)
	}
	if h.Load15 != 3 || h.MemTotal != 4096 || h.HostUptime != time.Minute || h.AgentUptime != 90*time.Second || h.Version != "v1" || h.CPUPercent != 0 {
		t.Errorf("first sample = %+v", h)
	}
	if runtime.GOOS == "linux" && (h.DiskTotal == 0 || h.DiskFree > h.DiskTotal) {
		t.Errorf("disk = %d free of %d", h.DiskFree, h.DiskTotal)
	}
	// 300 more busy jiffies out of 400: 75%.
	write("stat", "cpu 250 0 250 900 0 0 0 0\n")
	h, _ = c.collect(start.Add(95 * time.Second))
	if h.CPUPercent != 75 {
		t.Errorf("CPUPercent = %v, want 75", h.CPUPercent)
	}
	if len(h.Services) != 0 {
		t.Error("services are not collected yet")
	}

	c.procDir = filepath.Join(dir, "missing")
	h, err = c.collect(start)
	if err == nil || !strings.Contains(err.Error(), "loadavg") || h.Version != "v1" {
		t.Errorf("collect without /proc: %+v, %v", h, err)
	}
}
