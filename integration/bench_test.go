package integration_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkFailureDetectionNetns kills one of 20 netns hosts (default LAN
// gossip timings, the agent as shipped) and measures the time until every
// other host of its IDC marks it failed. A live host seen failed is a false
// positive and fails the benchmark.
func BenchmarkFailureDetectionNetns(b *testing.B) {
	f := startFleet(b, fleetOptions{hosts: 20, idcs: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dead := map[int]bool{}
	if err := f.waitConverged(ctx, dead); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var total, worst time.Duration
	kills := 0
	for i := 0; i < b.N && len(dead) < 10; i++ {
		victim := 19 - i
		d, fps, err := f.detectFailure(ctx, victim, dead)
		if err != nil {
			b.Fatal(err)
		}
		if len(fps) > 0 {
			b.Fatalf("false positives: %v", fps)
		}
		dead[victim] = true
		total, worst, kills = total+d, max(worst, d), kills+1
	}
	b.ReportMetric(total.Seconds()/float64(kills), "s/detect-mean")
	b.ReportMetric(worst.Seconds(), "s/detect-max")
}

// BenchmarkIdleAgent samples an idle agent process (in a 3-node dev mesh)
// over HERD_IDLE_SECONDS (default 60): resident memory and CPU share.
func BenchmarkIdleAgent(b *testing.B) {
	secs := 60
	if s := os.Getenv("HERD_IDLE_SECONDS"); s != "" {
		secs, _ = strconv.Atoi(s)
	}
	for i := 0; i < b.N; i++ {
		c := startDev(b, 3, 1)
		pid := c.Nodes[1].PID
		cpu0, err := procCPU(pid)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		var maxRSS uint64
		deadline := time.NewTimer(time.Duration(secs) * time.Second)
		tick := time.NewTicker(time.Second)
	sample:
		for {
			select {
			case <-deadline.C:
				break sample
			case <-tick.C:
				if rss, err := procRSS(pid); err == nil && rss > maxRSS {
					maxRSS = rss
				}
			}
		}
		tick.Stop()
		cpu1, err := procCPU(pid)
		if err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		b.ReportMetric(float64(maxRSS)/(1<<20), "MB-rss-max")
		b.ReportMetric(100*(cpu1-cpu0).Seconds()/elapsed.Seconds(), "%cpu")
	}
}

// procRSS reads VmRSS of pid in bytes.
func procRSS(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// procCPU reads utime+stime of pid.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the ")" that closes the command name; utime and stime
	// are fields 14 and 15 of the whole line.
	rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck, nil
}
