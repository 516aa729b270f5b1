package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/herd-io/herd/integration/cluster"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/jobs/sshexec/sshdtest"
)

// fanoutTool is one column of the fan-out comparison: how to run `hostname`
// on every host once, and what it took.
type fanoutTool struct {
	name   string
	bin    string // looked up on PATH; missing means "not installed"
	run    func(ctx context.Context) error
	walls  []time.Duration
	server []time.Duration // herd only: run created → finished
	note   string
}

// BenchmarkFanoutNetns runs `hostname` on the same 20 netns hosts with herd
// (`herd run --all --json`, each host running `herd agent`), with
// parallel-ssh and with ansible ad-hoc (both against a real sshd on every
// host), and reports the median wall time of each from exec to exit, plus
// herd's server-side time. A peer tool that is not installed is reported
// as such instead of failing the benchmark.
func BenchmarkFanoutNetns(b *testing.B) {
	const hosts = 20
	f := startFleet(b, fleetOptions{hosts: hosts, idcs: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if err := f.waitConverged(ctx, nil); err != nil {
		b.Fatal(err)
	}

	dir := b.TempDir()
	priv, authorized := sshdtest.NewClientKey(b)
	keyFile := filepath.Join(dir, "id_ed25519")
	var hostfile, inventory strings.Builder
	inventory.WriteString("[fleet]\n")
	for _, h := range f.hosts.Hosts {
		sshdtest.Start(b, sshdtest.Options{ListenAddr: net.JoinHostPort(h.IP, "22"), NetNS: h.NS, AuthorizedKey: authorized})
		fmt.Fprintln(&hostfile, h.IP)
		fmt.Fprintf(&inventory, "%s ansible_host=%s\n", h.Name, h.IP)
	}
	fmt.Fprintf(&inventory, "[fleet:vars]\nansible_user=root\nansible_ssh_private_key_file=%s\n"+
		"ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"+
		"ansible_python_interpreter=/usr/bin/python3\n", keyFile)
	files := map[string]string{"id_ed25519": string(priv), "hosts": hostfile.String(), "inventory": inventory.String()}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			b.Fatal(err)
		}
	}

	herdEnv := []string{"HERD_NODE=" + net.JoinHostPort(f.hosts.Hosts[0].IP, "7600"), "HERD_TOKEN=" + f.token}
	herd := &fanoutTool{name: "herd", bin: cluster.Binary(b)}
	herd.run = func(ctx context.Context) error {
		start := time.Now()
		out, err := execTool(ctx, herdEnv, herd.bin, "run", "--all", "--json", "--", "hostname")
		wall := time.Since(start)
		if err != nil {
			return err
		}
		var v model.RunView
		if err := json.Unmarshal(out, &v); err != nil {
			return fmt.Errorf("herd run --json: %w", err)
		}
		if v.Run.Counts[model.HostSuccess] != hosts || v.Run.Finished == nil {
			return fmt.Errorf("herd run: %v, want %d successes", v.Run.Counts, hosts)
		}
		herd.walls = append(herd.walls, wall)
		herd.server = append(herd.server, v.Run.Finished.Sub(v.Run.Created))
		return nil
	}
	pssh := &fanoutTool{name: "parallel-ssh", bin: "parallel-ssh"}
	pssh.run = func(ctx context.Context) error {
		start := time.Now()
		out, err := execTool(ctx, nil, pssh.bin, "-h", filepath.Join(dir, "hosts"), "-l", "root", "-p", fmt.Sprint(hosts),
			"-x", "-i "+keyFile+" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR", "-i", "hostname")
		wall := time.Since(start)
		if err != nil {
			return err
		}
		if n := bytes.Count(out, []byte("[SUCCESS]")); n != hosts {
			return fmt.Errorf("parallel-ssh: %d successes, want %d:\n%s", n, hosts, out)
		}
		pssh.walls = append(pssh.walls, wall)
		return nil
	}
	ansible := &fanoutTool{name: "ansible", bin: "ansible"}
	ansibleEnv := []string{"ANSIBLE_HOST_KEY_CHECKING=False", "ANSIBLE_LOCAL_TEMP=" + filepath.Join(dir, "ansible-tmp"),
		"ANSIBLE_NOCOLOR=1", "ANSIBLE_RETRY_FILES_ENABLED=False"}
	ansible.run = func(ctx context.Context) error {
		start := time.Now()
		out, err := execTool(ctx, ansibleEnv, ansible.bin, "all", "-i", filepath.Join(dir, "inventory"),
			"-m", "command", "-a", "hostname", "-f", fmt.Sprint(hosts))
		wall := time.Since(start)
		if err != nil {
			return err
		}
		if n := bytes.Count(out, []byte("| CHANGED |")); n != hosts {
			return fmt.Errorf("ansible: %d hosts changed, want %d:\n%s", n, hosts, out)
		}
		ansible.walls = append(ansible.walls, wall)
		return nil
	}

	tools := []*fanoutTool{herd, pssh, ansible}
	for _, tl := range tools {
		path, err := exec.LookPath(tl.bin)
		if err != nil {
			tl.note = "not installed"
			tl.run = nil
			continue
		}
		tl.bin = path
	}
	// One unmeasured round: the leader is elected, caches and sshd's
	// first fork are warm.
	if err := waitHerdReady(ctx, herd); err != nil {
		b.Fatal(err)
	}
	herd.walls, herd.server = nil, nil

	// b.N rounds: `-benchtime 5x` gives the median of 5. (The testing
	// package first probes with b.N = 1, which is a round of its own.)
	runs := b.N
	b.ResetTimer()
	for i := 0; i < runs; i++ {
		for _, tl := range tools {
			if tl.run == nil {
				continue
			}
			if err := tl.run(ctx); err != nil {
				b.Fatalf("%s: %v", tl.name, err)
			}
		}
	}
	b.StopTimer()

	fmt.Printf("\n`hostname` on %d netns hosts, %d runs each; wall = exec to exit; target: herd <= 0.5 s\n", hosts, runs)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "tool\twall median\twall min\twall max\tserver-side median\t")
	for _, tl := range tools {
		if len(tl.walls) == 0 {
			fmt.Fprintf(w, "%s\t%s\t-\t-\t-\t\n", tl.name, tl.note)
			continue
		}
		server := "-"
		if len(tl.server) > 0 {
			server = fmtSec(median(tl.server))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t\n", tl.name, fmtSec(median(tl.walls)),
			fmtSec(slices.Min(tl.walls)), fmtSec(slices.Max(tl.walls)), server)
		b.ReportMetric(median(tl.walls).Seconds(), metricName(tl.name)+"-s/op")
	}
	if len(herd.server) > 0 {
		b.ReportMetric(median(herd.server).Seconds(), "herd-server-s/op")
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
}

// waitHerdReady retries a herd round until the control group takes runs
// and every host answers.
func waitHerdReady(ctx context.Context, herd *fanoutTool) error {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return cluster.WaitFor(wctx, 500*time.Millisecond, func() error { return herd.run(wctx) })
}

// execTool runs argv with extra environment and returns its stdout; a
// non-zero exit is an error carrying both outputs.
func execTool(ctx context.Context, env []string, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w\nstdout:\n%s\nstderr:\n%s", filepath.Base(argv[0]), err, out.Bytes(), errOut.Bytes())
	}
	return out.Bytes(), nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func fmtSec(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

// metricName turns a tool name into a benchmark unit prefix (no dashes
// inside: parallel-ssh → pssh).
func metricName(tool string) string {
	if tool == "parallel-ssh" {
		return "pssh"
	}
	return tool
}
