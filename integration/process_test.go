package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-io/herd/integration/cluster"
	"github.com/herd-io/herd/node/api"
	"github.com/herd-io/herd/node/devmesh"
)

// startDev starts a dev mesh of real agent processes for the test.
func startDev(t testing.TB, nodes, idcs int, extra ...string) *devmesh.Cluster {
	t.Helper()
	ctx := ctxTimeout(t, 90*time.Second)
	c, err := devmesh.Start(ctx, devmesh.Options{
		Binary: cluster.Binary(t), Nodes: nodes, IDCs: idcs, Dir: t.TempDir(),
		HealthInterval: time.Second, ExtraArgs: extra,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(20 * time.Second) })
	return c
}

// herdCLI runs the real binary and returns its exit code, stdout, stderr.
func herdCLI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cluster.Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running herd %v: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

// `herd members --node X` against every node of an IDC gives the same set,
// and the table form names every member.
func TestMembersSameFromEveryNode(t *testing.T) {
	c := startDev(t, 6, 2)
	env := []string{"HERD_TOKEN=" + c.Token}
	var want string
	for _, n := range c.Nodes {
		if n.IDC != "dc1" {
			continue
		}
		code, out, stderr := herdCLI(t, env, "--node", n.API, "--json", "members")
		if code != 0 {
			t.Fatalf("members via %s: exit %d: %s", n.Name, code, stderr)
		}
		var ms api.Members
		if err := json.Unmarshal([]byte(out), &ms); err != nil {
			t.Fatalf("members --json via %s: %v\n%s", n.Name, err, out)
		}
		got := fmt.Sprint(names(ms.Members))
		if len(ms.Members) != 3 || ms.IDC != "dc1" {
			t.Fatalf("via %s: %s in IDC %s, want the 3 members of dc1", n.Name, got, ms.IDC)
		}
		if want == "" {
			want = got
		} else if got != want {
			t.Fatalf("via %s: %s, via the first node: %s", n.Name, got, want)
		}
	}
	code, out, _ := herdCLI(t, env, "--node", c.Nodes[1].API, "members")
	if code != 0 || !strings.Contains(out, "NAME") || !strings.Contains(out, "node2") || !strings.Contains(out, "node4") {
		t.Fatalf("members table from dc2 node:\n%s", out)
	}
}

// SIGKILL → the others mark the node failed; SIGTERM → left.
func TestProcessKillAndLeave(t *testing.T) {
	c := startDev(t, 4, 1)
	if err := c.Signal(3, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := c.Signal(2, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t, 60*time.Second)
	if err := c.WaitExit(ctx, 2); err != nil {
		t.Fatal(err)
	}
	err := cluster.WaitFor(ctx, 100*time.Millisecond, func() error {
		for i := 0; i < 2; i++ {
			cl, _ := c.Client(i)
			ms, err := cl.Members(ctx, api.MembersQuery{})
			if err != nil {
				return err
			}
			st := map[string]string{}
			for _, m := range ms.Members {
				st[m.Name] = m.Status
			}
			if st["node4"] != "failed" || st["node3"] != "left" {
				return fmt.Errorf("node%d sees node3=%s node4=%s", i+1, st["node3"], st["node4"])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A node with the wrong key cannot join; its log says why and it never
// appears in the mesh. An unreachable --join ends with a clear error.
func TestWrongKeyAndUnreachableJoin(t *testing.T) {
	c := startDev(t, 2, 1)
	dir := t.TempDir()
	code, _, stderr := herdCLI(t, nil, "agent", "--name", "intruder", "--data-dir", dir,
		"--bind", "127.0.0.1:0", "--p2p", "127.0.0.1:0", "--api", "127.0.0.1:0",
		"--encrypt", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		"--join", c.Nodes[0].Gossip, "--join-timeout", "3s")
	if code != 1 {
		t.Fatalf("wrong key: exit %d, want 1; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "--encrypt") {
		t.Fatalf("wrong key: the log does not say the key may differ:\n%s", stderr)
	}
	cl, _ := c.Client(0)
	ms, err := cl.Members(ctxTimeout(t, 10*time.Second), api.MembersQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms.Members {
		if m.Name == "intruder" {
			t.Fatal("the node with the wrong key joined")
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	code, _, stderr = herdCLI(t, nil, "agent", "--dev", "--name", "lonely", "--data-dir", t.TempDir(),
		"--bind", "127.0.0.1:0", "--p2p", "127.0.0.1:0", "--api", "127.0.0.1:0",
		"--join", closed, "--join-timeout", "2s")
	if code != 1 || !strings.Contains(stderr, "join: no node of "+closed+" answered") {
		t.Fatalf("unreachable join: exit %d, stderr:\n%s", code, stderr)
	}
}

// SIGHUP re-reads labels from the config file and gossips them.
func TestSIGHUPReloadsLabels(t *testing.T) {
	c := startDev(t, 2, 1)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "agent.yaml")
	write := func(role string) {
		t.Helper()
		body := fmt.Sprintf("name: hup\nidc: dc1\ndev: true\ndata_dir: %s\nbind: 127.0.0.1:0\np2p: 127.0.0.1:0\napi: 127.0.0.1:0\n"+
			"encrypt: %q\napi_token: %q\njoin: [%s]\ncontrol_size: 1\nlabels: {role: %s}\n",
			filepath.Join(dir, "data"), c.EncryptKey, c.Token, c.Nodes[0].Gossip, role)
		if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("web")
	cmd := exec.Command(cluster.Binary(t), "agent", "--config", cfgPath, "--health-interval", "500ms")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	cl, _ := c.Client(0)
	ctx := ctxTimeout(t, 30*time.Second)
	waitRole := func(role string) {
		t.Helper()
		err := cluster.WaitFor(ctx, 100*time.Millisecond, func() error {
			ms, err := cl.Members(ctx, api.MembersQuery{Selector: "name=hup,role=" + role})
			if err != nil {
				return err
			}
			if len(ms.Members) != 1 {
				return fmt.Errorf("hup with role=%s not seen", role)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%v\nagent log:\n%s", err, logs.String())
		}
	}
	waitRole("web")
	write("db")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitRole("db")
}
