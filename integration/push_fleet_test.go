package integration_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-io/herd/integration/cluster"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/node/api"
)

// pushFleet is a netns fleet that pushes files: helpers to make files on
// hosts, start pushes through the API or the CLI and check what landed.
type pushFleet struct {
	*fleet
}

// subFleet is base with t as the test that fails: a subtest's view.
func subFleet(base *fleet, t testing.TB) pushFleet {
	f := *base
	f.t = t
	return pushFleet{&f}
}

func (f pushFleet) name(i int) string { return f.hosts.Hosts[i].Name }

func (f pushFleet) names(idx ...int) []string {
	out := make([]string, len(idx))
	for k, i := range idx {
		out[k] = f.name(i)
	}
	return out
}

// writeRandom writes size pseudo-random bytes (ChaCha8, fresh seed) at
// path on host i, seen there as path under /srv, and returns their SHA-256.
func (f pushFleet) writeRandom(i int, path string, size int64) string {
	f.t.Helper()
	full := f.srvPath(i, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		f.t.Fatal(err)
	}
	out, err := os.Create(full)
	if err != nil {
		f.t.Fatal(err)
	}
	var seed [32]byte
	copy(seed[:], randHex(f.t, 16))
	h := sha256.New()
	src := io.LimitReader(mrand.NewChaCha8(seed), size)
	if _, err := io.Copy(io.MultiWriter(out, h), src); err != nil {
		f.t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		f.t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// srvPath maps a path under /srv on host i to the root namespace.
func (f pushFleet) srvPath(i int, path string) string {
	rel, ok := strings.CutPrefix(path, "/srv/")
	if !ok {
		f.t.Fatalf("%s is not under /srv", path)
	}
	return filepath.Join(f.hosts.Hosts[i].SrvDir, rel)
}

// addFile has host i add a file it has at path to the content store.
func (f pushFleet) addFile(ctx context.Context, i int, path string) *model.File {
	f.t.Helper()
	file, err := f.client(i).AddNodeFile(ctx, path)
	if err != nil {
		f.t.Fatalf("add %s on %s: %v", path, f.name(i), err)
	}
	return file
}

// startPush creates a push run through host via's API.
func (f pushFleet) startPush(ctx context.Context, via int, targets model.Targets, spec model.PushSpec) *model.Run {
	f.t.Helper()
	r, err := f.client(via).CreateRun(ctx, model.RunRequest{Targets: targets, Push: &spec})
	if err != nil {
		f.t.Fatalf("push %s to %s: %v", spec.File.SHA256, spec.Dest, err)
	}
	return r
}

// waitRun follows a run with blocking queries until it is finished.
func (f pushFleet) waitRun(ctx context.Context, via int, id, idc string) *model.RunView {
	f.t.Helper()
	c := f.client(via)
	var index uint64
	for {
		v, next, err := c.Run(ctx, id, api.RunQuery{IDC: idc, Index: index, Wait: 10 * time.Second})
		if err != nil {
			if ctx.Err() != nil {
				f.t.Fatalf("run %s: %v", id, err)
			}
			// A restarting host may be the one we ask through: retry.
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if v.Run.Status != model.RunRunning {
			return v
		}
		index = next
	}
}

// sha256At returns the SHA-256 of path on host i as sha256sum there sees it.
func (f pushFleet) sha256At(ctx context.Context, i int, path string) string {
	f.t.Helper()
	out, err := f.hosts.Hosts[i].Exec(ctx, "sha256sum", path)
	if err != nil {
		f.t.Fatalf("%v", err)
	}
	sum, _, _ := strings.Cut(string(out), " ")
	return sum
}

// pushCLI runs `herd push ARGS --json` through host via's API and returns
// its exit code, the run (nil without JSON) and stderr.
func (f pushFleet) pushCLI(ctx context.Context, via int, args ...string) (int, *model.RunView, string) {
	f.t.Helper()
	code, out, errOut := f.herd(ctx, via, append([]string{"push", "--json"}, args...)...)
	var v model.RunView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return code, nil, errOut
	}
	return code, &v, errOut
}

// herd runs the CLI against host via's API.
func (f pushFleet) herd(ctx context.Context, via int, args ...string) (int, string, string) {
	f.t.Helper()
	cmd := exec.CommandContext(ctx, cluster.Binary(f.t), args...)
	cmd.Env = append(os.Environ(), "HERD_NODE="+net.JoinHostPort(f.hosts.Hosts[via].IP, "7600"), "HERD_TOKEN="+f.token)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String(), errOut.String()
	}
	if err != nil {
		f.t.Fatalf("herd %v: %v", args, err)
	}
	return 0, out.String(), errOut.String()
}

// waitLeader waits until host via's IDC has a control-group leader and
// returns its name.
func (f pushFleet) waitLeader(ctx context.Context, via int) string {
	f.t.Helper()
	var leader string
	err := cluster.WaitFor(ctx, 200*time.Millisecond, func() error {
		st, err := f.client(via).ControlStatus(ctx, "")
		if err != nil {
			return err
		}
		if st.Leader == "" {
			return errors.New("no leader yet")
		}
		leader = st.Leader
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return leader
}

// restart SIGKILLs host i's agent, waits for it to exit and starts it
// again on the same data dir.
func (f pushFleet) restart(ctx context.Context, i int, extra []string) {
	f.t.Helper()
	if err := f.procs[i].Kill(); err != nil {
		f.t.Fatal(err)
	}
	if err := f.procs[i].Wait(ctx); err == nil || ctx.Err() != nil {
		f.t.Fatalf("%s: agent did not die of SIGKILL (%v)", f.name(i), err)
	}
	f.start(i, extra)
}

// hostsByName indexes a run's results.
func hostsByName(v *model.RunView) map[string]model.HostResult {
	m := map[string]model.HostResult{}
	for _, h := range v.Hosts {
		m[h.Host] = h
	}
	return m
}

// serverSide is how long the control group took from creating a run to
// finishing it.
func serverSide(v *model.RunView) time.Duration {
	if v.Run.Finished == nil {
		return 0
	}
	return v.Run.Finished.Sub(v.Run.Created)
}

const (
	mib = int64(1) << 20
	mb  = int64(1000 * 1000)
)

// Twenty netns hosts in one IDC on 500 Mbit links push files from h1:
// 200 MB to every host through the CLI (identical bytes and MD5), a second
// push that is all skipped, bad input refused, a host SIGKILLed mid-fetch
// that resumes after restart, a holder serving corrupt pieces, and a full
// disk on one target.
func TestPushFleet(t *testing.T) {
	const hosts, full = 20, 3 // host 3 gets a 4 MiB tmpfs at /srv/full
	base := startFleet(t, fleetOptions{hosts: hosts, idcs: 1, rateMbit: 500, prelude: map[int]string{
		full: "mkdir -p /srv/full && mount -t tmpfs -o size=4m herd-full /srv/full || exit 1",
	}})
	f := pushFleet{base}
	ctx := ctxTimeout(t, 5*time.Minute)
	if err := f.waitConverged(ctx, nil); err != nil {
		t.Fatalf("%v\nlog of host 0:\n%s", err, f.logs(0))
	}
	leader := f.waitLeader(ctx, 0)
	t.Logf("control leader: %s", leader)
	all := model.Targets{All: true}

	var big *model.File
	t.Run("200 MB to 20 hosts, then all skipped", func(t *testing.T) {
		f := subFleet(base, t)
		const size = 200 * mb
		want := f.writeRandom(0, "/srv/src/big.bin", size)
		start := time.Now()
		code, v, errOut := f.pushCLI(ctx, 1, "h1:/srv/src/big.bin", "/srv/dst/big.bin", "--all", "--mkdir", "--mode", "0640")
		wall := time.Since(start)
		if code != 0 || v == nil {
			t.Fatalf("herd push: exit %d, run %v\n%s", code, v, errOut)
		}
		checkAccounted(t, v)
		var fromOrigin int64
		for i := range hosts {
			h := hostsByName(v)[f.name(i)]
			if h.Status != model.HostSuccess || h.Transfer == nil || h.Transfer.MD5 != v.Run.Push.File.MD5 {
				t.Fatalf("%s: %s %q %+v", h.Host, h.Status, h.Error, h.Transfer)
			}
			if got := f.sha256At(ctx, i, "/srv/dst/big.bin"); got != want {
				t.Errorf("%s: sha256 %s, want %s", h.Host, got, want)
			}
			if i > 0 && h.Transfer.FromOrigin+h.Transfer.FromPeers < size {
				t.Errorf("%s: %d from the origin + %d from peers < %d", h.Host, h.Transfer.FromOrigin, h.Transfer.FromPeers, size)
			}
			fromOrigin += h.Transfer.FromOrigin
		}
		t.Logf("first push: %.1f s wall (CLI exec to exit, file add included), %.1f s server-side; the origin sent %.2f copies",
			wall.Seconds(), serverSide(v).Seconds(), float64(fromOrigin)/float64(size))
		big = &v.Run.Push.File

		start = time.Now()
		again := f.waitRun(ctx, 0, f.startPush(ctx, 0, all, model.PushSpec{File: *big, Dest: "/srv/dst/big.bin", Mode: "0640"}).ID, "")
		wall = time.Since(start)
		for _, h := range again.Hosts {
			if h.Status != model.HostSkipped || h.Transfer == nil || !h.Transfer.Identical || h.Transfer.Bytes != 0 {
				t.Errorf("second push, %s: %s %+v", h.Host, h.Status, h.Transfer)
			}
		}
		// Every host hashes its 200 MB DEST (MD5) to compare: 4 GB of MD5
		// on this machine's cores, so the bound is loose; the figure is logged.
		t.Logf("second push (all identical): %.2f s server-side, %.2f s wall", serverSide(again).Seconds(), wall.Seconds())
		if d := serverSide(again); d > 15*time.Second {
			t.Errorf("second push took %s server-side", d)
		}
	})
	if big == nil {
		t.FailNow()
	}

	t.Run("bad input", func(t *testing.T) {
		f := subFleet(base, t)
		src := "sha256:" + big.SHA256
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"relative dest", []string{src, "srv/x", "--all"}, "not absolute"},
			{"dotdot dest", []string{src, "/srv/../etc/x", "--all"}, `contains ".."`},
			{"unclean dest", []string{src, "/srv//x", "--all"}, "not clean"},
			{"mode out of range", []string{src, "/srv/x", "--all", "--mode", "017777"}, "out of range"},
			{"mode not octal", []string{src, "/srv/x", "--all", "--mode", "0689"}, "not an octal number"},
			{"unknown sha256", []string{"sha256:" + strings.Repeat("ab", 32), "/srv/x", "--all"}, "no file"},
			{"missing file on host", []string{"h2:/srv/no/such/file", "/srv/x", "--all"}, "no such file"},
		} {
			code, _, errOut := f.herd(ctx, 0, append([]string{"push"}, tc.args...)...)
			t.Logf("%s: exit %d: %s", tc.name, code, strings.TrimSpace(errOut))
			// A source only the cluster can check (unknown digest, no such
			// file on the host) comes back as the API's not_found, which
			// the CLI exits 1 for; the rest is refused before any request.
			remote := strings.HasPrefix(tc.name, "unknown") || strings.HasPrefix(tc.name, "missing")
			if (code != 2 && !(remote && code == 1)) || !strings.Contains(strings.ToLower(errOut), strings.ToLower(tc.want)) {
				t.Errorf("%s: exit %d, want 2 and %q in stderr:\n%s", tc.name, code, tc.want, errOut)
			}
		}
		// The API refuses the same with 400, whatever a client checks.
		for name, p := range map[string]model.PushSpec{
			"relative dest":  {File: *big, Dest: "srv/x"},
			"dotdot dest":    {File: *big, Dest: "/srv/../etc/x"},
			"mode too large": {File: *big, Dest: "/srv/x", Mode: "017777"},
			"unknown sha256": {File: model.File{SHA256: strings.Repeat("ab", 32)}, Dest: "/srv/x"},
			"bad owner":      {File: *big, Dest: "/srv/x", Owner: "a b"},
		} {
			_, err := f.client(0).CreateRun(ctx, model.RunRequest{Targets: all, Push: &p})
			var re *api.RequestError
			if !errors.As(err, &re) || re.Status != 400 {
				t.Errorf("API, %s: err = %v, want a 400", name, err)
			} else {
				t.Logf("API, %s: %v", name, err)
			}
		}
		// An owner no host knows: each host fails clearly, nothing lands.
		code, v, errOut := f.pushCLI(ctx, 0, src, "/srv/dst/owned.bin", "--hosts", "h2,h3", "--owner", "no-such-user-herd")
		if code != 1 || v == nil {
			t.Fatalf("unknown owner: exit %d, want 1\n%s", code, errOut)
		}
		for _, h := range v.Hosts {
			if h.Status != model.HostFailed || !strings.Contains(h.Error, "no-such-user-herd") {
				t.Errorf("unknown owner, %s: %s %q", h.Host, h.Status, h.Error)
			}
			if out, err := f.hosts.Hosts[f.index(h.Host)].Exec(ctx, "ls", "-A", "/srv/dst"); err != nil || strings.Contains(string(out), "owned") || strings.Contains(string(out), ".herd-tmp") {
				t.Errorf("unknown owner, %s left files: %s %v", h.Host, out, err)
			}
		}
		t.Logf("unknown owner: %q", v.Hosts[0].Error)
	})

	// The victim fetches a fresh 80 MB file over a 40 Mbit link and is
	// SIGKILLed between 20 % and 80 %; restarted on the same data dir it
	// keeps its verified pieces.
	victim := hosts - 1
	if f.name(victim) == leader {
		victim--
	}
	var resumeFile *model.File
	var resumeSHA string
	t.Run("SIGKILL mid-transfer, restart, resume", func(t *testing.T) {
		f := subFleet(base, t)
		const size = 80 * mb
		resumeSHA = f.writeRandom(0, "/srv/src/resume.bin", size)
		resumeFile = f.addFile(ctx, 0, "/srv/src/resume.bin")
		if err := f.hosts.Hosts[victim].Shape(40); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := f.hosts.Hosts[victim].Shape(500); err != nil {
				t.Error(err)
			}
		}()
		targets := model.Targets{Hosts: f.names(0, 1, 2, 4, 5, 6, 7, 8, 9, victim)}
		run := f.startPush(ctx, 0, targets, model.PushSpec{File: *resumeFile, Dest: "/srv/dst/resume.bin", Mkdir: true})
		vname := f.name(victim)
		var atKill int64
		err := cluster.WaitFor(ctx, 100*time.Millisecond, func() error {
			p, err := f.client(0).PushProgress(ctx, "", run.ID)
			if err != nil {
				return err
			}
			done := p.Hosts[vname]
			if done > size*8/10 {
				t.Fatalf("%s passed 80 %% (%d bytes) before it could be killed", vname, done)
			}
			if done <= size*2/10 {
				return fmt.Errorf("%s at %d bytes", vname, done)
			}
			atKill = done
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		f.restart(ctx, victim, nil)
		t.Logf("%s SIGKILLed at %d of %d bytes (%.0f %%), restarted", vname, atKill, size, 100*float64(atKill)/float64(size))
		v := f.waitRun(ctx, 0, run.ID, "")
		checkAccounted(t, v)
		h := hostsByName(v)[vname]
		if h.Status != model.HostSuccess || h.Transfer == nil {
			t.Fatalf("%s: %s %q\nlog:\n%s", vname, h.Status, h.Error, f.logs(victim))
		}
		tr := h.Transfer
		t.Logf("%s after restart: resumed %d, fetched %d (from origin %d, peers %d)", vname, tr.Resumed, tr.Bytes, tr.FromOrigin, tr.FromPeers)
		if tr.Resumed <= 0 || tr.Bytes >= size || tr.Resumed+tr.Bytes < size {
			t.Errorf("%s: resumed %d + fetched %d of %d: want kept pieces and less than the file fetched again", vname, tr.Resumed, tr.Bytes, size)
		}
		for _, hr := range v.Hosts {
			if hr.Status != model.HostSuccess {
				t.Errorf("%s: %s %q", hr.Host, hr.Status, hr.Error)
			}
		}
		if got := f.sha256At(ctx, victim, "/srv/dst/resume.bin"); got != resumeSHA {
			t.Errorf("%s: sha256 %s, want %s", vname, got, resumeSHA)
		}
	})
	if resumeFile == nil {
		t.FailNow()
	}

	t.Run("a holder serving corrupt data", func(t *testing.T) {
		f := subFleet(base, t)
		// Host 5 holds resume.bin from the last push: 1 MiB in the middle
		// of its stored object is overwritten, and it is restarted so it
		// seeds the corrupt object.
		const bad = 5
		obj := f.srvPath(bad, "/srv/herd/content/objects/"+resumeFile.SHA256[:2]+"/"+resumeFile.SHA256)
		// A host reports success once DEST is installed; its copy into
		// the store finishes in the background, the record last.
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := cluster.WaitFor(sctx, 50*time.Millisecond, func() error {
			_, err := os.Stat(obj + ".json")
			return err
		}); err != nil {
			t.Fatalf("host %d never stored the object: %v", bad, err)
		}
		if err := os.Chmod(obj, 0o644); err != nil {
			t.Fatal(err)
		}
		junk := make([]byte, mib)
		copy(junk, bytes.Repeat([]byte("corrupt!"), int(mib/8)))
		fh, err := os.OpenFile(obj, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.WriteAt(junk, resumeFile.Size/2); err != nil {
			t.Fatal(err)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
		f.restart(ctx, bad, nil)
		if err := f.waitConverged(ctx, nil); err != nil {
			t.Fatal(err)
		}
		// The other earlier holders are slowed down so the fresh hosts
		// take much of the file from the corrupt holder and the origin.
		slow := []int{1, 2, 4, 6, 7, 8, 9, victim}
		for _, i := range slow {
			if err := f.hosts.Hosts[i].Shape(20); err != nil {
				t.Fatal(err)
			}
		}
		defer func() {
			for _, i := range slow {
				if err := f.hosts.Hosts[i].Shape(500); err != nil {
					t.Error(err)
				}
			}
		}()
		fresh := []int{10, 11, 12, 13, 14, 15, 16, 17}
		if victim != 18 {
			fresh = append(fresh, 18)
		}
		// The corrupt holder itself is a target too (a new DEST): what it
		// installs must be the file, not its damaged copy.
		targets := model.Targets{Hosts: f.names(append(fresh, bad)...)}
		v := f.waitRun(ctx, 0, f.startPush(ctx, 0, targets, model.PushSpec{File: *resumeFile, Dest: "/srv/dst2/resume.bin", Mkdir: true}).ID, "")
		checkAccounted(t, v)
		var fromBad int64
		for _, h := range v.Hosts {
			if h.Transfer != nil {
				fromBad += h.Transfer.FromNode[f.name(bad)]
			}
			i := f.index(h.Host)
			if h.Status != model.HostSuccess {
				t.Errorf("%s: %s %q", h.Host, h.Status, h.Error)
				continue
			}
			if got := f.sha256At(ctx, i, "/srv/dst2/resume.bin"); got != resumeSHA {
				t.Errorf("%s: installed sha256 %s, want %s", h.Host, got, resumeSHA)
			}
		}
		// The corrupt holder found its stored copy damaged while
		// installing it, dropped it and fetched the file again.
		if tr := hostsByName(v)[f.name(bad)].Transfer; tr == nil || tr.Bytes+tr.Resumed != resumeFile.Size {
			t.Errorf("%s installed from its damaged copy without fetching again: %+v", f.name(bad), tr)
		}
		banned := 0
		for _, i := range fresh {
			if strings.Contains(f.logs(i), "smart banned peer") {
				banned++
			}
		}
		t.Logf("fresh hosts took %d bytes from the corrupt holder %s; %d of %d smart-banned a peer for bad data",
			fromBad, f.name(bad), banned, len(fresh))
	})

	t.Run("full disk on one target", func(t *testing.T) {
		f := subFleet(base, t)
		f.writeRandom(0, "/srv/src/16m.bin", 16*mib)
		file := f.addFile(ctx, 0, "/srv/src/16m.bin")
		v := f.waitRun(ctx, 0, f.startPush(ctx, 0, all, model.PushSpec{File: *file, Dest: "/srv/full/x.bin", Mkdir: true}).ID, "")
		checkAccounted(t, v)
		fname := f.name(full)
		for _, h := range v.Hosts {
			if h.Host == fname {
				if h.Status != model.HostFailed || !strings.Contains(h.Error, "no space left on device") {
					t.Errorf("%s (4 MiB tmpfs): %s %q", h.Host, h.Status, h.Error)
				}
				t.Logf("%s: %s %q", h.Host, h.Status, h.Error)
				continue
			}
			if h.Status != model.HostSuccess {
				t.Errorf("%s: %s %q", h.Host, h.Status, h.Error)
			}
		}
		// Only the agent's mount namespace has the tmpfs: look in there.
		out, err := exec.CommandContext(ctx, "nsenter", "-t", fmt.Sprint(f.procs[full].Pid()), "-m", "--", "sh", "-c",
			"findmnt -n -o FSTYPE /srv/full; ls -A /srv/full").CombinedOutput()
		if err != nil {
			t.Fatalf("nsenter: %v: %s", err, out)
		}
		if got := strings.TrimSpace(string(out)); got != "tmpfs" {
			t.Errorf("%s: /srv/full holds %q, want an empty tmpfs (no partial file)", fname, got)
		}
	})
}

// Two IDCs of ten hosts: a 100 MB file added in dc1 is pushed to every
// host of dc2, and the bytes dc2 takes from dc1 stay near one to two file
// sizes (a few gateways fetch across, the rest from them), not one per host.
func TestPushFleetTwoIDCs(t *testing.T) {
	const hosts = 20
	f := pushFleet{startFleetWAN(t, hosts)}
	ctx := ctxTimeout(t, 4*time.Minute)
	if err := f.waitConverged(ctx, nil); err != nil {
		t.Fatalf("%v\nlog of host 0:\n%s", err, f.logs(0))
	}
	f.waitLeader(ctx, 0)
	f.waitLeader(ctx, 1)
	const size = 100 * mb
	want := f.writeRandom(0, "/srv/src/wan.bin", size) // host 0 is in dc1
	var file *model.File
	// The catalog entry reaches dc2 by replication.
	err := cluster.WaitFor(ctx, 200*time.Millisecond, func() error {
		if file == nil {
			file = f.addFile(ctx, 0, "/srv/src/wan.bin")
		}
		_, err := f.client(1).File(ctx, file.SHA256)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	v := f.waitRun(ctx, 1, f.startPush(ctx, 0, model.Targets{All: true, IDC: "dc2"},
		model.PushSpec{File: *file, Dest: "/srv/dst/wan.bin", Mkdir: true}).ID, "dc2")
	checkAccounted(t, v)
	if v.Run.Total != hosts/2 {
		t.Fatalf("push to dc2 has %d hosts, want %d", v.Run.Total, hosts/2)
	}
	var cross, local int64
	for _, h := range v.Hosts {
		i := f.index(h.Host)
		if f.idcs[i] != "dc2" || h.Status != model.HostSuccess || h.Transfer == nil {
			t.Fatalf("%s (%s): %s %q", h.Host, f.idcs[i], h.Status, h.Error)
		}
		cross += h.Transfer.ByIDC["dc1"]
		local += h.Transfer.ByIDC["dc2"]
		if other := h.Transfer.Bytes - h.Transfer.ByIDC["dc1"] - h.Transfer.ByIDC["dc2"]; other != 0 {
			t.Errorf("%s: %d bytes of unknown IDC (by IDC %v)", h.Host, other, h.Transfer.ByIDC)
		}
		if got := f.sha256At(ctx, i, "/srv/dst/wan.bin"); got != want {
			t.Errorf("%s: sha256 %s, want %s", h.Host, got, want)
		}
	}
	t.Logf("dc2 took %.2f file sizes from dc1 and %.2f within dc2 (10 hosts); %.1f s server-side",
		float64(cross)/float64(size), float64(local)/float64(size), serverSide(v).Seconds())
	if cross > size*5/2 {
		t.Errorf("dc2 took %d bytes (%.2f file sizes) across the WAN, want <= 2.5", cross, float64(cross)/float64(size))
	}
}

// startFleetWAN starts hosts agents in two IDCs (even hosts dc1, odd dc2)
// whose voters join each other's WAN pool.
func startFleetWAN(t *testing.T, hosts int) *fleet {
	t.Helper()
	// The WAN addresses are only known once the netns fleet exists, so
	// the agents are started here rather than by startFleet.
	f := startFleet(t, fleetOptions{hosts: hosts, idcs: 2, rateMbit: 500, noAgent: seq(hosts)})
	var wan []string
	for _, h := range f.hosts.Hosts {
		wan = append(wan, net.JoinHostPort(h.IP, "7948"))
	}
	f.noAgent = map[int]bool{}
	for i := range f.hosts.Hosts {
		f.start(i, []string{"--wan-join", strings.Join(wan, ","), "--primary-idc", "dc1"})
	}
	return f
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
