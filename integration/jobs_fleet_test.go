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
	"testing"
	"time"

	"github.com/herd-io/herd/integration/cluster"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/jobs/sshexec/sshdtest"
	"github.com/herd-io/herd/node/api"
)

// jobsFleet is a netns fleet driven through the herd CLI binary, the way
// an operator drives it: every call goes through `herd` with HERD_NODE set
// to one agent's API.
type jobsFleet struct {
	*fleet
	t *testing.T
}

// env points the CLI at host i's API.
func (f jobsFleet) env(i int) []string {
	return []string{"HERD_NODE=" + net.JoinHostPort(f.hosts.Hosts[i].IP, "7600"), "HERD_TOKEN=" + f.token}
}

// cli runs `herd args...` against host via's API.
func (f jobsFleet) cli(via int, args ...string) (int, string, string) {
	f.t.Helper()
	return herdCLI(f.t, f.env(via), args...)
}

// cliOK runs the CLI and fails the test unless it exits 0.
func (f jobsFleet) cliOK(via int, args ...string) string {
	f.t.Helper()
	code, out, errOut := f.cli(via, args...)
	if code != 0 {
		f.t.Fatalf("herd %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// runJSON runs `herd run ARGS --json` to completion and returns its exit
// code and the finished run, checked for exactly one terminal state per
// host.
func (f jobsFleet) runJSON(via int, args ...string) (int, *model.RunView) {
	f.t.Helper()
	code, out, errOut := f.cli(via, append([]string{"run", "--json"}, args...)...)
	var v model.RunView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		f.t.Fatalf("herd run %s: exit %d, no run JSON (%v)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, err, out, errOut)
	}
	checkAccounted(f.t, &v)
	return code, &v
}

// show returns `herd show RUN --json`.
func (f jobsFleet) show(via int, id string) (*model.RunView, error) {
	code, out, errOut := f.cli(via, "show", id, "--json")
	if code != 0 {
		return nil, fmt.Errorf("herd show %s: exit %d: %s", id, code, strings.TrimSpace(errOut))
	}
	var v model.RunView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return nil, fmt.Errorf("herd show %s --json: %w", id, err)
	}
	return &v, nil
}

// detach starts `herd run --detach --json ARGS` and returns the run id.
func (f jobsFleet) detach(via int, args ...string) string {
	f.t.Helper()
	out := f.cliOK(via, append([]string{"run", "--detach", "--json"}, args...)...)
	var r model.Run
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.ID == "" {
		f.t.Fatalf("herd run --detach: %v\n%s", err, out)
	}
	return r.ID
}

// waitHosts polls `herd show` through via until cond accepts the view.
func (f jobsFleet) waitHosts(ctx context.Context, via int, id string, cond func(*model.RunView) error) *model.RunView {
	f.t.Helper()
	var v *model.RunView
	err := cluster.WaitFor(ctx, 200*time.Millisecond, func() error {
		var err error
		if v, err = f.show(via, id); err != nil {
			return err
		}
		return cond(v)
	})
	if err != nil {
		f.t.Fatalf("run %s: %v", id, err)
	}
	return v
}

// waitFinished waits until the run is finished and checks its accounting.
func (f jobsFleet) waitFinished(ctx context.Context, via int, id string) *model.RunView {
	f.t.Helper()
	v := f.waitHosts(ctx, via, id, func(v *model.RunView) error {
		if v.Run.Status == model.RunRunning {
			return fmt.Errorf("still running: %v", v.Run.Counts)
		}
		return nil
	})
	checkAccounted(f.t, v)
	return v
}

// checkAccounted asserts that a finished run has every host in exactly one
// terminal state.
func checkAccounted(t *testing.T, v *model.RunView) {
	t.Helper()
	if v.Run.Status == model.RunRunning {
		t.Fatalf("run %s still running: %v", v.Run.ID, v.Run.Counts)
	}
	seen := map[string]bool{}
	for _, h := range v.Hosts {
		if !h.Status.Terminal() || seen[h.Host] {
			t.Fatalf("finished run %s: host %s in %s (seen twice: %v)", v.Run.ID, h.Host, h.Status, seen[h.Host])
		}
		seen[h.Host] = true
	}
	if len(v.Hosts) != v.Run.Total {
		t.Fatalf("run %s has %d hosts, total says %d", v.Run.ID, len(v.Hosts), v.Run.Total)
	}
}

// expectStatus checks each host's status: want[host] if set, else def.
func expectStatus(t *testing.T, v *model.RunView, def model.HostStatus, want map[string]model.HostStatus) {
	t.Helper()
	for _, h := range v.Hosts {
		w, ok := want[h.Host]
		if !ok {
			w = def
		}
		if h.Status != w {
			t.Errorf("run %s: %s is %s (%s), want %s", v.Run.ID, h.Host, h.Status, h.Error, w)
		}
	}
}

// controlStatus returns `herd control status --json` through via.
func (f jobsFleet) controlStatus(via int) (*api.ControlStatus, error) {
	code, out, errOut := f.cli(via, "control", "status", "--json")
	if code != 0 {
		return nil, fmt.Errorf("control status: exit %d: %s", code, errOut)
	}
	var st api.ControlStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// waitVoters waits for a leader with n healthy voters and returns the status.
func (f jobsFleet) waitVoters(ctx context.Context, via, n int) *api.ControlStatus {
	f.t.Helper()
	var st *api.ControlStatus
	err := cluster.WaitFor(ctx, 200*time.Millisecond, func() error {
		var err error
		if st, err = f.controlStatus(via); err != nil {
			return err
		}
		voters := 0
		for _, s := range st.Servers {
			if s.Suffrage == "voter" && s.Healthy {
				voters++
			}
		}
		if st.Leader == "" || voters != n {
			return fmt.Errorf("leader %q, %d healthy voters, want %d", st.Leader, voters, n)
		}
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// Twenty netns hosts running `herd agent` (three voters) plus one bare host
// with a real sshd, driven only through the herd CLI: sh and python
// scripts, failures and exit codes, rerun of failures, execution accounts,
// the output cap and raw bytes, cancel, SSH mode with TOFU host keys, and a
// plain host and then the leader SIGKILLed mid-run. After every run each
// targeted host is in exactly one terminal state.
func TestFleetJobsRun(t *testing.T) {
	const agents, bare = 20, 20 // hosts 0..19 run agents; host 20 runs sshd only
	base := startFleet(t, fleetOptions{hosts: agents + 1, idcs: 1, controlSize: 3, noAgent: []int{bare}})
	f := jobsFleet{fleet: base, t: t}
	ctx := ctxTimeout(t, 4*time.Minute)
	if err := f.waitConverged(ctx, nil); err != nil {
		t.Fatalf("%v\nlog of host 0:\n%s", err, f.logs(0))
	}
	st := f.waitVoters(ctx, 0, 3)
	voters := map[string]bool{}
	for _, s := range st.Servers {
		voters[s.Name] = true
	}
	// via is a plain (non-voter) host the CLI talks to; it is never killed.
	via := -1
	for i := 0; i < agents && via < 0; i++ {
		if !voters[f.hosts.Hosts[i].Name] {
			via = i
		}
	}
	name := func(i int) string { return f.hosts.Hosts[i].Name }
	dead := map[string]bool{} // agents killed so far

	t.Run("sh and python on every host", func(t *testing.T) {
		f := jobsFleet{fleet: base, t: t}
		code, v := f.runJSON(via, "--all", "--", `echo "out of $HERD_HOST"`)
		if code != 0 || v.Run.Total != agents {
			t.Fatalf("exit %d, %d hosts", code, v.Run.Total)
		}
		expectStatus(t, v, model.HostSuccess, nil)
		for _, h := range v.Hosts {
			if got := string(h.Output.Head); got != "out of "+h.Host+"\n" {
				t.Errorf("%s printed %q", h.Host, got)
			}
		}
		py := filepath.Join(t.TempDir(), "who.py")
		if err := os.WriteFile(py, []byte("import os, sys\nprint(os.environ['HERD_HOST'], sys.version_info[0])\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, v = f.runJSON(via, "--all", "--lang", "python", "--script", py)
		if code != 0 || v.Run.Total != agents {
			t.Fatalf("python: exit %d, %d hosts", code, v.Run.Total)
		}
		expectStatus(t, v, model.HostSuccess, nil)
		for _, h := range v.Hosts {
			if got := string(h.Output.Head); got != h.Host+" 3\n" {
				t.Errorf("python on %s printed %q", h.Host, got)
			}
		}
	})

	t.Run("one failing host exits 1 and rerun --failed repeats only it", func(t *testing.T) {
		f := jobsFleet{fleet: base, t: t}
		bad := 4
		flag := filepath.Join(f.hosts.Hosts[bad].SrvDir, "fail-once")
		if err := os.WriteFile(flag, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		code, v := f.runJSON(via, "--all", "--", `if [ -e /srv/fail-once ]; then echo broken; exit 7; fi; echo fine`)
		if code != 1 {
			t.Fatalf("exit %d with a failing host, want 1", code)
		}
		expectStatus(t, v, model.HostSuccess, map[string]model.HostStatus{name(bad): model.HostFailed})
		if h := hostsBy(v)[name(bad)]; h.ExitCode != 7 {
			t.Fatalf("%s: exit code %d, want 7", name(bad), h.ExitCode)
		}
		if err := os.Remove(flag); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := f.cli(via, "rerun", v.Run.ID, "--failed", "--json")
		var rv model.RunView
		if err := json.Unmarshal([]byte(out), &rv); err != nil {
			t.Fatalf("rerun: exit %d, %v\n%s\n%s", code, err, out, errOut)
		}
		checkAccounted(t, &rv)
		if code != 0 || rv.Run.RerunOf != v.Run.ID || rv.Run.Total != 1 || rv.Hosts[0].Host != name(bad) ||
			rv.Hosts[0].Status != model.HostSuccess || string(rv.Hosts[0].Output.Head) != "fine\n" {
			t.Fatalf("rerun: exit %d, %+v hosts %+v", code, rv.Run, rv.Hosts)
		}
	})

	t.Run("accounts: a registered non-root account runs as its uid; an unregistered one is refused", func(t *testing.T) {
		f := jobsFleet{fleet: base, t: t}
		osUser := "herdtest-" + randHex(t, 3)
		if out, err := exec.Command("useradd", "-M", "-s", "/bin/sh", osUser).CombinedOutput(); err != nil {
			t.Skipf("useradd: %v: %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("userdel", osUser).Run() })
		uid, err := exec.Command("id", "-u", osUser).Output()
		if err != nil {
			t.Fatal(err)
		}
		f.cliOK(via, "account", "add", "tester", "--os-user", osUser)
		code, v := f.runJSON(via, "--all", "--user", "tester", "--", "id", "-u")
		if code != 0 {
			t.Fatalf("run as tester: exit %d: %v", code, v.Run.Counts)
		}
		expectStatus(t, v, model.HostSuccess, nil)
		for _, h := range v.Hosts {
			if string(h.Output.Head) != string(uid) {
				t.Errorf("%s ran as uid %q, want %q", h.Host, h.Output.Head, uid)
			}
		}
		if v.Run.OSUser != osUser {
			t.Errorf("run's os user %q, want %q", v.Run.OSUser, osUser)
		}

		code, v = f.runJSON(via, "--all", "--user", "unregistered", "--", "id", "-u")
		if code != 1 || v.Run.Total != agents {
			t.Fatalf("unregistered account: exit %d, %d hosts", code, v.Run.Total)
		}
		for _, h := range v.Hosts {
			if h.Status != model.HostFailed || !strings.Contains(h.Error, `account "unregistered" is not registered`) {
				t.Errorf("%s: %s %q", h.Host, h.Status, h.Error)
			}
		}
	})

	t.Run("output cap truncates with a marker; logs keep raw bytes", func(t *testing.T) {
		f := jobsFleet{fleet: base, t: t}
		target := name(7)
		body := "import sys\nsys.stdout.write('A'*40000 + 'B'*40000)\nsys.stdout.buffer.write(b'\\xff\\xfe\\x00 end')\n"
		py := filepath.Join(t.TempDir(), "big.py")
		if err := os.WriteFile(py, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := f.cli(via, "run", "--hosts", target, "--script", py)
		if code != 0 || !strings.Contains(out, "bytes elided") {
			t.Fatalf("herd run: exit %d, no truncation marker in the summary:\n%.2000s\nstderr:\n%s", code, out, errOut)
		}
		// The run id is in herd runs; take the newest.
		code, out, _ = f.cli(via, "runs", "--json", "-n", "1")
		var list model.RunList
		if err := json.Unmarshal([]byte(out), &list); err != nil || code != 0 || len(list.Runs) != 1 {
			t.Fatalf("herd runs: exit %d %v\n%s", code, err, out)
		}
		id := list.Runs[0].ID
		v, err := f.show(via, id)
		if err != nil {
			t.Fatal(err)
		}
		h := v.Hosts[0]
		if h.Host != target || !h.Output.Truncated || h.Output.Bytes != 80007 {
			t.Fatalf("%s: %s bytes=%d truncated=%v", h.Host, h.Status, h.Output.Bytes, h.Output.Truncated)
		}
		shown := f.cliOK(via, "show", id)
		if !strings.Contains(shown, "bytes elided") {
			t.Fatalf("herd show has no truncation marker:\n%.2000s", shown)
		}
		// herd logs through another host: raw stdout, byte for byte.
		code, out, errOut = f.cli(0, "logs", id, "--host", target)
		want := append(append(bytes.Repeat([]byte("A"), 40000), bytes.Repeat([]byte("B"), 40000)...), "\xff\xfe\x00 end"...)
		if code != 0 || out != string(want) {
			t.Fatalf("herd logs: exit %d, %d bytes (want %d identical); stderr %s", code, len(out), len(want), errOut)
		}
	})

	t.Run("cancel stops every running host", func(t *testing.T) {
		f := jobsFleet{fleet: base, t: t}
		id := f.detach(via, "--all", "--", "sleep", "100")
		f.waitHosts(ctx, via, id, func(v *model.RunView) error {
			if v.Run.Counts[model.HostRunning] != agents {
				return fmt.Errorf("counts %v", v.Run.Counts)
			}
			return nil
		})
		f.cliOK(via, "cancel", id)
		v := f.waitFinished(ctx, via, id)
		expectStatus(t, v, model.HostCancelled, nil)
		if v.Run.Status != model.RunCancelled {
			t.Errorf("run status %s", v.Run.Status)
		}
		if code, _, _ := f.cli(via, "show", id, "--exit-code"); code == 0 {
			t.Error("herd show --exit-code of a cancelled run exits 0")
		}
	})

	t.Run("ssh mode with trust on first use", func(t *testing.T) {
		f := jobsFleet{fleet: base, t: t}
		h := f.hosts.Hosts[bare]
		priv, authorized := sshdtest.NewClientKey(t)
		keyFile := filepath.Join(t.TempDir(), "id_ed25519")
		if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
			t.Fatal(err)
		}
		addr := net.JoinHostPort(h.IP, "22")
		srv := sshdtest.Start(t, sshdtest.Options{ListenAddr: addr, NetNS: h.NS, AuthorizedKey: authorized})
		f.cliOK(via, "host", "add-ssh", "legacy", addr, "--idc", "dc1", "--user", "root", "--key", keyFile)
		t.Cleanup(func() { _, _, _ = f.cli(via, "host", "rm", "legacy") })

		code, v := f.runJSON(via, "--hosts", "legacy", "--", "uname", "-n")
		uname, _ := os.Hostname()
		if code != 0 || len(v.Hosts) != 1 || v.Hosts[0].Status != model.HostSuccess || string(v.Hosts[0].Output.Head) != uname+"\n" {
			t.Fatalf("ssh run: exit %d, %+v", code, v.Hosts)
		}
		var list struct {
			Hosts []model.SSHHost `json:"hosts"`
		}
		out := f.cliOK(via, "host", "list", "--json")
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("host list --json: %v\n%s", err, out)
		}
		if len(list.Hosts) != 1 || !strings.HasPrefix(list.Hosts[0].HostKey, "SHA256:") {
			t.Fatalf("host list: no recorded host key: %s", out)
		}

		// The same address comes back with another host key: refused,
		// and nothing runs.
		srv.Stop()
		sshdtest.Start(t, sshdtest.Options{ListenAddr: addr, NetNS: h.NS, AuthorizedKey: authorized})
		marker := filepath.Join(os.TempDir(), "herd-mitm-"+randHex(t, 4))
		code, v = f.runJSON(via, "--hosts", "legacy", "--", "touch", marker)
		if code != 1 || v.Hosts[0].Status != model.HostUnreachable || !strings.Contains(v.Hosts[0].Error, "host key mismatch") {
			t.Fatalf("changed host key: exit %d, %s %q", code, v.Hosts[0].Status, v.Hosts[0].Error)
		}
		if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
			os.Remove(marker)
			t.Fatal("the script ran on a host whose key changed")
		}
	})

	t.Run("a host SIGKILLed mid-run is unreachable, the rest succeed", func(t *testing.T) {
		f := jobsFleet{fleet: base, t: t}
		victim := -1
		for i := agents - 1; i >= 0 && victim < 0; i-- {
			if i != via && !voters[name(i)] {
				victim = i
			}
		}
		id := f.detach(via, "--all", "--", "sleep 5; echo done")
		f.waitHosts(ctx, via, id, func(v *model.RunView) error {
			if hostsBy(v)[name(victim)].Status != model.HostRunning {
				return fmt.Errorf("%s not running yet: %v", name(victim), v.Run.Counts)
			}
			return nil
		})
		if err := f.procs[victim].Kill(); err != nil {
			t.Fatal(err)
		}
		dead[name(victim)] = true
		v := f.waitFinished(ctx, via, id)
		expectStatus(t, v, model.HostSuccess, map[string]model.HostStatus{name(victim): model.HostUnreachable})
		if code, _, _ := f.cli(via, "show", id, "--exit-code"); code != 1 {
			t.Errorf("herd show --exit-code: %d, want 1", code)
		}
	})

	t.Run("the leader SIGKILLed mid-run: every host accounted for", func(t *testing.T) {
		f := jobsFleet{fleet: base, t: t}
		st, err := f.controlStatus(via)
		if err != nil || st.Leader == "" {
			t.Fatalf("control status: %v %+v", err, st)
		}
		leader := f.index(st.Leader)
		id := f.detach(via, "--all", "--", "sleep 5; echo done")
		f.waitHosts(ctx, via, id, func(v *model.RunView) error {
			if hostsBy(v)[st.Leader].Status != model.HostRunning {
				return fmt.Errorf("%s not running yet: %v", st.Leader, v.Run.Counts)
			}
			return nil
		})
		if err := f.procs[leader].Kill(); err != nil {
			t.Fatal(err)
		}
		dead[st.Leader] = true
		v := f.waitFinished(ctx, via, id)
		want := map[string]model.HostStatus{}
		for n := range dead {
			want[n] = model.HostUnreachable
		}
		expectStatus(t, v, model.HostSuccess, want)
		for _, h := range v.Hosts {
			if h.Status == model.HostSuccess && string(h.Output.Head) != "done\n" {
				t.Errorf("%s printed %q", h.Host, h.Output.Head)
			}
		}
		after, err := f.controlStatus(via)
		if err != nil || after.Leader == "" || after.Leader == st.Leader {
			t.Errorf("after the kill: leader %+v (%v)", after, err)
		}
	})
}
