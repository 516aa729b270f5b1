package executor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no WorkRoot", Config{}},
		{"relative WorkRoot", Config{WorkRoot: "work"}},
		{"negative KillGrace", Config{WorkRoot: "/tmp/x", KillGrace: -1}},
		{"negative WaitDelay", Config{WorkRoot: "/tmp/x", WaitDelay: -1}},
		{"negative limits", Config{WorkRoot: "/tmp/x", Limits: CaptureLimits{MaxStored: -1}}},
	} {
		if _, err := New(tc.cfg); err == nil {
			t.Errorf("%s: New accepted %+v", tc.name, tc.cfg)
		}
	}

	root := filepath.Join(t.TempDir(), "a", "work")
	e, err := New(Config{WorkRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(root)
	if err != nil || fi.Mode().Perm() != 0o711 {
		t.Errorf("WorkRoot mode = %v (%v), want 0711", fi.Mode().Perm(), err)
	}
	if e.cfg.KillGrace != 3*time.Second || e.cfg.WaitDelay != 2*time.Second || e.cfg.Limits != DefaultCaptureLimits() {
		t.Errorf("defaults = %+v", e.cfg)
	}
}

// Args reach $1.. and sys.argv[1:] intact, env reaches the script, and each
// language really runs under its own interpreter.
func TestLanguages(t *testing.T) {
	e := newTestExecutor(t, nil)
	args := []string{"one", "two words", "", `q'"$x`, "ünï"}
	wantArgs := "[one][two words][][q'\"$x][ünï]"
	for _, tc := range []struct {
		lang   Lang
		script string
		want   string
	}{
		{"", `printf '[%s]' "$@"; echo " $FOO"`, wantArgs + " bar\n"},
		{LangSh, `printf '[%s]' "$@"; echo " $FOO"`, wantArgs + " bar\n"},
		{LangBash, `printf '[%s]' "$@"; echo " $FOO ${BASH_VERSION:+is-bash}"`, wantArgs + " bar is-bash\n"},
		{LangPython, "import os, sys\n" +
			"sys.stdout.write(''.join('[%s]' % a for a in sys.argv[1:]))\n" +
			"print(' ' + os.environ['FOO'], sys.version_info[0])\n", wantArgs + " bar 3\n"},
	} {
		t.Run(string(tc.lang), func(t *testing.T) {
			res, out := runScript(t, context.Background(), e, Spec{
				Lang: tc.lang, Script: []byte(tc.script), Args: args, Env: map[string]string{"FOO": "bar"},
			})
			if res.Status != StatusSuccess || res.ExitCode != 0 || res.Error != "" {
				t.Fatalf("result = %+v, output %q", res, out)
			}
			if string(out) != tc.want {
				t.Errorf("output = %q, want %q", out, tc.want)
			}
			if !bytes.Equal(res.Output.Head, out) || res.Output.Bytes != int64(len(out)) {
				t.Errorf("summary %+v does not match output %q", res.Output, out)
			}
			if res.Started.IsZero() || res.Finished.Before(res.Started) {
				t.Errorf("times: started %v finished %v", res.Started, res.Finished)
			}
		})
	}
}

// The script sees a clean, fixed environment plus Spec.Env (which wins), and
// nothing of the agent's. (Python, not env(1): it adds nothing as long as LANG
// names an installed locale; with an unknown one it would add LC_CTYPE.)
func TestCleanEnvironment(t *testing.T) {
	t.Setenv("HERD_TEST_AGENT_SECRET", "leak")
	e := newTestExecutor(t, nil)
	script := "import os\nfor k in sorted(os.environ): print('%s=%s' % (k, os.environ[k]))\n"
	res, out := runScript(t, context.Background(), e, Spec{
		Lang: LangPython, Script: []byte(script), RunID: "run-42", Host: "web-1",
		Env: map[string]string{"HOME": "/srv/elsewhere", "EXTRA": "x y"},
	})
	if res.Status != StatusSuccess {
		t.Fatalf("result = %+v, output %q", res, out)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"EXTRA=x y",
		"HERD_HOST=web-1",
		"HERD_RUN_ID=run-42",
		"HOME=/srv/elsewhere",
		"LANG=C.UTF-8",
		"LOGNAME=" + me.Username,
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"SHELL=" + loginShell(me.Username),
		"USER=" + me.Username,
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if !slices.Equal(got, want) {
		t.Errorf("environment:\n got %q\nwant %q", got, want)
	}
}

func TestExitStatus(t *testing.T) {
	e := newTestExecutor(t, nil)
	for _, tc := range []struct {
		script   string
		status   string
		exitCode int
		signal   string
	}{
		{"exit 0", StatusSuccess, 0, ""},
		{"echo out; exit 3", StatusFailed, 3, ""},
		{"false", StatusFailed, 1, ""},
		{"kill -KILL $$", StatusFailed, -1, "killed"},
		{"kill -TERM $$", StatusFailed, -1, "terminated"},
	} {
		t.Run(tc.script, func(t *testing.T) {
			res, _ := runScript(t, context.Background(), e, Spec{Script: []byte(tc.script)})
			if res.Status != tc.status || res.ExitCode != tc.exitCode || res.Signal != tc.signal {
				t.Errorf("result = %+v, want status %s exit %d signal %q", res, tc.status, tc.exitCode, tc.signal)
			}
		})
	}
}

// stdout and stderr share one pipe, so their interleaving is exactly the
// order the script wrote in.
func TestOutputInterleaved(t *testing.T) {
	e := newTestExecutor(t, nil)
	res, out := runScript(t, context.Background(), e, Spec{
		Script: []byte("echo 1; echo 2 >&2; echo 3; echo 4 >&2; echo 5"),
	})
	if res.Status != StatusSuccess || string(out) != "1\n2\n3\n4\n5\n" {
		t.Errorf("result %+v, output %q", res, out)
	}
}

func TestOutputNonUTF8(t *testing.T) {
	e := newTestExecutor(t, nil)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for _, tc := range []struct {
		name string
		spec Spec
		want []byte
	}{
		{"sh", Spec{Script: []byte(`printf '\377\376\200\000\303('`)}, []byte{0xff, 0xfe, 0x80, 0, 0xc3, '('}},
		{"python", Spec{Lang: LangPython, Script: []byte("import sys\nsys.stdout.buffer.write(bytes(range(256)))\n")}, all},
		// The script body itself is not UTF-8 and must reach sh unchanged.
		{"script body", Spec{Script: append([]byte("printf '%s' '"), 0xff, 0xfe, '\'')}, []byte{0xff, 0xfe}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, out := runScript(t, context.Background(), e, tc.spec)
			if res.Status != StatusSuccess {
				t.Fatalf("result %+v", res)
			}
			sum := sha256.Sum256(tc.want)
			if !bytes.Equal(out, tc.want) || !bytes.Equal(res.Output.Head, tc.want) || res.Output.SHA256 != hex.EncodeToString(sum[:]) {
				t.Errorf("stored %x head %x sha %s, want %x", out, res.Output.Head, res.Output.SHA256, tc.want)
			}
		})
	}
}

// Output over head+tail is summarized with Truncated; past MaxStored the file
// stops growing while Bytes and SHA256 still cover everything.
func TestOutputTruncatedAndCapped(t *testing.T) {
	lim := CaptureLimits{HeadBytes: 100, TailBytes: 100, MaxStored: 1000}
	e := newTestExecutor(t, func(c *Config) { c.Limits = lim })
	// 50,000 bytes of a non-repeating, non-UTF-8 pattern.
	script := "import sys\nsys.stdout.buffer.write(bytes((i * 7 + i // 256) % 256 for i in range(50000)))\n"
	res, out := runScript(t, context.Background(), e, Spec{Lang: LangPython, Script: []byte(script)})
	if res.Status != StatusSuccess {
		t.Fatalf("result %+v", res)
	}
	all := make([]byte, 50000)
	for i := range all {
		all[i] = byte((i*7 + i/256) % 256)
	}
	checkSummary(t, res.Output, expectSummary(all, lim))
	if !res.Output.Truncated || res.Output.Stored != 1000 {
		t.Errorf("summary %+v: want truncated, 1000 stored", res.Output)
	}
	if !bytes.Equal(out, all[:1000]) {
		t.Errorf("stored file is %d bytes, want the first 1000 produced", len(out))
	}
	elided := res.Output.Bytes - int64(len(res.Output.Head)+len(res.Output.Tail))
	if elided != 49800 || !strings.Contains(TruncationMarker(elided), " 49800 bytes elided") {
		t.Errorf("elided = %d", elided)
	}
}

// The script lives in a 0700 run directory as a 0500 file and both are gone
// after the run.
func TestScriptFileLifecycle(t *testing.T) {
	e := newTestExecutor(t, nil)
	res, out := runScript(t, context.Background(), e, Spec{
		Script: []byte(`f=$(readlink /proc/$$/fd/3); stat -c '%a %u' "$f" "$(dirname "$f")"; dirname "$(dirname "$f")"`),
	})
	if res.Status != StatusSuccess {
		t.Fatalf("result %+v output %q", res, out)
	}
	want := "500 0\n700 0\n" + e.cfg.WorkRoot + "\n"
	if os.Geteuid() != 0 {
		t.Skip("ownership expectations assume root")
	}
	if string(out) != want {
		t.Errorf("script file: %q, want %q", out, want)
	}
	left, err := os.ReadDir(e.cfg.WorkRoot)
	if err != nil || len(left) != 0 {
		t.Errorf("WorkRoot after run: %v, %v; want empty", left, err)
	}
}

func TestWorkDir(t *testing.T) {
	e := newTestExecutor(t, nil)
	dir := t.TempDir()
	res, out := runScript(t, context.Background(), e, Spec{Script: []byte("pwd"), WorkDir: dir})
	if res.Status != StatusSuccess || string(out) != dir+"\n" {
		t.Errorf("explicit workdir: %+v %q", res, out)
	}
	home, _ := os.UserHomeDir()
	res, out = runScript(t, context.Background(), e, Spec{Script: []byte("pwd")})
	if res.Status != StatusSuccess || string(out) != home+"\n" {
		t.Errorf("default workdir: %+v %q, want home %q", res, out, home)
	}
}

// Everything that keeps a script from starting is a failed Result with
// ExitCode -1 and an Error an operator can act on.
func TestFailuresBeforeStart(t *testing.T) {
	e := newTestExecutor(t, nil)
	emptyDir := t.TempDir()
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"unknown user", Spec{User: "herd-no-such-user"}, `user "herd-no-such-user" does not exist on this host`},
		{"missing workdir", Spec{WorkDir: "/nonexistent/herd"}, `workdir "/nonexistent/herd" does not exist`},
		{"workdir is a file", Spec{WorkDir: "/etc/passwd"}, "is not a directory"},
		{"relative workdir", Spec{WorkDir: "tmp"}, "not an absolute path"},
		{"interpreter missing", Spec{Lang: LangPython, Env: map[string]string{"PATH": emptyDir}}, "interpreter python3 or python not found"},
		{"bad env", Spec{Env: map[string]string{"NO-DASH": "x"}}, `env name "NO-DASH" is invalid`},
		{"empty script", Spec{Script: []byte{}}, "script is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.spec.Script == nil {
				tc.spec.Script = []byte("echo should-not-run")
			}
			res, out := runScript(t, context.Background(), e, tc.spec)
			if res.Status != StatusFailed || res.ExitCode != -1 || !strings.Contains(res.Error, tc.want) {
				t.Errorf("result = %+v, want failed/-1 with error containing %q", res, tc.want)
			}
			if len(out) != 0 || res.Output.Bytes != 0 {
				t.Errorf("script ran: output %q", out)
			}
			if res.Finished.IsZero() || res.Output.SHA256 == "" {
				t.Errorf("incomplete result %+v", res)
			}
		})
	}

	t.Run("output path unusable", func(t *testing.T) {
		res := e.Run(context.Background(), Spec{Script: []byte("true")}, filepath.Join(emptyDir, "no", "out"))
		if res.Status != StatusFailed || res.ExitCode != -1 || !strings.Contains(res.Error, "create output file") {
			t.Errorf("result = %+v", res)
		}
	})
	t.Run("not root", func(t *testing.T) {
		ne := newTestExecutor(t, nil)
		ne.geteuid = func() int { return 12345 }
		res, _ := runScript(t, context.Background(), ne, Spec{Script: []byte("id -u"), User: "root"})
		if res.Status != StatusFailed || res.ExitCode != -1 ||
			!strings.Contains(res.Error, `cannot run as user "root": the agent runs as uid 12345, not root`) {
			t.Errorf("result = %+v", res)
		}
	})
	left, _ := os.ReadDir(e.cfg.WorkRoot)
	if len(left) != 0 {
		t.Errorf("run directories left behind: %v", left)
	}
}
