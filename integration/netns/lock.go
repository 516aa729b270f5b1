package netns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// stateDir holds one lock file per slot. Files are never removed: unlinking
// a flock(2)ed file lets a second process lock a fresh inode under the same
// name while the first still holds the old one.
const stateDir = "/run/herd-netns"

// slotLock is an exclusive flock on one slot file. flock locks belong to the
// open file description, so two fleets in one test binary exclude each
// other exactly like two binaries do (fcntl locks would not), and the kernel
// drops the lock when the owner dies however it dies.
type slotLock struct {
	slot int
	f    *os.File
}

func slotPath(slot int) string { return filepath.Join(stateDir, fmt.Sprintf("slot-%03d.lock", slot)) }

// tryLockSlot takes the slot's lock without waiting. ok is false when
// another fleet holds it.
func tryLockSlot(slot int) (l *slotLock, ok bool, err error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, false, fmt.Errorf("create %s: %w", stateDir, err)
	}
	f, err := os.OpenFile(slotPath(slot), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("open slot lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("flock %s: %w", f.Name(), err)
	}
	return &slotLock{slot: slot, f: f}, true, nil
}

// unlock releases the slot; closing the file drops the flock.
func (l *slotLock) unlock() { l.f.Close() }

// ownerState is what a slot file records about the fleet that leased it, so
// a person (or CleanupStale) can tell whose leftovers these are.
type ownerState struct {
	PID     int       `json:"pid"`
	Start   uint64    `json:"start"` // /proc starttime; guards against pid reuse
	Prefix  string    `json:"prefix"`
	Slot    int       `json:"slot"`
	Group   int       `json:"group"`
	Hosts   int       `json:"hosts"`
	Test    string    `json:"test,omitempty"`
	Created time.Time `json:"created"`
}

// decodeState parses a slot file. Empty means free; garbage is reported,
// never panicked on.
func decodeState(b []byte) (ownerState, bool, error) {
	if len(strings.TrimSpace(string(b))) == 0 {
		return ownerState{}, false, nil
	}
	var st ownerState
	if err := json.Unmarshal(b, &st); err != nil {
		return ownerState{}, false, fmt.Errorf("decode slot state: %w", err)
	}
	return st, true, nil
}

// alive reports whether the recorded owner process still runs. Holding the
// flock is the real proof of ownership; this is the belt to its braces for
// the case where someone deleted and recreated the lock file under a live
// owner.
func (st ownerState) alive() bool {
	if st.PID <= 0 {
		return false
	}
	start, err := procStartTime(st.PID)
	return err == nil && start == st.Start
}

func (l *slotLock) readState() (ownerState, bool, error) {
	b, err := io.ReadAll(io.NewSectionReader(l.f, 0, 1<<20))
	if err != nil {
		return ownerState{}, false, fmt.Errorf("read %s: %w", l.f.Name(), err)
	}
	return decodeState(b)
}

func (l *slotLock) writeState(st *ownerState) error {
	var b []byte
	if st != nil {
		var err error
		if b, err = json.Marshal(st); err != nil {
			return err
		}
	}
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("truncate %s: %w", l.f.Name(), err)
	}
	if _, err := l.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("write %s: %w", l.f.Name(), err)
	}
	return nil
}

// lease is the set of slot locks one fleet holds, first slot first.
type lease struct {
	locks []*slotLock
}

func (ls *lease) release(clearState bool) {
	for _, l := range ls.locks {
		if clearState {
			_ = l.writeState(nil)
		}
		l.unlock()
	}
}

// allocate leases the first free aligned run of slots that fits hosts,
// after removing any leftovers that carry those slots' names. A slot that
// some other tool already routes is skipped.
func allocate(ctx context.Context, l layout, test string) (*lease, layout, error) {
	g, err := groupSize(l.hosts)
	if err != nil {
		return nil, l, err
	}
	l.group = g
	self, err := procStartTime(os.Getpid())
	if err != nil {
		return nil, l, fmt.Errorf("own start time: %w", err)
	}
	var skipped []string
	for k := 0; k+g <= slotCount; k += g {
		ls, ok, err := lockRun(k, g)
		if err != nil {
			return nil, l, err
		}
		if !ok {
			continue
		}
		l.slot = k
		if why, err := prepareRun(ctx, ls, l.subnet()); err != nil || why != "" {
			ls.release(false)
			if err != nil {
				return nil, l, err
			}
			skipped = append(skipped, fmt.Sprintf("%s (%s)", l.subnet(), why))
			continue
		}
		st := ownerState{PID: os.Getpid(), Start: self, Prefix: l.pfx, Slot: k,
			Group: g, Hosts: l.hosts, Test: test, Created: time.Now().UTC()}
		if err := ls.locks[0].writeState(&st); err != nil {
			ls.release(false)
			return nil, l, err
		}
		return ls, l, nil
	}
	if len(skipped) > 5 {
		skipped = append(skipped[:5], fmt.Sprintf("and %d more", len(skipped)-5))
	}
	return nil, l, fmt.Errorf("netns: no free /%d in %s (skipped: %s)",
		l.bits(), fleetRange, strings.Join(skipped, ", "))
}

// lockRun locks slots k..k+g-1 or none of them.
func lockRun(k, g int) (*lease, bool, error) {
	ls := &lease{}
	for s := k; s < k+g; s++ {
		l, ok, err := tryLockSlot(s)
		if err != nil || !ok {
			ls.release(false)
			return nil, false, err
		}
		ls.locks = append(ls.locks, l)
	}
	return ls, true, nil
}

