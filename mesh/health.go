package mesh

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Health is a node's resource snapshot, gossiped in its node state every
// Config.HealthInterval. Values a host cannot provide (no /proc) stay zero.
type Health struct {
	Load1        float64        `json:"load1"`
	Load5        float64        `json:"load5"`
	Load15       float64        `json:"load15"`
	CPUPercent   float64        `json:"cpu_percent"` // host CPU busy % since the previous sample
	MemTotal     uint64         `json:"mem_total"`   // bytes
	MemAvailable uint64         `json:"mem_available"`
	DiskTotal    uint64         `json:"disk_total"` // filesystem of the data dir, bytes
	DiskFree     uint64         `json:"disk_free"`  // bytes available to unprivileged users
	HostUptime   time.Duration  `json:"host_uptime"`
	AgentUptime  time.Duration  `json:"agent_uptime"`
	Version      string         `json:"version,omitempty"`
	Services     []ServiceState `json:"services,omitempty"` // declared services; empty for now
	Collected    time.Time      `json:"collected"`
}

// ServiceState is the state of one declared service on a node.
type ServiceState struct {
	Name  string `json:"name"`
	State string `json:"state"`
}

// healthCollector samples the host. It is not safe for concurrent use: the
// health loop owns it (New uses it before the loop starts).
type healthCollector struct {
	procDir string // "/proc"; tests point it at fixtures
	dataDir string
	version string
	started time.Time

	// Previous /proc/stat counters, for CPU% as a delta between samples.
	prevBusy, prevTotal uint64
	havePrev            bool
}

func newHealthCollector(dataDir, version string, started time.Time) *healthCollector {
	if dataDir == "" {
		dataDir = "/"
	}
	return &healthCollector{procDir: "/proc", dataDir: dataDir, version: version, started: started}
}

// collect takes a sample. It returns every value it could read, and an
// error joining the failures (a host without /proc fails every time, so
// callers log at debug level).
func (c *healthCollector) collect(now time.Time) (Health, error) {
	h := Health{
		AgentUptime: now.Sub(c.started).Round(time.Second),
		Version:     c.version,
		Collected:   now.UTC().Round(time.Millisecond),
	}
	var errs []error
	if s, err := c.read("loadavg"); err != nil {
		errs = append(errs, err)
	} else if h.Load1, h.Load5, h.Load15, err = parseLoadavg(s); err != nil {
		errs = append(errs, err)
	}
	if s, err := c.read("stat"); err != nil {
		errs = append(errs, err)
	} else if busy, total, err := parseCPUStat(s); err != nil {
		errs = append(errs, err)
	} else {
		h.CPUPercent = c.cpuPercent(busy, total)
	}
	if s, err := c.read("meminfo"); err != nil {
		errs = append(errs, err)
	} else if h.MemTotal, h.MemAvailable, err = parseMeminfo(s); err != nil {
		errs = append(errs, err)
	}
	if s, err := c.read("uptime"); err != nil {
		errs = append(errs, err)
	} else if h.HostUptime, err = parseUptime(s); err != nil {
		errs = append(errs, err)
	}
	if total, free, err := diskUsage(c.dataDir); err != nil {
		errs = append(errs, fmt.Errorf("disk usage of %s: %w", c.dataDir, err))
	} else {
		h.DiskTotal, h.DiskFree = total, free
	}
	return h, errors.Join(errs...)
}

func (c *healthCollector) read(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(c.procDir, name))
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// cpuPercent turns cumulative counters into the busy share since the
// previous sample; the first sample has nothing to compare with and is 0.
func (c *healthCollector) cpuPercent(busy, total uint64) float64 {
	prevBusy, prevTotal, had := c.prevBusy, c.prevTotal, c.havePrev
	c.prevBusy, c.prevTotal, c.havePrev = busy, total, true
	if !had || total <= prevTotal || busy < prevBusy {
		return 0
	}
	pct := float64(busy-prevBusy) / float64(total-prevTotal) * 100
	// Two decimals is all anyone reads, and it keeps the gossip small.
	return float64(int64(pct*100+0.5)) / 100
}

// parseLoadavg parses /proc/loadavg: "0.52 0.58 0.59 1/467 12345".
func parseLoadavg(s string) (l1, l5, l15 float64, err error) {
	f := strings.Fields(s)
	if len(f) < 3 {
		return 0, 0, 0, fmt.Errorf("/proc/loadavg: want 3 load fields, got %q", s)
	}
	var out [3]float64
	for i := range out {
		if out[i], err = strconv.ParseFloat(f[i], 64); err != nil || out[i] < 0 || out[i] != out[i] {
			return 0, 0, 0, fmt.Errorf("/proc/loadavg: bad load %q", f[i])
		}
	}
	return out[0], out[1], out[2], nil
}

// parseCPUStat reads the aggregate "cpu" line of /proc/stat and returns the
// busy and total jiffies. Idle time is idle+iowait; guest time is already
// counted in user/nice, so it is left out of the total.
func parseCPUStat(s string) (busy, total uint64, err error) {
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 5 {
			return 0, 0, fmt.Errorf("/proc/stat: short cpu line %q", strings.TrimSpace(line))
		}
		var v [8]uint64 // user nice system idle iowait irq softirq steal
		for i := 0; i < len(v) && i+1 < len(f); i++ {
			if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
				return 0, 0, fmt.Errorf("/proc/stat: bad counter %q", f[i+1])
			}
		}
		for _, x := range v {
			total += x
		}
		idle := v[3] + v[4]
		return total - idle, total, nil
	}
	return 0, 0, errors.New("/proc/stat: no cpu line")
}

// parseMeminfo returns MemTotal and MemAvailable in bytes.
func parseMeminfo(s string) (total, avail uint64, err error) {
	var haveTotal, haveAvail bool
	for line := range strings.Lines(s) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || (name != "MemTotal" && name != "MemAvailable") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, 0, fmt.Errorf("/proc/meminfo: empty %s", name)
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/meminfo: bad %s %q", name, f[0])
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		if name == "MemTotal" {
			total, haveTotal = v, true
		} else {
			avail, haveAvail = v, true
		}
	}
	if !haveTotal || !haveAvail {
		return 0, 0, errors.New("/proc/meminfo: MemTotal or MemAvailable missing")
	}
	return total, avail, nil
}

// parseUptime parses /proc/uptime: "350735.47 234388.90".
func parseUptime(s string) (time.Duration, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, errors.New("/proc/uptime: empty")
	}
	sec, err := strconv.ParseFloat(f[0], 64)
	if err != nil || sec < 0 || sec > 1e9 {
		return 0, fmt.Errorf("/proc/uptime: bad uptime %q", f[0])
	}
	return time.Duration(sec * float64(time.Second)).Round(time.Second), nil
}

// healthLoop samples health and gossips our node state every
// HealthInterval, and forgets long-gone members. Shutdown stops it.
func (m *Mesh) healthLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-t.C:
			h, err := m.health.collect(now)
			if err != nil {
				m.log.Debug("health sample incomplete", "err", err)
			}
			m.publishLocal(func(st *nodeStateMsg) { st.Health = h }, nil)
			m.table.prune(m.cfg.TombstoneTimeout)
		}
	}
}
