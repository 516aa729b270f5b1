package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// netnsDir is where `ip netns add` bind-mounts named namespaces.
const netnsDir = "/run/netns"

// run executes a short-lived tool and returns its combined output. The error
// carries the output because iproute2 explains itself only on stderr.
func run(ctx context.Context, stdin string, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	// Nothing should outlive the call, and a child that keeps the output
	// pipe open must not hang us.
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// query runs an iproute2 listing and returns its stdout alone. Listings
// print warnings on stderr about objects that vanish mid-dump (another
// fleet tearing down), which must not end up in the JSON.
func query(ctx context.Context, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// ipBatch feeds lines to one `ip -b -` so building a fleet costs a handful
// of execs instead of several per host. With force, ip carries on past
// failing lines (teardown wants everything attempted) and still exits
// non-zero if any failed.
func ipBatch(ctx context.Context, force bool, lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	argv := []string{"ip"}
	if force {
		argv = append(argv, "-force")
	}
	argv = append(argv, "-b", "-")
	_, err := run(ctx, strings.Join(lines, "\n")+"\n", argv...)
	return err
}

// listNetns returns the names of all named network namespaces. It reads
// /run/netns, as `ip netns list` does, without the per-namespace id
// queries that make that command print errors about namespaces being
// deleted at the same moment.
func listNetns(context.Context) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", netnsDir, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}

// listLinks returns the names of all links in the calling namespace.
func listLinks(ctx context.Context) ([]string, error) {
	out, err := query(ctx, "ip", "-j", "link", "show")
	if err != nil {
		return nil, err
	}
	var list []struct {
		Name string `json:"ifname"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("parse ip link show: %w", err)
	}
	names := make([]string, 0, len(list))
	for _, e := range list {
		names = append(names, e.Name)
	}
	return names, nil
}

// routeDsts returns every IPv4 route destination in every table, so
// allocation can refuse a slot that something else on the machine already
// routes.
func routeDsts(ctx context.Context) ([]string, error) {
	out, err := query(ctx, "ip", "-j", "-4", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	var list []struct {
		Dst string `json:"dst"`
	}
	if len(bytes.TrimSpace(out)) > 0 {
		if err := json.Unmarshal(out, &list); err != nil {
			return nil, fmt.Errorf("parse ip route show: %w", err)
		}
	}
	dsts := make([]string, 0, len(list))
	for _, e := range list {
		dsts = append(dsts, e.Dst)
	}
	return dsts, nil
}

// setSysctl writes a /proc/sys value of the calling network namespace. A
// missing file (IPv6 compiled out or disabled at boot) is not an error:
// there is nothing to turn off then.
func setSysctl(path, value string) error {
	err := os.WriteFile(filepath.Join("/proc/sys", path), []byte(value), 0)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sysctl %s=%s: %w", path, value, err)
	}
	return nil
}

// nsPIDs returns the pids of every process whose network namespace is one
// of the named ones. It compares namespace inodes under /proc instead of
// running `ip netns pids` once per namespace; processes that exit during
// the scan simply drop out.
func nsPIDs(names []string) ([]int, error) {
	type key struct{ dev, ino uint64 }
	want := make(map[key]bool, len(names))
	for _, n := range names {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(netnsDir, n), &st); err != nil {
			continue // already gone
		}
		want[key{st.Dev, st.Ino}] = true
	}
	if len(want) == 0 {
		return nil, nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("scan /proc: %w", err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat("/proc/"+e.Name()+"/ns/net", &st); err != nil {
			continue // exited, or a zombie (which no longer pins the namespace)
		}
		if want[key{st.Dev, st.Ino}] {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killNetnsProcs SIGKILLs every process inside the named namespaces until
// none is left. A surviving process would keep the namespace, and with it
// the host-side veth, alive after `ip netns del` removed its name.
func killNetnsProcs(ctx context.Context, names []string) error {
	for {
		pids, err := nsPIDs(names)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("processes %v survive SIGKILL in %v: %w", pids, names, ctx.Err())
		case <-time.After(20 * time.Millisecond): // poll interval, not synchronisation
		}
	}
}

// procStartTime returns field 22 (starttime) of /proc/PID/stat, which with
// the pid identifies a process across pid reuse.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStartTime(string(b))
}

// parseStartTime extracts starttime from a /proc/PID/stat line. The comm
// field may contain spaces and parentheses, so fields are counted after the
// last ')'. It never panics.
func parseStartTime(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("proc stat: no comm field")
	}
	// After ')' come fields 3 (state) onwards; starttime is field 22.
	f := strings.Fields(stat[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("proc stat: %d fields after comm, want >= 20", len(f))
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat starttime: %w", err)
	}
	return v, nil
}
