package jobs

import (
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/consensus/state"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh"
)

// fsm applies jobs commands through a real consensus FSM.
type fsm struct {
	t   *testing.T
	f   *consensus.FSM
	idx uint64
}

func newFSM(t *testing.T) *fsm {
	s, err := state.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	return &fsm{t: t, f: consensus.NewFSM(s, slog.New(slog.DiscardHandler))}
}

func (f *fsm) apply(typ consensus.MessageType, body any) *consensus.ApplyResult {
	f.t.Helper()
	f.idx++
	b, err := consensus.EncodeCommand(typ, "", body)
	if err != nil {
		f.t.Fatal(err)
	}
	res := f.f.Apply(&raft.Log{Index: f.idx, Term: 1, Type: raft.LogCommand, Data: b}).(*consensus.ApplyResult)
	return res
}

func (f *fsm) view(id string) *model.RunView {
	f.t.Helper()
	_, v, err := readRun(nil, f.f.Store(), runQuery{IDC: "dc1", ID: id, Hosts: true})
	if err != nil || v == nil {
		f.t.Fatalf("read run %s: %v %v", id, v, err)
	}
	return v
}

func targets(names ...string) []model.Target {
	out := make([]model.Target, len(names))
	for i, n := range names {
		out[i] = model.Target{Name: n, Kind: model.TargetAgent}
	}
	return out
}

func TestRunLifecycleEveryHostOneTerminalStatus(t *testing.T) {
	f := newFSM(t)
	now := time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)
	run := model.Run{ID: "20261130-040000-aaaaaa", IDC: "dc1", Created: now, Script: model.ScriptSpec{Lang: "sh", Body: []byte("true")}}
	res := f.apply(RunCreateType, RunCreate{Run: run, Targets: targets("a", "b", "c", "ghost"),
		Settled: []model.HostResult{{Host: "ghost", Status: model.HostUnreachable, Error: "no host"}}})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	v := f.view(run.ID)
	if v.Run.Counts[model.HostPending] != 3 || v.Run.Counts[model.HostUnreachable] != 1 || v.Run.Status != model.RunRunning {
		t.Fatalf("after create: %+v", v.Run)
	}
	// A second create with the same id is refused (creates are create-only).
	if res := f.apply(RunCreateType, RunCreate{Run: run, Targets: targets("a")}); res.Err == nil || res.Err.Code != consensus.CodeCASConflict {
		t.Fatalf("duplicate create: %+v", res.Err)
	}
	upd := func(hs ...model.HostResult) HostsUpdateResult {
		t.Helper()
		res := f.apply(HostsUpdateType, HostsUpdate{IDC: "dc1", RunID: run.ID, Updates: hs, Now: now})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		var out HostsUpdateResult
		_ = json.Unmarshal(res.Data, &out)
		return out
	}
	upd(model.HostResult{Host: "a", Status: model.HostRunning}, model.HostResult{Host: "b", Status: model.HostRunning})
	// The first terminal status wins; a late running ack or a second
	// result changes nothing; unknown hosts are ignored.
	out := upd(model.HostResult{Host: "a", Status: model.HostSuccess},
		model.HostResult{Host: "a", Status: model.HostFailed},
		model.HostResult{Host: "a", Status: model.HostRunning},
		model.HostResult{Host: "intruder", Status: model.HostSuccess})
	if out.Applied != 1 || out.Ignored != 3 {
		t.Fatalf("update result %+v", out)
	}
	v = f.view(run.ID)
	if v.Hosts[0].Host != "a" || v.Hosts[0].Status != model.HostSuccess {
		t.Fatalf("host a: %+v", v.Hosts[0])
	}
	// Cancel: the pending host c becomes cancelled at once, b (running)
	// waits for its executor.
	if res := f.apply(RunCancelType, RunCancel{IDC: "dc1", RunID: run.ID, Now: now}); res.Err != nil {
		t.Fatal(res.Err)
	}
	v = f.view(run.ID)
	if v.Run.Counts[model.HostCancelled] != 1 || v.Run.Counts[model.HostRunning] != 1 || v.Run.Status != model.RunRunning {
		t.Fatalf("after cancel: %+v", v.Run.Counts)
	}
	out = upd(model.HostResult{Host: "b", Status: model.HostCancelled})
	if !out.Done {
		t.Fatal("the run did not finish with every host terminal")
	}
	v = f.view(run.ID)
	if v.Run.Status != model.RunCancelled || v.Run.Finished == nil {
		t.Fatalf("final run: %+v", v.Run)
	}
	total := 0
	for _, h := range v.Hosts {
		if !h.Status.Terminal() {
			t.Fatalf("host %s not terminal: %s", h.Host, h.Status)
		}
		total++
	}
	if total != 4 {
		t.Fatalf("%d hosts, want 4", total)
	}
	// Prune removes finished runs before the cutoff and all their keys.
	if res := f.apply(RunsPruneType, RunsPrune{IDC: "dc1", Before: now.Add(time.Second)}); res.Err != nil {
		t.Fatal(res.Err)
	}
	_, entries, _ := f.f.Store().KVList(nil, "dc1", "herd/")
	if len(entries) != 0 {
		t.Fatalf("prune left %d keys", len(entries))
	}
}

