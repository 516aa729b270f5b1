package sshexec

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-io/herd/jobs/executor"
)

func TestRemoteCommand(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec executor.Spec
		want string
	}{
		{"plain sh", executor.Spec{Script: []byte("x")}, "exec sh /dev/fd/3 3<&0 </dev/null"},
		{"bash args workdir", executor.Spec{Lang: executor.LangBash, Script: []byte("x"), Args: []string{"a", "b c", ""}, WorkDir: "/var/my dir"},
			"cd '/var/my dir' && exec bash /dev/fd/3 a 'b c' '' 3<&0 </dev/null"},
		{"env and labels sorted, spec wins", executor.Spec{Script: []byte("x"), RunID: "r1", Env: map[string]string{"B": "it's", "HERD_RUN_ID": "mine"}},
			`exec env 'B=it'\''s' HERD_RUN_ID=mine sh /dev/fd/3 3<&0 </dev/null`},
		{"python", executor.Spec{Lang: executor.LangPython, Script: []byte("x")}, "exec " + pythonInterp + " /dev/fd/3 3<&0 </dev/null"},
		{"same user: no sudo", executor.Spec{Script: []byte("x"), User: "root"}, "exec sh /dev/fd/3 3<&0 </dev/null"},
		{"other user: sudo", executor.Spec{Script: []byte("x"), User: "bob"},
			`exec sudo -n -u bob -- sh -c '{ cd ~bob 2>/dev/null || cd /; } && exec sh /dev/fd/3 3<&0 </dev/null'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := remoteCommand(tc.spec, "root", "")
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v\nwant %q", got, err, tc.want)
			}
		})
	}
	if _, err := remoteCommand(executor.Spec{Script: []byte("x"), User: "bob$(id)"}, "root", ""); err == nil {
		t.Fatal("unsafe sudo user accepted")
	}
	got, _ := remoteCommand(executor.Spec{Script: []byte("x")}, "root", "abc")
	if got != "exec env HERD_SSH_RUN=abc sh /dev/fd/3 3<&0 </dev/null" {
		t.Fatalf("token: %q", got)
	}
}

// TestShellQuoteRoundTrip runs quoted words through a real sh.
func TestShellQuoteRoundTrip(t *testing.T) {
	words := []string{"", "plain", "a b", "it's", `"dq"`, "$HOME", "`id`", "a\nb", "\xff\xfe", "-n", "'", "''", `\`, "*", "~root", "a=b"}
	for _, w := range words {
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(w)).Output()
		if err != nil || string(out) != w {
			t.Errorf("shellQuote(%q) = %s: sh printed %q (%v)", w, shellQuote(w), out, err)
		}
	}
}

// TestRemoteCommandThroughShell runs remoteCommand's output with a local sh,
// the script on stdin as sshd would feed it, including through a stand-in
// sudo that just drops its options.
func TestRemoteCommandThroughShell(t *testing.T) {
	bin := t.TempDir()
	fakeSudo := "#!/bin/sh\n# stand-in: sudo -n -u USER -- CMD...\nshift 4\nexec \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "sudo"), []byte(fakeSudo), 0o755); err != nil {
		t.Fatal(err)
	}
	wd := t.TempDir()
	for _, user := range []string{"", "someone"} {
		spec := executor.Spec{
			Lang: executor.LangSh, Script: []byte("echo \"$1|$2|$V|$(pwd)\"; cat; echo end\n"),
			Args: []string{"x y", "it's"}, Env: map[string]string{"V": "$v`"}, WorkDir: wd, User: user,
		}
		cmd, err := remoteCommand(spec, "root", "tok")
		if err != nil {
			t.Fatal(err)
		}
		c := exec.Command("sh", "-c", cmd)
		c.Stdin = bytes.NewReader(spec.Script)
		c.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := c.CombinedOutput()
		want := "x y|it's|$v`|" + wd + "\nend\n"
		if err != nil || string(out) != want {
			t.Fatalf("user %q: %q (%v), want %q", user, out, err, want)
		}
	}
}

func TestKillCommand(t *testing.T) {
	got := killCommand(executor.Spec{}, "root", "t1", "TERM")
	if !strings.Contains(got, "grep -lzx -e HERD_SSH_RUN=t1 /proc/[0-9]*/environ") || !strings.Contains(got, "kill -TERM $pids") {
		t.Fatalf("kill command %q", got)
	}
	if got := killCommand(executor.Spec{User: "bob"}, "root", "t1", "KILL"); !strings.HasPrefix(got, "exec sudo -n -u bob -- sh -c ") {
		t.Fatalf("kill command as other user %q", got)
	}
	// Runs cleanly (and kills nothing) when no process carries the tag.
	if out, err := exec.Command("sh", "-c", killCommand(executor.Spec{}, "root", "no-such-token", "KILL")).CombinedOutput(); err != nil || len(out) != 0 {
		t.Fatalf("kill command: %q, %v", out, err)
	}
}