// prepareRun makes freshly locked slots usable: it refuses them if a
// recorded owner still lives, removes whatever objects carry their names,
// and checks that no route on the machine overlaps the subnet. why explains
// a refusal.
func prepareRun(ctx context.Context, ls *lease, subnet netip.Prefix) (why string, err error) {
	slots := map[int]bool{}
	for _, l := range ls.locks {
		st, used, err := l.readState()
		if err == nil && used && st.alive() {
			return fmt.Sprintf("owner pid %d alive without its lock", st.PID), nil
		}
		slots[l.slot] = true
	}
	if err := cleanSlots(ctx, slots); err != nil {
		return "", fmt.Errorf("clear leftovers of %s: %w", subnet, err)
	}
	for _, l := range ls.locks {
		if err := l.writeState(nil); err != nil {
			return "", err
		}
	}
	dsts, err := routeDsts(ctx)
	if err != nil {
		return "", err
	}
	for _, d := range dsts {
		p, err := netip.ParsePrefix(d)
		if err != nil {
			a, aerr := netip.ParseAddr(d)
			if aerr != nil {
				continue // "default" and friends
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Overlaps(subnet) {
			return "route " + d + " exists", nil
		}
	}
	return "", nil
}

// CleanupStale removes fleets left behind by test binaries that died
// without running their cleanups (a timeout panic, SIGKILL, a crash): it
// kills every process in their namespaces and deletes the namespaces,
// veths and bridges. Slots whose lock is held are never touched, so it is
// safe to call while other fleets, in this process or others, are running.
// New calls it first; .ci scripts may call it too.
func CleanupStale(ctx context.Context) error {
	cand := map[int]bool{}
	if ents, err := os.ReadDir(stateDir); err == nil {
		for _, e := range ents {
			var s int
			if _, err := fmt.Sscanf(e.Name(), "slot-%03d.lock", &s); err == nil && s >= 0 && s < slotCount {
				if info, err := e.Info(); err == nil && info.Size() > 0 {
					cand[s] = true
				}
			}
		}
	}
	nss, err := listNetns(ctx)
	if err != nil {
		return err
	}
	for _, n := range nss {
		if _, s, _, ok := parseNSName(n); ok {
			cand[s] = true
		}
	}
	var errs []error
	for _, n := range staleProbes(nss) {
		if _, err := run(ctx, "", "ip", "netns", "del", n); err != nil {
			errs = append(errs, err)
		}
	}
	links, err := listLinks(ctx)
	if err != nil {
		return err
	}
	for _, n := range links {
		if s, _, ok := parseLinkName(n); ok {
			cand[s] = true
		}
	}
	for _, s := range slices.Sorted(maps.Keys(cand)) {
		l, ok, err := tryLockSlot(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue // a live fleet owns it
		}
		st, used, _ := l.readState()
		if used && st.alive() {
			l.unlock()
			continue
		}
		if err := cleanSlots(ctx, map[int]bool{s: true}); err != nil {
			errs = append(errs, fmt.Errorf("slot %d: %w", s, err))
		} else if err := l.writeState(nil); err != nil {
			errs = append(errs, err)
		}
		l.unlock()
	}
	return errors.Join(errs...)
}

// cleanSlots deletes every namespace and root-side link named after one of
// slots, killing the processes inside first. The caller must hold the
// locks of all of them.
//
// Namespaces go first and take their veth pairs with them: the kernel
// destroys a namespace asynchronously and unregisters all its devices in one
// batch, where deleting veths one by one costs an RCU grace period each
// (about 17ms: 4s for 250 hosts against 0.15s). Links still present after a
// short wait (a namespace pinned by something other than a process) are
// then deleted one by one.
func cleanSlots(ctx context.Context, slots map[int]bool) error {
	nss, links, err := findSlots(ctx, slots)
	if err != nil {
		return err
	}
	if len(nss) == 0 && len(links) == 0 {
		return nil
	}
	killCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := killNetnsProcs(killCtx, nss); err != nil {
		return err
	}
	var lines []string
	for _, n := range nss {
		lines = append(lines, "netns del "+n)
	}
	for _, n := range links {
		if _, h, _ := parseLinkName(n); h == 0 {
			lines = append(lines, "link del dev "+n) // the bridge
		}
	}
	batchErr := ipBatch(ctx, true, lines)

	deadline := time.Now().Add(5 * time.Second)
	for {
		if nss, links, err = findSlots(ctx, slots); err != nil {
			return err
		}
		if len(links) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond): // poll interval
		}
	}
	if len(nss) > 0 || len(links) > 0 {
		lines = lines[:0]
		for _, n := range links {
			lines = append(lines, "link del dev "+n)
		}
		for _, n := range nss {
			lines = append(lines, "netns del "+n)
		}
		batchErr = errors.Join(batchErr, ipBatch(ctx, true, lines))
		if nss, links, err = findSlots(ctx, slots); err != nil {
			return err
		}
	}
	if len(nss) > 0 || len(links) > 0 {
		return fmt.Errorf("still present after delete: netns %v, links %v (%v)", nss, links, batchErr)
	}
	return nil
}

// findSlots lists the namespaces and root-side links named after slots.
func findSlots(ctx context.Context, slots map[int]bool) (nss, links []string, err error) {
	all, err := listNetns(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range all {
		if _, s, _, ok := parseNSName(n); ok && slots[s] {
			nss = append(nss, n)
		}
	}
	all, err = listLinks(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range all {
		if s, _, ok := parseLinkName(n); ok && slots[s] {
			links = append(links, n)
		}
	}
	return nss, links, nil
}