func TestRunSucceedsOnlyWhenEveryHostSucceeds(t *testing.T) {
	f := newFSM(t)
	run := model.Run{ID: "20261130-040000-bbbbbb", IDC: "dc1"}
	f.apply(RunCreateType, RunCreate{Run: run, Targets: targets("a", "b")})
	f.apply(HostsUpdateType, HostsUpdate{IDC: "dc1", RunID: run.ID, Updates: []model.HostResult{{Host: "a", Status: model.HostSuccess}, {Host: "b", Status: model.HostSkipped}}})
	if v := f.view(run.ID); v.Run.Status != model.RunSucceeded {
		t.Fatalf("status %s", v.Run.Status)
	}
	run.ID = "20261130-040000-cccccc"
	f.apply(RunCreateType, RunCreate{Run: run, Targets: targets("a", "b")})
	f.apply(HostsUpdateType, HostsUpdate{IDC: "dc1", RunID: run.ID, Updates: []model.HostResult{{Host: "a", Status: model.HostSuccess}, {Host: "b", Status: model.HostTimeout}}})
	if v := f.view(run.ID); v.Run.Status != model.RunFailed {
		t.Fatalf("status %s", v.Run.Status)
	}
}

func TestCommandsRefuseBadInput(t *testing.T) {
	f := newFSM(t)
	for name, c := range map[string]struct {
		typ  consensus.MessageType
		body any
	}{
		"unknown run update": {HostsUpdateType, HostsUpdate{IDC: "dc1", RunID: "nope"}},
		"unknown run cancel": {RunCancelType, RunCancel{IDC: "dc1", RunID: "nope"}},
		"bad run id":         {RunCreateType, RunCreate{Run: model.Run{ID: "../x", IDC: "dc1"}}},
		"settled non-target": {RunCreateType, RunCreate{Run: model.Run{ID: "r1", IDC: "dc1"}, Targets: targets("a"), Settled: []model.HostResult{{Host: "b", Status: model.HostFailed}}}},
		"not json":           {HostsUpdateType, "just a string"},
	} {
		if res := f.apply(c.typ, c.body); res.Err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, entries, _ := f.f.Store().KVList(nil, "dc1", ""); len(entries) != 0 {
		t.Fatalf("refused commands left %d keys", len(entries))
	}
}

func member(name, idc string, status mesh.Status, labels map[string]string) mesh.Member {
	return mesh.Member{Name: name, Status: status, Labels: labels, Meta: mesh.Meta{IDC: idc}}
}

func TestResolve(t *testing.T) {
	members := []mesh.Member{
		member("web1", "dc1", mesh.StatusAlive, map[string]string{"role": "web", "env": "prod"}),
		member("web2", "dc1", mesh.StatusAlive, map[string]string{"role": "web", "env": "staging", "canary": "yes"}),
		member("db1", "dc1", mesh.StatusAlive, map[string]string{"role": "db", "env": "prod"}),
		member("dead", "dc1", mesh.StatusFailed, map[string]string{"role": "web", "env": "prod"}),
		member("gone", "dc1", mesh.StatusLeft, nil),
		member("far", "dc2", mesh.StatusAlive, map[string]string{"role": "web"}),
	}
	groups := map[string]model.Group{"dbs": {Name: "dbs", Hosts: []string{"db1", "old-db"}}}
	ssh := []model.SSHHost{{Name: "legacy", IDC: "dc1"}, {Name: "elsewhere", IDC: "dc2"}}
	for _, c := range []struct {
		name    string
		sel     model.Targets
		want    string
		unknown string
		err     string
	}{
		{name: "all", sel: model.Targets{All: true}, want: "db1,dead,legacy,web1,web2"},
		{name: "selector", sel: model.Targets{Selector: "role=web,env in (prod,staging),!canary"}, want: "web1"},
		{name: "hosts and group", sel: model.Targets{Hosts: []string{"web2", "legacy"}, Groups: []string{"dbs"}}, want: "db1,legacy,old-db,web2", unknown: "old-db"},
		{name: "other idc host is unknown", sel: model.Targets{Hosts: []string{"far"}}, want: "far", unknown: "far"},
		{name: "bad selector", sel: model.Targets{Selector: "role in web"}, err: "--select"},
		{name: "unknown group", sel: model.Targets{Groups: []string{"nope"}}, err: "no group named"},
		{name: "nothing", sel: model.Targets{}, err: "no targets"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := Resolve(c.sel, "dc1", members, groups, ssh)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(sortedTargets(res.Targets), ","); got != c.want {
				t.Fatalf("targets %s, want %s", got, c.want)
			}
			if got := strings.Join(res.Unknown, ","); got != c.unknown {
				t.Fatalf("unknown %s, want %s", got, c.unknown)
			}
		})
	}
}

