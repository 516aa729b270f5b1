package cli

import (
	"bytes"
	"net"
	"os"
	"strings"
	"testing"
)

// run executes the CLI in-process and returns exit code and output.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(append([]string{"herd"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsageErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"members", "--nope"}, "flag provided but not defined"},
		{"bad key", []string{"agent", "--data-dir", dir, "--encrypt", "not-base64!"}, "encrypt: not valid base64"},
		{"short key", []string{"agent", "--data-dir", dir, "--encrypt", "AAAA"}, "key is 3 bytes"},
		{"no key", []string{"agent", "--data-dir", dir}, "a cluster key is required"},
		{"bad label", []string{"agent", "--dev", "--data-dir", dir, "--labels", "role"}, "labels:"},
		{"reserved label", []string{"agent", "--dev", "--data-dir", dir, "--labels", "status=x"}, "labels:"},
		{"missing config", []string{"agent", "--dev", "--config", dir + "/none.yaml"}, "config file"},
		{"bad selector", []string{"members", "--select", "a in (b"}, "select:"},
		{"bad status", []string{"members", "--status", "dead"}, `status "dead"`},
		{"ping no arg", []string{"ping"}, "exactly one member"},
		{"completion", []string{"completion", "fish"}, "bash or zsh"},
		{"dev nodes", []string{"dev", "--nodes", "0"}, "nodes: 0"},
		{"bad node address", []string{"--node", "ftp://x", "members"}, "scheme must be http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(t, tt.args...)
			if code != ExitUsage {
				t.Fatalf("exit code %d, want %d; stderr: %s", code, ExitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Fatalf("stderr %q does not mention %q", stderr, tt.want)
			}
		})
	}
}

func TestUnknownConfigKeyExit2(t *testing.T) {
	path := t.TempDir() + "/agent.yaml"
	writeFile(t, path, "name: a\nbogus_key: 1\n")
	code, _, stderr := run(t, "agent", "--dev", "--config", path)
	if code != ExitUsage || !strings.Contains(stderr, "bogus_key") {
		t.Fatalf("exit %d, stderr %q: want 2 naming bogus_key", code, stderr)
	}
}

func TestPortInUseExit1(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, _, stderr := run(t, "agent", "--dev", "--data-dir", t.TempDir(), "--name", "p",
		"--bind", "127.0.0.1:0", "--p2p", "127.0.0.1:0", "--api", l.Addr().String())
	if code != ExitFailure || !strings.Contains(stderr, "address already in use") {
		t.Fatalf("exit %d, stderr %q: want 1 with 'address already in use'", code, stderr)
	}
}

func TestUnreachableNodeExit1(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	code, _, stderr := run(t, "--node", addr, "--token", "x", "members")
	if code != ExitFailure || !strings.Contains(stderr, "cannot reach herd node") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestKeygen(t *testing.T) {
	code, out, _ := run(t, "keygen")
	if code != 0 || len(strings.TrimSpace(out)) != 44 {
		t.Fatalf("keygen: exit %d, out %q", code, out)
	}
	code, out, _ = run(t, "agent", "--help")
	if code != 0 || !strings.Contains(out, "--join") {
		t.Fatalf("agent --help: exit %d", code)
	}
}

func TestHumanFormats(t *testing.T) {
	for n, want := range map[uint64]string{0: "0B", 1023: "1023B", 1536: "1.5KB", 200 << 20: "200.0MB", 3 << 40: "3.0TB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestGlobalFlagsAfterVerb(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	// The address given after the verb is the one dialled.
	code, _, stderr := run(t, "members", "--node", addr, "--token", "x")
	if code != ExitFailure || !strings.Contains(stderr, addr) {
		t.Fatalf("exit %d, stderr %q: want a connect error naming %s", code, stderr, addr)
	}
	code, _, stderr = run(t, "--node", "127.0.0.1:1", "members", "--node", addr, "--token", "x")
	if code != ExitFailure || !strings.Contains(stderr, addr) {
		t.Fatalf("verb-level --node must win: stderr %q", stderr)
	}
	code, out, _ := run(t, "version", "--json")
	if code != 0 || !strings.Contains(out, `"version"`) {
		t.Fatalf("version --json: %q", out)
	}
}
