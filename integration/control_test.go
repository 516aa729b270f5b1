package integration_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herd-io/herd/integration/cluster"
	"github.com/herd-io/herd/node/api"
)

// waitControl waits until node i reports a formed control group of idc with
// a leader and want voters.
func waitControl(ctx context.Context, t testing.TB, c *cluster.Cluster, i int, idc string, want int) *api.ControlStatus {
	t.Helper()
	var st *api.ControlStatus
	err := cluster.WaitFor(ctx, 100*time.Millisecond, func() error {
		var err error
		st, err = c.Client(i).ControlStatus(ctx, idc)
		if err != nil {
			return err
		}
		voters := 0
		for _, s := range st.Servers {
			if s.Suffrage == "voter" {
				voters++
			}
		}
		if st.Leader == "" || voters != want || st.Waiting != "" {
			return fmt.Errorf("IDC %s: leader %q, %d voters (want %d), waiting %q", st.IDC, st.Leader, voters, want, st.Waiting)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var re *api.RequestError
	if !errors.As(err, &re) || re.Err.Code != code {
		t.Fatalf("want error code %s, got %v", code, err)
	}
}

// A control group forms by itself in one IDC; any node, member or not,
// reads and writes the KV with compare-and-set; bad input gets clear errors.
func TestControlGroupKV(t *testing.T) {
	c := cluster.New(t, 4, cluster.Options{ControlSize: 3})
	ctx := ctxTimeout(t, 60*time.Second)
	st := waitControl(ctx, t, c, 3, "", 3)
	if len(st.Servers) != 3 {
		t.Fatalf("raft configuration has %d servers, want exactly the 3 voters: %+v", len(st.Servers), st.Servers)
	}
	plain := -1
	for i, a := range c.Agents {
		if !strings.Contains(fmt.Sprint(st.Servers), a.Name()) {
			plain = i
		}
	}
	if plain < 0 {
		t.Fatal("no plain node: all 4 nodes are raft members")
	}

	// Write through the plain node, read through every node.
	e, err := c.Client(plain).KVPut(ctx, "app/web/version", []byte("41"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.Version != 1 || e.Scope != "global" {
		t.Fatalf("first put: %+v", e)
	}
	for i := range c.Agents {
		got, err := c.Client(i).KVGet(ctx, "app/web/version", api.KVQuery{Consistent: true})
		if err != nil || string(got.Value) != "41" {
			t.Fatalf("node %d reads %+v, %v", i, got, err)
		}
	}
	// Compare-and-set.
	one, zero := uint64(1), uint64(0)
	if e, err = c.Client(0).KVPut(ctx, "app/web/version", []byte("42"), "", &one); err != nil || e.Version != 2 {
		t.Fatalf("cas put at version 1: %+v, %v", e, err)
	}
	_, err = c.Client(1).KVPut(ctx, "app/web/version", []byte("43"), "", &one)
	wantCode(t, err, api.CodeCASConflict)
	_, err = c.Client(1).KVPut(ctx, "app/web/version", []byte("43"), "", &zero)
	wantCode(t, err, api.CodeCASConflict)
	if _, err = c.Client(2).KVPut(ctx, "app/db/version", []byte("7"), "", &zero); err != nil {
		t.Fatalf("create-only put of a new key: %v", err)
	}
	l, err := c.Client(plain).KVList(ctx, "app/", api.KVQuery{})
	if err != nil || len(l.Entries) != 2 || l.Entries[0].Key != "app/db/version" {
		t.Fatalf("list app/: %+v, %v", l, err)
	}
	two := uint64(2) // app/db/version is at version 1
	wantCode(t, c.Client(plain).KVDelete(ctx, "app/db/version", "", &two), api.CodeCASConflict)
	if err := c.Client(plain).KVDelete(ctx, "app/db/version", "", nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.Client(0).KVGet(ctx, "app/db/version", api.KVQuery{})
	wantCode(t, err, api.CodeNotFound)

	// Bad input.
	_, err = c.Client(plain).KVPut(ctx, "bad//key", []byte("x"), "", nil)
	wantCode(t, err, api.CodeBadRequest)
	_, err = c.Client(plain).KVPut(ctx, "big", make([]byte, 600<<10), "", nil)
	wantCode(t, err, api.CodeBadRequest)
	// Voters join the WAN pool just after they become voters; then a
	// request for an IDC nobody knows is a clear not-found.
	err = cluster.WaitFor(ctx, 100*time.Millisecond, func() error {
		st, err := c.Client(plain).ControlStatus(ctx, "")
		if err != nil || len(st.WANMembers) == 0 {
			return fmt.Errorf("WAN pool not formed: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Client(plain).KVPut(ctx, "k", []byte("x"), "nowhere", nil)
	wantCode(t, err, api.CodeNotFound)
	_, err = c.Client(plain).ControlStatus(ctx, "nowhere")
	wantCode(t, err, api.CodeNotFound)
}

// A blocking read returns as soon as the key changes.
func TestControlBlockingQuery(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{ControlSize: 3})
	ctx := ctxTimeout(t, 60*time.Second)
	waitControl(ctx, t, c, 0, "", 3)
	e, err := c.Client(0).KVPut(ctx, "watched", []byte("a"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *api.KVEntry, 1)
	go func() {
		g, err := c.Client(1).KVGet(ctx, "watched", api.KVQuery{Index: e.ModifyIndex, Wait: 30 * time.Second})
		if err != nil {
			t.Error(err)
		}
		got <- g
	}()
	if _, err := c.Client(2).KVPut(ctx, "watched", []byte("b"), "", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-got:
		if g == nil || string(g.Value) != "b" {
			t.Fatalf("blocking read returned %+v", g)
		}
	case <-ctx.Done():
		t.Fatal("blocking read did not return after the write")
	}
}

// Two IDCs: each forms its own group; a global object written anywhere is
// committed by the primary and replicated to the other IDC; an IDC-scoped
// object stays in its IDC (read from elsewhere by forwarding only).
func TestControlTwoIDCs(t *testing.T) {
	c := cluster.New(t, 6, cluster.Options{IDCs: 2, ControlSize: 3})
	ctx := ctxTimeout(t, 90*time.Second)
	waitControl(ctx, t, c, 0, "", 3)
	waitControl(ctx, t, c, 1, "", 3)
	// Status of the other IDC, forwarded across the WAN.
	st := waitControl(ctx, t, c, 0, "dc2", 3)
	if st.IDC != "dc2" {
		t.Fatalf("status --idc dc2 answered for %s", st.IDC)
	}

	dc1, dc2 := 0, 1 // node1 is in dc1, node2 in dc2
	if _, err := c.Client(dc2).KVPut(ctx, "global/from-dc2", []byte("x"), "", nil); err != nil {
		t.Fatalf("global write from dc2: %v", err)
	}
	if _, err := c.Client(dc1).KVPut(ctx, "global/from-dc1", []byte("y"), "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client(dc1).KVPut(ctx, "local/only", []byte("z"), "dc1", nil); err != nil {
		t.Fatal(err)
	}
	// Both global keys reach dc2's replica; its stores never hold dc1's scope.
	err := cluster.WaitFor(ctx, 100*time.Millisecond, func() error {
		for _, k := range []string{"global/from-dc2", "global/from-dc1"} {
			if _, err := c.Client(dc2).KVGet(ctx, k, api.KVQuery{Stale: true}); err != nil {
				return fmt.Errorf("dc2 replica lacks %s: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range c.Agents {
		if a.IDC() != "dc2" {
			continue
		}
		_, e, err := a.Control().Store().KVGet(nil, "dc1", "local/only")
		if err != nil || e != nil {
			t.Fatalf("node %d of dc2 holds dc1's IDC-scoped object: %+v, %v", i, e, err)
		}
	}
	// Reading dc1's scope from dc2 is forwarded once across the WAN.
	e, err := c.Client(dc2).KVGet(ctx, "local/only", api.KVQuery{Scope: "dc1"})
	if err != nil || string(e.Value) != "z" {
		t.Fatalf("cross-IDC read: %+v, %v", e, err)
	}
	// Members of the other IDC, answered by one of its nodes across the WAN.
	ms, err := c.Client(dc1).Members(ctx, api.MembersQuery{IDC: "dc2"})
	if err != nil || ms.IDC != "dc2" || len(ms.Members) != 3 {
		t.Fatalf("members --idc dc2 from dc1: %+v, %v", ms, err)
	}
	st, err = c.Client(dc2).ControlStatus(ctx, "")
	if err != nil || st.Replication == nil || st.Replication.SourceIndex == 0 {
		t.Fatalf("dc2 replication status: %+v, %v", st, err)
	}
}
