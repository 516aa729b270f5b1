package integration_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/herd-io/herd/integration/cluster"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
	"github.com/herd-io/herd/node/api"
)

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func names(ms []api.Member) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Name+"/"+m.Status)
	}
	sort.Strings(out)
	return out
}

// Five in-process nodes converge, and every node's API answers the same set
// with labels and health that came by gossip.
func TestInProcessConvergence(t *testing.T) {
	c := cluster.New(t, 5, cluster.Options{})
	ctx := ctxTimeout(t, 30*time.Second)
	var first []string
	err := cluster.WaitFor(ctx, 50*time.Millisecond, func() error {
		first = nil
		for i := range c.Agents {
			ms, err := c.Client(i).Members(ctx, api.MembersQuery{})
			if err != nil {
				return err
			}
			if len(ms.Members) != 5 {
				return fmt.Errorf("node %d sees %d members", i, len(ms.Members))
			}
			for _, m := range ms.Members {
				if m.Labels["slot"] == "" || m.Health.MemTotal == 0 || m.PeerID == "" {
					return fmt.Errorf("node %d: member %s lacks labels, health or peer id: %+v", i, m.Name, m)
				}
			}
			got := fmt.Sprint(names(ms.Members))
			if first == nil {
				first = names(ms.Members)
			} else if got != fmt.Sprint(first) {
				return fmt.Errorf("node %d sees %s, node 0 sees %v", i, got, first)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Selectors filter on labels and built-in attributes.
	ms, err := c.Client(0).Members(ctx, api.MembersQuery{Selector: "slot in (2,4),status=alive"})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(ms.Members); fmt.Sprint(got) != "[node2/alive node4/alive]" {
		t.Fatalf("selector matched %v", got)
	}
}

// Labels changed at runtime reach every node.
func TestLabelsReload(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	if err := c.Agents[2].ReloadLabels(map[string]string{"role": "db"}); err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 20*time.Second)
	err := cluster.WaitFor(ctx, 50*time.Millisecond, func() error {
		for i := range c.Agents {
			ms, err := c.Client(i).Members(ctx, api.MembersQuery{Selector: "role=db"})
			if err != nil {
				return err
			}
			if len(ms.Members) != 1 || ms.Members[0].Name != "node3" {
				return fmt.Errorf("node %d: role=db matches %v", i, names(ms.Members))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A crash is seen as failed, a graceful stop as left.
func TestFailedAndLeft(t *testing.T) {
	c := cluster.New(t, 4, cluster.Options{})
	c.Kill(3)
	c.Leave(2)
	ctx := ctxTimeout(t, 30*time.Second)
	err := cluster.WaitFor(ctx, 50*time.Millisecond, func() error {
		for i := 0; i < 2; i++ {
			status := map[string]string{}
			for _, m := range c.Agents[i].Mesh().Members() {
				status[m.Name] = string(m.Status)
			}
			if status["node4"] != string(mesh.StatusFailed) || status["node3"] != string(mesh.StatusLeft) {
				return fmt.Errorf("node %d sees node3=%s node4=%s", i, status["node3"], status["node4"])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The API forwards a request to another member over node streams, and a
// node pings another over them.
func TestForwardingAndPing(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	ctx := ctxTimeout(t, 20*time.Second)
	self, err := c.Client(0).On("node3").Self(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if self.Member.Name != "node3" {
		t.Fatalf("forwarded self answered by %s", self.Member.Name)
	}
	p, err := c.Client(0).Ping(ctx, "node2")
	if err != nil {
		t.Fatal(err)
	}
	if p.RTT <= 0 || p.To != "node2" || p.From != "node1" {
		t.Fatalf("ping = %+v", p)
	}
	// Unknown members are a clear not-found, not a hang.
	_, err = c.Client(0).On("nobody").Self(ctx)
	var re *api.RequestError
	if !errors.As(err, &re) || re.Err.Code != api.CodeNotFound {
		t.Fatalf("forward to unknown member: %v", err)
	}
	// An IDC nobody knows is a clear not-found, once the WAN pool is up.
	err = cluster.WaitFor(ctx, 100*time.Millisecond, func() error {
		_, err := c.Client(0).Members(ctx, api.MembersQuery{IDC: "elsewhere"})
		if !errors.As(err, &re) || re.Err.Code != api.CodeNotFound {
			return fmt.Errorf("members of unknown IDC: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The API refuses requests without the right token.
func TestAPIToken(t *testing.T) {
	c := cluster.New(t, 1, cluster.Options{})
	ctx := ctxTimeout(t, 10*time.Second)
	for token, code := range map[string]string{"": api.CodeUnauthorized, "wrong": api.CodeForbidden} {
		cl, err := api.NewClient(c.Agents[0].APIAddr(), token)
		if err != nil {
			t.Fatal(err)
		}
		_, err = cl.Members(ctx, api.MembersQuery{})
		var re *api.RequestError
		if !errors.As(err, &re) || re.Err.Code != code {
			t.Fatalf("token %q: err = %v, want code %s", token, err, code)
		}
		if _, err := cl.Health(ctx); err != nil {
			t.Fatalf("health needs no token: %v", err)
		}
	}
}

// A libp2p host that is not a mesh member is refused by the gater: its call
// fails and the node's handler never runs.
func TestGaterRefusesNonMember(t *testing.T) {
	c := cluster.New(t, 2, cluster.Options{})
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg := p2p.DefaultConfig()
	cfg.PrivKey = priv
	cfg.ListenAddr = "127.0.0.1:0"
	outsider, err := p2p.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer outsider.Close()
	target := c.Agents[1].Mesh().LocalMember()
	pid, err := p2p.ParsePeerID(target.Meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 10*time.Second)
	_, err = outsider.Call(ctx, pid, target.Meta.P2P, "/herd/api/1", []byte(`{"method":"GET","path":"/v1/self"}`))
	if err == nil {
		t.Fatal("a non-member's stream was accepted")
	}
	var perr *p2p.Error
	if !errors.As(err, &perr) || perr.Code != p2p.CodeUnavailable {
		t.Fatalf("want an unavailable error, got %v", err)
	}
	// A member's call over the same protocol works.
	if _, err := c.Agents[0].Host().Ping(ctx, pid, target.Meta.P2P); err != nil {
		t.Fatalf("member ping: %v", err)
	}
}
