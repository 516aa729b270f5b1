package integration_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herd-io/herd/integration/cluster"
	"github.com/herd-io/herd/node/api"
)

// minorityWrite is the outcome of a write sent to the cut-off leader.
type minorityWrite struct {
	out  string
	err  error
	took time.Duration
}

// Five hosts, one IDC, three voters. The leader's link is cut: writes sent
// to it fail with a clear 503 within ApplyTimeout and are never applied,
// while the four others elect a new leader and go on. Once the link is back
// the old leader catches up.
func TestControlPartitionMinorityLeader(t *testing.T) {
	f := startFleet(t, fleetOptions{hosts: 5, idcs: 1, controlSize: 3})
	ctx := ctxTimeout(t, 180*time.Second)
	if err := f.waitConverged(ctx, nil); err != nil {
		t.Fatalf("%v\nlog of h1:\n%s", err, f.logs(0))
	}
	st, err := waitStatus(ctx, f.client(0), formed(3), func(st *api.ControlStatus) error {
		if st.ControlSize != 3 {
			return fmt.Errorf("control size %d, want 3", st.ControlSize)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	oldLeader := st.Leader
	li := -1
	for i, h := range f.hosts.Hosts {
		if h.Name == oldLeader {
			li = i
		}
	}
	if li < 0 {
		t.Fatalf("leader %q is none of the hosts", oldLeader)
	}
	if !slices.Contains(voterNames(st), oldLeader) {
		t.Fatalf("leader %s is not among the voters %v", oldLeader, voterNames(st))
	}
	// Two hosts of the majority: a voter and a node outside the group.
	vi, pi := -1, -1
	for i, h := range f.hosts.Hosts {
		switch {
		case i == li:
		case slices.Contains(voterNames(st), h.Name):
			vi = i
		case !slices.Contains(serverNames(st), h.Name):
			pi = i
		}
	}
	if vi < 0 || pi < 0 {
		t.Fatalf("want a voter and a plain node besides leader %s; servers %v", oldLeader, st.Servers)
	}
	majority := f.client(vi)
	if _, err := majority.KVPut(ctx, "part/before", []byte("1"), "", nil); err != nil {
		t.Fatal(err)
	}

	leaderHost := f.hosts.Hosts[li]
	if err := leaderHost.CutLink(); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	restored := false
	t.Cleanup(func() {
		if !restored {
			_ = leaderHost.RestoreLink()
		}
	})

	// The test process cannot reach the cut-off host any more; the CLI
	// runs inside its network namespace instead.
	bin := cluster.Binary(t)
	minority := make(chan minorityWrite, 1)
	go func() {
		start := time.Now()
		out, err := leaderHost.Exec(ctx, bin,
			"--node", net.JoinHostPort(leaderHost.IP, "7600"), "--token", f.token, "--timeout", "60s",
			"kv", "put", "part/minority", "lost")
		minority <- minorityWrite{out: string(out), err: err, took: time.Since(start)}
	}()

	// From the moment of the cut, the majority side writes through the
	// voter and through the plain node until each write is acknowledged.
	type firstWrite struct {
		entry    *api.KVEntry
		after    time.Duration
		failures []string
	}
	writes := make([]chan firstWrite, 2)
	for j, i := range []int{vi, pi} {
		writes[j] = make(chan firstWrite, 1)
		cl := f.client(i)
		go func() {
			var fw firstWrite
			for ctx.Err() == nil {
				start := time.Now()
				rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				e, err := cl.KVPut(rctx, fmt.Sprintf("part/majority/%s", f.hosts.Hosts[i].Name), []byte("kept"), "", nil)
				cancel()
				if err == nil {
					fw.entry, fw.after = e, time.Since(cut)
					break
				}
				fw.failures = append(fw.failures, fmt.Sprintf("after %s: %v", time.Since(start).Round(10*time.Millisecond), err))
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
			writes[j] <- fw
		}()
	}
	var majorityEntry *api.KVEntry
	for j, i := range []int{vi, pi} {
		fw := <-writes[j]
		if fw.entry == nil {
			t.Fatalf("no write through %s was acknowledged: %v", f.hosts.Hosts[i].Name, fw.failures)
		}
		role := "voter"
		if i == pi {
			role = "plain node"
		}
		t.Logf("failover: first write through %s %s acknowledged %s after the cut; failed attempts: %v",
			role, f.hosts.Hosts[i].Name, fw.after.Round(10*time.Millisecond), fw.failures)
		majorityEntry = fw.entry
	}
	st, err = waitStatus(ctx, majority, formed(3), func(st *api.ControlStatus) error {
		if st.Leader == oldLeader {
			return fmt.Errorf("%s, cut off, is still the leader", oldLeader)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("majority: %s leads, term %d", st.Leader, st.Term)

	var mw minorityWrite
	select {
	case mw = <-minority:
	case <-ctx.Done():
		t.Fatal("the write sent to the cut-off leader never returned")
	}
	t.Logf("minority write failed after %s: %s", mw.took.Round(10*time.Millisecond), strings.TrimSpace(mw.out))
	if mw.err == nil {
		t.Fatalf("the cut-off leader acknowledged a write:\n%s", mw.out)
	}
	if !strings.Contains(mw.out, "unavailable, HTTP 503") {
		t.Fatalf("write to the cut-off leader: want an unavailable 503, got %v:\n%s", mw.err, mw.out)
	}
	if msg := strings.ToLower(mw.out); !strings.Contains(msg, "quorum") && !strings.Contains(msg, "leader") &&
		!strings.Contains(msg, "commit") && !strings.Contains(msg, "majority") {
		t.Fatalf("the 503 does not say why (quorum, leader, commit):\n%s", mw.out)
	}
	if mw.took > 15*time.Second {
		t.Fatalf("the write to the cut-off leader took %s to fail, want at most 15s", mw.took)
	}

	if err := leaderHost.RestoreLink(); err != nil {
		t.Fatal(err)
	}
	restored = true
	healed := time.Now()
	old := f.client(li)
	if err := cluster.WaitFor(ctx, 200*time.Millisecond, func() error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		e, err := old.KVGet(rctx, majorityEntry.Key, api.KVQuery{Stale: true})
		if err != nil {
			return fmt.Errorf("stale read on %s: %w", oldLeader, err)
		}
		if string(e.Value) != "kept" || e.ModifyIndex != majorityEntry.ModifyIndex {
			return fmt.Errorf("stale read on %s: %+v, want %+v", oldLeader, e, majorityEntry)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v\nlog of %s:\n%s", err, oldLeader, tailLines(f.logs(li), 30))
	}
	t.Logf("%s caught up %s after the link came back", oldLeader, time.Since(healed).Round(10*time.Millisecond))
	st, err = waitStatus(ctx, majority, formed(3))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(serverNames(st), oldLeader) {
		t.Logf("%s was removed from the configuration meanwhile: servers %v", oldLeader, serverNames(st))
	}
	// The write the cut-off leader refused was never applied.
	_, err = majority.KVGet(ctx, "part/minority", api.KVQuery{Consistent: true})
	var re *api.RequestError
	if !errors.As(err, &re) || re.Err.Code != api.CodeNotFound {
		t.Fatalf("the write refused by the cut-off leader: want not_found, got %v", err)
	}
}
