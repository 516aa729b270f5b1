package integration_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/integration/cluster"
	"github.com/herd-io/herd/jobs"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
	"github.com/herd-io/herd/node"
)

// fastJobs shortens the scheduler's deadlines for tests.
func fastJobs(c *jobs.SchedulerConfig) {
	c.RetryInterval = 500 * time.Millisecond
	c.AckDeadline = 10 * time.Second
	c.ReportGrace = 3 * time.Second
	c.CancelGrace = 3 * time.Second
	c.Tick = 100 * time.Millisecond
}

func jobsCluster(t *testing.T, n, controlSize int) *cluster.Cluster {
	t.Helper()
	c := cluster.New(t, n, cluster.Options{ControlSize: controlSize, Configure: func(_ int, cfg *node.Config) {
		cfg.TuneJobs = fastJobs
	}})
	ctx := ctxTimeout(t, 60*time.Second)
	if err := c.WaitConverged(ctx); err != nil {
		t.Fatal(err)
	}
	waitControl(ctx, t, c, 0, "", controlSize)
	return c
}

// createRun creates a run through node i and returns its id.
func createRun(ctx context.Context, t *testing.T, c *cluster.Cluster, i int, req model.RunRequest) string {
	t.Helper()
	var res *jobs.CreateResponse
	err := cluster.WaitFor(ctx, 200*time.Millisecond, func() error {
		var err error
		res, err = c.Agents[i].Jobs().CreateRun(ctx, req)
		if p2p.CodeOf(err) == p2p.CodeBadRequest {
			t.Fatalf("create: %v", err)
		}
		return err
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return res.Run.ID
}

// waitRun follows a run with blocking queries until it is finished and
// checks that every host is in exactly one terminal status.
func waitRun(ctx context.Context, t *testing.T, c *cluster.Cluster, i int, id string) *model.RunView {
	t.Helper()
	var index uint64
	for {
		v, meta, err := c.Agents[i].Jobs().GetRun(ctx, "", id, true, consensus.QueryOptions{MinIndex: index, MaxWait: 5 * time.Second})
		if ctx.Err() != nil {
			t.Fatalf("run %s did not finish: last view %+v (err %v)", id, v, err)
		}
		if err != nil {
			time.Sleep(100 * time.Millisecond) // a leader change: retry the read
			continue
		}
		index = meta.Index
		if v.Run.Status != model.RunRunning {
			seen := map[string]bool{}
			for _, h := range v.Hosts {
				if !h.Status.Terminal() || seen[h.Host] {
					t.Fatalf("finished run %s has host %s in %s (dup %v)", id, h.Host, h.Status, seen[h.Host])
				}
				seen[h.Host] = true
			}
			if len(v.Hosts) != v.Run.Total {
				t.Fatalf("run has %d hosts, total says %d", len(v.Hosts), v.Run.Total)
			}
			return v
		}
	}
}

func sh(body string) model.ScriptSpec {
	return model.ScriptSpec{Lang: "sh", Body: []byte(body)}
}

func hostsBy(v *model.RunView) map[string]model.HostResult {
	out := map[string]model.HostResult{}
	for _, h := range v.Hosts {
		out[h.Host] = h
	}
	return out
}

// Scripts in sh and python run on every host with their output, exit
// codes and errors accounted for; unknown names and unregistered accounts
// are settled with clear per-host errors; rerun repeats only failures.
func TestRunScripts(t *testing.T) {
	c := jobsCluster(t, 4, 1)
	ctx := ctxTimeout(t, 120*time.Second)
	svc := c.Agents[1].Jobs()

	dry, err := svc.CreateRun(ctx, model.RunRequest{Targets: model.Targets{Selector: "slot in (1,2)"}, Script: sh("true"), DryRun: true})
	if err != nil || dry.DryRun == nil || len(dry.DryRun.Targets) != 2 {
		t.Fatalf("dry run: %+v %v", dry, err)
	}

	req := model.RunRequest{
		Targets: model.Targets{All: true, Hosts: []string{"ghost"}},
		Script:  sh(`echo "hello from $HERD_HOST $1 $GREETING"; [ "$HERD_HOST" = node3 ] && exit 3; exit 0`),
	}
	req.Script.Args = []string{"arg1"}
	req.Script.Env = map[string]string{"GREETING": "hi"}
	id := createRun(ctx, t, c, 1, req)
	v := waitRun(ctx, t, c, 0, id)
	hosts := hostsBy(v)
	for _, n := range []string{"node1", "node2", "node4"} {
		h := hosts[n]
		if h.Status != model.HostSuccess || string(h.Output.Head) != "hello from "+n+" arg1 hi\n" {
			t.Errorf("%s: %s %q (%s)", n, h.Status, h.Output.Head, h.Error)
		}
	}
	if h := hosts["node3"]; h.Status != model.HostFailed || h.ExitCode != 3 {
		t.Errorf("node3: %+v", h)
	}
	if h := hosts["ghost"]; h.Status != model.HostUnreachable || !strings.Contains(h.Error, "no host named ghost") {
		t.Errorf("ghost: %+v", h)
	}
	if v.Run.Status != model.RunFailed {
		t.Errorf("run status %s", v.Run.Status)
	}

	// Rerun of the failed hosts only, linked to the first run.
	rr, err := svc.Rerun(ctx, "", id, true)
	if err != nil {
		t.Fatal(err)
	}
	rv := waitRun(ctx, t, c, 2, rr.Run.ID)
	if rv.Run.RerunOf != id || rv.Run.Total != 2 {
		t.Fatalf("rerun: %+v", rv.Run)
	}

	// python, and output over the cap truncated with head and tail kept.
	py := model.RunRequest{Targets: model.Targets{Hosts: []string{"node2"}}, Script: model.ScriptSpec{Lang: "python",
		Body: []byte("import sys\nsys.stdout.write('A'*40000 + 'B'*40000)\nsys.stdout.buffer.write(b'\\xff\\xfe end')\n")}}
	pv := waitRun(ctx, t, c, 0, createRun(ctx, t, c, 0, py))
	h := pv.Hosts[0]
	if h.Status != model.HostSuccess || !h.Output.Truncated || h.Output.Bytes != 80006 ||
		!bytes.HasPrefix(h.Output.Head, []byte("AAAA")) || !bytes.HasSuffix(h.Output.Tail, []byte("B\xff\xfe end")) {
		t.Fatalf("python host: %s %s bytes=%d truncated=%v", h.Status, h.Error, h.Output.Bytes, h.Output.Truncated)
	}
	// The full output, byte for byte, from the executor's disk through
	// another node.
	var full []byte
	for off := int64(0); ; {
		chunk, err := c.Agents[3].Jobs().Logs(ctx, "", pv.Run.ID, "node2", off, 30000)
		if err != nil {
			t.Fatal(err)
		}
		full = append(full, chunk.Data...)
		off += int64(len(chunk.Data))
		if chunk.Done {
			break
		}
	}
	want := append(append(bytes.Repeat([]byte("A"), 40000), bytes.Repeat([]byte("B"), 40000)...), "\xff\xfe end"...)
	if !bytes.Equal(full, want) {
		t.Fatalf("logs: %d bytes, want %d identical", len(full), len(want))
	}

	// An unregistered account fails every host with a clear error.
	av := waitRun(ctx, t, c, 0, createRun(ctx, t, c, 0, model.RunRequest{Targets: model.Targets{All: true}, Script: sh("id"), Account: "nobody-here"}))
	for _, h := range av.Hosts {
		if h.Status != model.HostFailed || !strings.Contains(h.Error, `account "nobody-here" is not registered`) {
			t.Fatalf("unregistered account on %s: %s %q", h.Host, h.Status, h.Error)
		}
	}
}

// A timed-out script is killed with its children; a cancelled run stops
// its running hosts.
func TestRunTimeoutAndCancel(t *testing.T) {
	c := jobsCluster(t, 2, 1)
	ctx := ctxTimeout(t, 90*time.Second)
	marker := fmt.Sprintf("herd-timeout-%d", time.Now().UnixNano())
	spec := sh(fmt.Sprintf(`sh -c 'exec sleep 1000 # %s' & sleep 1000`, marker))
	spec.Timeout = model.Duration(time.Second)
	v := waitRun(ctx, t, c, 0, createRun(ctx, t, c, 0, model.RunRequest{Targets: model.Targets{All: true}, Script: spec}))
	for _, h := range v.Hosts {
		if h.Status != model.HostTimeout {
			t.Fatalf("%s: %s (%s)", h.Host, h.Status, h.Error)
		}
	}
	if out, _ := exec.Command("pgrep", "-f", marker).Output(); len(bytes.TrimSpace(out)) > 0 {
		if alive := liveProcs(strings.Fields(string(out))); len(alive) > 0 {
			t.Fatalf("children of the timed-out script survive: %v", alive)
		}
	}

	id := createRun(ctx, t, c, 1, model.RunRequest{Targets: model.Targets{All: true}, Script: sh("sleep 1000")})
	err := cluster.WaitFor(ctx, 100*time.Millisecond, func() error {
		v, _, err := c.Agents[0].Jobs().GetRun(ctx, "", id, false, consensus.QueryOptions{})
		if err != nil {
			return err
		}
		if v.Run.Counts[model.HostRunning] != 2 {
			return fmt.Errorf("counts %v", v.Run.Counts)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Agents[1].Jobs().CancelRun(ctx, "", id); err != nil {
		t.Fatal(err)
	}
	v = waitRun(ctx, t, c, 0, id)
	if v.Run.Status != model.RunCancelled {
		t.Fatalf("run status %s", v.Run.Status)
	}
	for _, h := range v.Hosts {
		if h.Status != model.HostCancelled || h.Node != h.Host {
			t.Fatalf("%s: %s (%s)", h.Host, h.Status, h.Error)
		}
	}
}

// liveProcs drops zombies (this sandbox's init does not reap orphans).
func liveProcs(pids []string) []string {
	var out []string
	for _, p := range pids {
		st, err := os.ReadFile(filepath.Join("/proc", p, "stat"))
		if err == nil && !strings.Contains(string(st), ") Z ") {
			out = append(out, p)
		}
	}
	return out
}

// A host killed mid-run is unreachable; the leader killed mid-run hands
// over to a new leader that finishes the run with every host accounted for.
func TestRunSurvivesLeaderAndHostLoss(t *testing.T) {
	c := jobsCluster(t, 5, 3)
	ctx := ctxTimeout(t, 120*time.Second)
	st := waitControl(ctx, t, c, 0, "", 3)
	leader, victim := -1, -1
	for i, a := range c.Agents {
		if a.Name() == st.Leader {
			leader = i
		}
	}
	voters := map[string]bool{}
	for _, sv := range st.Servers {
		voters[sv.Name] = true
	}
	for i, a := range c.Agents {
		if !voters[a.Name()] {
			victim = i // a plain node: the two kills leave a quorum
			break
		}
	}
	obs := 0 // a node that survives, to watch through
	for obs == leader || obs == victim {
		obs++
	}
	id := createRun(ctx, t, c, obs, model.RunRequest{Targets: model.Targets{All: true}, Script: sh("sleep 3; echo done")})
	err := cluster.WaitFor(ctx, 100*time.Millisecond, func() error {
		v, _, err := c.Agents[obs].Jobs().GetRun(ctx, "", id, false, consensus.QueryOptions{})
		if err != nil {
			return err
		}
		if v.Run.Counts[model.HostRunning] != 5 {
			return fmt.Errorf("counts %v", v.Run.Counts)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Kill(victim)
	c.Kill(leader)
	v := waitRun(ctx, t, c, obs, id)
	hosts := hostsBy(v)
	for i, a := range c.Agents {
		h := hosts[a.Name()]
		switch i {
		case victim, leader:
			if h.Status != model.HostUnreachable {
				t.Errorf("killed %s: %s (%s)", a.Name(), h.Status, h.Error)
			}
		default:
			if h.Status != model.HostSuccess || string(h.Output.Head) != "done\n" {
				t.Errorf("%s: %s %q (%s)", a.Name(), h.Status, h.Output.Head, h.Error)
			}
		}
	}
}

// A task that the control group did not sign is refused and never runs.
func TestForgedTaskRefused(t *testing.T) {
	c := jobsCluster(t, 3, 1)
	ctx := ctxTimeout(t, 60*time.Second)
	st := waitControl(ctx, t, c, 0, "", 1)
	var plain, target *node.Agent
	for _, a := range c.Agents {
		if a.Name() == st.Leader {
			continue
		}
		if plain == nil {
			plain = a
		} else {
			target = a
		}
	}
	marker := filepath.Join(t.TempDir(), "pwned")
	key := plain.Host().Libp2p().Peerstore().PrivKey(plain.Host().ID())
	task := jobs.Task{RunID: "20261130-000000-ffffff", IDC: "dc1", Host: target.Name(), Executor: target.Name(),
		Script: sh("touch " + marker), Issued: time.Now(), Expires: time.Now().Add(time.Minute)}
	forged, err := jobs.SignTask(key, task) // signed, but by a node outside the control group
	if err != nil {
		t.Fatal(err)
	}
	unsigned := jobs.Envelope{Task: forged.Task}
	for name, env := range map[string]jobs.Envelope{"forged": forged, "unsigned": unsigned} {
		_, err := jobs.Deliver(ctx, plain.Host(), mustMember(t, plain, target.Name()), env)
		if p2p.CodeOf(err) != p2p.CodeForbidden {
			t.Errorf("%s task: err = %v, want forbidden", name, err)
		}
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a forged task ran")
	}
}

func mustMember(t *testing.T, a *node.Agent, name string) mesh.Member {
	t.Helper()
	m, ok := a.Mesh().Member(name)
	if !ok {
		t.Fatalf("%s does not know %s", a.Name(), name)
	}
	return m
}