func TestTaskSignature(t *testing.T) {
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := crypto.GenerateEd25519Key(nil)
	signer, _ := peer.IDFromPrivateKey(key)
	now := time.Now()
	task := Task{RunID: "20261130-040000-aaaaaa", IDC: "dc1", Host: "web1", Executor: "web1", Issued: now, Expires: now.Add(time.Minute),
		Script: model.ScriptSpec{Lang: "sh", Body: []byte("id")}}
	env, err := SignTask(key, task)
	if err != nil {
		t.Fatal(err)
	}
	control := func(id string) bool { return id == signer.String() }
	if got, err := VerifyTask(env, "web1", now, control); err != nil || string(got.Script.Body) != "id" {
		t.Fatalf("valid task: %v", err)
	}
	tampered := env
	tampered.Task = []byte(strings.Replace(string(env.Task), `"aWQ="`, `"cm0gLXJmIC8="`, 1)) // body "id" -> "rm -rf /"
	forgedSig, _ := SignTask(other, task)
	forged := forgedSig
	forged.Signer = env.Signer // claims the control member signed it
	for name, c := range map[string]struct {
		env  Envelope
		host string
		now  time.Time
		ctl  func(string) bool
	}{
		"unsigned":            {Envelope{Task: env.Task}, "web1", now, control},
		"tampered body":       {tampered, "web1", now, control},
		"forged signature":    {forged, "web1", now, control},
		"signer not control":  {forgedSig, "web1", now, control},
		"other host's task":   {env, "web2", now, control},
		"expired":             {env, "web1", now.Add(2 * time.Minute), control},
		"signer demoted":      {env, "web1", now, func(string) bool { return false }},
		"signer not a peerid": {Envelope{Task: env.Task, Sig: env.Sig, Signer: "bob"}, "web1", now, control},
	} {
		if _, err := VerifyTask(c.env, c.host, c.now, c.ctl); err == nil || !errors.Is(err, ErrForged) {
			t.Errorf("%s: err = %v, want ErrForged", name, err)
		}
	}
}

func TestExecutorForSSHIsStableAndSpread(t *testing.T) {
	agents := []string{"n1", "n2", "n3", "n4"}
	count := map[string]int{}
	for i := range 400 {
		host := "legacy-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		a, why := executorFor(host, model.TargetSSH, nil, agents)
		b, _ := executorFor(host, model.TargetSSH, nil, agents)
		if why != "" || a != b {
			t.Fatalf("executor for %s: %q/%q (%s)", host, a, b, why)
		}
		count[a]++
	}
	for _, n := range agents {
		if count[n] < 50 {
			t.Fatalf("SSH hosts spread unevenly: %v", count)
		}
	}
}

func FuzzDecodeNotice(f *testing.F) {
	f.Add([]byte(`{"r":"20261130-040000-aaaaaa","h":["a"]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := decodeNotice(b)
		if err == nil && n.RunID == "" {
			t.Fatal("accepted a notice without a run id")
		}
	})
}

// sortedTargets returns target names sorted (for deterministic output).
func sortedTargets(ts []model.Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	sort.Strings(out)
	return out
}
