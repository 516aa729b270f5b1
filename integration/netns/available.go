package netns

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// tools are the binaries the package runs. mount and sh do the /srv bind
// inside each host's mount namespace.
var tools = []string{"ip", "tc", "unshare", "nsenter", "mount", "sh"}

// Available reports whether this process can build fleets, and if not, why
// (for t.Skip). It needs root, the tools above in PATH, and a kernel and
// sandbox that let it create a network namespace, which it proves by
// creating and deleting a throw-away one. The answer is computed once per
// process.
func Available() (ok bool, reason string) {
	r := availability()
	return r == "", r
}

var availability = sync.OnceValue(probe)

func probe() string {
	if os.Geteuid() != 0 {
		return fmt.Sprintf("needs root (euid %d)", os.Geteuid())
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Sprintf("%s not in PATH", t)
		}
	}
	// The first `ip netns add` on a machine makes /run/netns a shared mount;
	// two binaries doing that at once can trip over each other, so the
	// probe, which is always first in a process, runs under a machine-wide
	// lock.
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Sprintf("create %s: %v", stateDir, err)
	}
	f, err := os.OpenFile(filepath.Join(stateDir, "probe.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Sprintf("open probe lock: %v", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Sprintf("flock probe lock: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The name does not match the fleet pattern, so CleanupStale never
	// mistakes a probe for a fleet.
	name := probeName(os.Getpid())
	if _, err := run(ctx, "", "ip", "netns", "add", name); err != nil {
		return fmt.Sprintf("cannot create a network namespace: %v", err)
	}
	if _, err := run(ctx, "", "ip", "netns", "del", name); err != nil {
		return fmt.Sprintf("cannot delete probe namespace %s: %v", name, err)
	}
	return ""
}

func probeName(pid int) string { return fmt.Sprintf("herdprobe%d", pid) }

// staleProbes returns probe namespaces whose creator no longer runs: it was
// killed between creating and deleting its probe.
func staleProbes(names []string) []string {
	var stale []string
	for _, n := range names {
		var pid int
		if _, err := fmt.Sscanf(n, "herdprobe%d", &pid); err != nil || probeName(pid) != n {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			stale = append(stale, n)
		}
	}
	return stale
}
