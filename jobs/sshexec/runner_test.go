package sshexec

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-io/herd/jobs/executor"
	"github.com/herd-io/herd/jobs/sshexec/sshdtest"
)

func TestRunLanguagesArgsEnvWorkDir(t *testing.T) {
	e := newTestEnv(t, nil)
	wd := t.TempDir()
	tests := []struct {
		name string
		spec executor.Spec
		want string
	}{
		{
			name: "sh",
			spec: executor.Spec{Lang: executor.LangSh, Script: []byte("echo \"$1|$2|$#|$FOO|$HERD_RUN_ID|$HERD_HOST\"\npwd\n"),
				Args: []string{"a b", "it's $HOME"}, Env: map[string]string{"FOO": "x'y\"z"}, WorkDir: wd, RunID: "r1", Host: "h1"},
			want: "a b|it's $HOME|2|x'y\"z|r1|h1\n" + wd + "\n",
		},
		{
			name: "bash",
			spec: executor.Spec{Lang: executor.LangBash, Script: []byte("a=(\"$@\"); echo \"${#a[@]} ${a[1]} ${BASH_VERSION:+bash}\"\n"), Args: []string{"1", "two words", ""}},
			want: "3 two words bash\n",
		},
		{
			name: "python",
			spec: executor.Spec{Lang: executor.LangPython, Script: []byte("import os, sys\nprint(sys.argv[1:], os.environ['FOO'])\n"),
				Args: []string{"x", "-y"}, Env: map[string]string{"FOO": "bar"}},
			want: "['x', '-y'] bar\n",
		},
		{
			name: "default lang is sh",
			spec: executor.Spec{Script: []byte("echo ok")}, // no trailing newline
			want: "ok\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, out := e.run(t, context.Background(), tc.spec)
			if res.Status != executor.StatusSuccess || res.ExitCode != 0 {
				t.Fatalf("result %+v, output %q", res, out)
			}
			if string(out) != tc.want {
				t.Fatalf("output %q, want %q", out, tc.want)
			}
			if res.Output.Bytes != int64(len(tc.want)) || string(res.Output.Head) != tc.want {
				t.Fatalf("summary %+v", res.Output)
			}
		})
	}
}

func TestRunExitCodes(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, tc := range []struct {
		script string
		status string
		code   int
	}{
		{"exit 0", executor.StatusSuccess, 0},
		{"false", executor.StatusFailed, 1},
		{"exit 3", executor.StatusFailed, 3},
		{"exit 255", executor.StatusFailed, 255},
		{"nosuchcommand-herd", executor.StatusFailed, 127},
	} {
		t.Run(tc.script, func(t *testing.T) {
			res, out := e.run(t, context.Background(), executor.Spec{Script: []byte(tc.script)})
			if res.Status != tc.status || res.ExitCode != tc.code || res.Error != "" {
				t.Fatalf("got %s/%d (%q), want %s/%d; output %q", res.Status, res.ExitCode, res.Error, tc.status, tc.code, out)
			}
		})
	}

	t.Run("killed by a signal", func(t *testing.T) {
		res, _ := e.run(t, context.Background(), executor.Spec{Script: []byte("kill -KILL $$")})
		if res.Status != executor.StatusFailed || res.ExitCode != -1 || res.Signal != "killed" {
			t.Fatalf("got %+v", res)
		}
	})
}

// TestRunNonUTF8Output checks output bytes survive exactly, stdout and
// stderr both captured.
func TestRunNonUTF8Output(t *testing.T) {
	e := newTestEnv(t, nil)
	script := `printf '\377\376\000\200ok\n'; printf '\351t\351\n' >&2`
	res, out := e.run(t, context.Background(), executor.Spec{Script: []byte(script)})
	if res.Status != executor.StatusSuccess {
		t.Fatalf("%+v", res)
	}
	a, b := []byte("\xff\xfe\x00\x80ok\n"), []byte("\xe9t\xe9\n")
	// stdout and stderr are separate SSH streams: their relative order is
	// not guaranteed, their bytes are.
	if !bytes.Equal(out, append(append([]byte{}, a...), b...)) && !bytes.Equal(out, append(append([]byte{}, b...), a...)) {
		t.Fatalf("output %q", out)
	}
	if !bytes.Equal(res.Output.Head, out) {
		t.Fatalf("head %q != file %q", res.Output.Head, out)
	}
}

// TestRunScriptStdinIsDevNull: commands in the script that read stdin must
// not eat the rest of the script (they would with `sh -s`).
func TestRunScriptStdinIsDevNull(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, lang := range []executor.Lang{executor.LangSh, executor.LangBash} {
		t.Run(string(lang), func(t *testing.T) {
			script := "cat\nread x || echo eof\necho after\n"
			res, out := e.run(t, context.Background(), executor.Spec{Lang: lang, Script: []byte(script)})
			if res.Status != executor.StatusSuccess || string(out) != "eof\nafter\n" {
				t.Fatalf("result %+v, output %q", res, out)
			}
		})
	}
}

func TestRunLargeScriptAndOutput(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Limits = executor.CaptureLimits{HeadBytes: 1000, TailBytes: 1000} })
	// A script bigger than the SSH window and pipe buffers.
	var script bytes.Buffer
	for i := 0; i < 20000; i++ {
		script.WriteString("echo line-" + strings.Repeat("x", 40) + "\n")
	}
	res, out := e.run(t, context.Background(), executor.Spec{Script: script.Bytes()})
	if res.Status != executor.StatusSuccess {
		t.Fatalf("%+v", res)
	}
	if len(out) != 20000*(5+40+1) || !res.Output.Truncated || res.Output.Bytes != int64(len(out)) {
		t.Fatalf("output %d bytes, summary bytes=%d truncated=%v", len(out), res.Output.Bytes, res.Output.Truncated)
	}
}

// TestRunTimeoutKillsRemoteTree proves a timed-out script's background child
// and grandchild are gone afterwards.
func TestRunTimeoutKillsRemoteTree(t *testing.T) {
	e := newTestEnv(t, nil)
	m := marker()
	script := "sleep 1000." + m + " &\nsh -c 'sleep 1001." + m + "; :' &\nwait\n"
	res, out := e.run(t, context.Background(), executor.Spec{Script: []byte(script), Timeout: time.Second})
	if res.Status != executor.StatusTimeout || res.ExitCode != -1 || res.Signal == "" || !strings.Contains(res.Error, "timed out after 1s") {
		t.Fatalf("result %+v, output %q", res, out)
	}
	waitFor(t, 10*time.Second, "remote children to die", func() bool { return !pgrep(t, m) })
}

// TestRunCancelKillsRemoteTree cancels mid-run, once the script has said it
// is running.
func TestRunCancelKillsRemoteTree(t *testing.T) {
	e := newTestEnv(t, nil)
	m := marker()
	script := "sleep 1000." + m + " &\necho ready\nwait\n"
	out := filepath.Join(e.dir, "cancel.out")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan executor.Result, 1)
	go func() { done <- e.runner.Run(ctx, e.target, executor.Spec{Script: []byte(script)}, out) }()
	waitForFile(t, out, []byte("ready\n"))
	if !pgrep(t, m) {
		t.Fatal("remote child not running before cancel")
	}
	cancel()
	res := <-done
	if res.Status != executor.StatusCancelled || res.ExitCode != -1 || res.Signal != "terminated" {
		t.Fatalf("result %+v", res)
	}
	waitFor(t, 10*time.Second, "remote child to die", func() bool { return !pgrep(t, m) })
}

// TestRunBackgroundChildDoesNotHoldRun: a daemon that keeps stdout open
// neither keeps Run waiting past WaitDelay nor gets killed by a normal exit.
func TestRunBackgroundChildDoesNotHoldRun(t *testing.T) {
	e := newTestEnv(t, nil)
	m := marker()
	t.Cleanup(func() { _ = execQuiet("pkill", "-f", m) })
	script := "sleep 1000." + m + " &\necho started\n"
	start := time.Now()
	res, out := e.run(t, context.Background(), executor.Spec{Script: []byte(script)})
	if res.Status != executor.StatusSuccess || string(out) != "started\n" {
		t.Fatalf("result %+v, output %q", res, out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Run took %v with a background child holding stdout (WaitDelay 500ms)", d)
	}
	if !pgrep(t, m) {
		t.Fatal("background child was killed by a normal exit")
	}
}

func TestHostKeyTrustOnFirstUse(t *testing.T) {
	e := newTestEnv(t, nil)
	if _, found, _ := e.keys.Lookup(context.Background(), e.srv.Addr); found {
		t.Fatal("key recorded before any connection")
	}
	for i := 0; i < 2; i++ {
		res, _ := e.run(t, context.Background(), executor.Spec{Script: []byte("true")})
		if res.Status != executor.StatusSuccess {
			t.Fatalf("run %d: %+v", i, res)
		}
		got, found, _ := e.keys.Lookup(context.Background(), e.srv.Addr)
		if !found || !bytes.Equal(got, e.srv.HostKey.Marshal()) {
			t.Fatalf("run %d: recorded key %x, want the server's", i, got)
		}
	}
}

// TestHostKeyChangedIsRefused restarts the host with a new key on the same
// address: the run is unreachable, says why, and nothing runs.
func TestHostKeyChangedIsRefused(t *testing.T) {
	e := newTestEnv(t, nil)
	flag := filepath.Join(e.dir, "ran")
	spec := executor.Spec{Script: []byte("touch " + flag)}
	if res, _ := e.run(t, context.Background(), spec); res.Status != executor.StatusSuccess {
		t.Fatalf("first run: %+v", res)
	}
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	oldKey := e.srv.HostKey
	e.srv.Stop()
	_, authorized := sshdtest.NewClientKey(t)
	auth := append(authorizedLine(t, e.target.Key), authorized...)
	srv2 := sshdtest.Start(t, sshdtest.Options{ListenAddr: e.srv.Addr, AuthorizedKey: auth})

	res, out := e.run(t, context.Background(), spec)
	want := "host key mismatch for " + e.srv.Addr + ": recorded " + fingerprint(oldKey.Marshal()) + ", offered " + fingerprint(srv2.HostKey.Marshal())
	if res.Status != StatusUnreachable || res.Error != want || res.ExitCode != -1 {
		t.Fatalf("result %+v, output %q; want error %q", res, out, want)
	}
	if _, err := os.Stat(flag); !os.IsNotExist(err) {
		t.Fatalf("script ran on a host with a changed key (stat: %v)", err)
	}
	if got, _, _ := e.keys.Lookup(context.Background(), e.srv.Addr); !bytes.Equal(got, oldKey.Marshal()) {
		t.Fatal("recorded key was replaced")
	}
}

func TestRunUnreachable(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.DialTimeout = 2 * time.Second })
	spec := executor.Spec{Script: []byte("true")}

	t.Run("auth failed", func(t *testing.T) {
		other, _ := sshdtest.NewClientKey(t)
		tg := e.target
		tg.Key = other
		res, _ := e.runOn(t, context.Background(), tg, spec)
		if res.Status != StatusUnreachable || !strings.HasPrefix(res.Error, "ssh auth failed for root@"+e.srv.Addr+": ") {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		tg := e.target
		tg.Addr = freeClosedPort(t)
		res, _ := e.runOn(t, context.Background(), tg, spec)
		if res.Status != StatusUnreachable || !strings.Contains(res.Error, "dial tcp "+tg.Addr) || !strings.Contains(res.Error, "connection refused") {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("host died mid-run", func(t *testing.T) {
		out := filepath.Join(e.dir, "died.out")
		done := make(chan executor.Result, 1)
		go func() {
			done <- e.runner.Run(context.Background(), e.target, executor.Spec{Script: []byte("echo ready; sleep 1000")}, out)
		}()
		waitForFile(t, out, []byte("ready\n"))
		e.srv.Stop()
		res := <-done
		if res.Status != StatusUnreachable || res.ExitCode != -1 || !strings.Contains(res.Error, "lost before the script finished") {
			t.Fatalf("%+v", res)
		}
		if string(res.Output.Head) != "ready\n" {
			t.Fatalf("output %q", res.Output.Head)
		}
	})
}

func TestRunInvalidInputsFail(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, tc := range []struct {
		name string
		tg   func(Target) Target
		spec executor.Spec
		want string
	}{
		{"empty script", nil, executor.Spec{}, "script is empty"},
		{"bad env", nil, executor.Spec{Script: []byte("true"), Env: map[string]string{"A-B": "1"}}, "env name"},
		{"bad sudo user", nil, executor.Spec{Script: []byte("true"), User: "bob;rm"}, "not a valid account name"},
		{"no credentials", func(tg Target) Target { tg.Key = nil; return tg }, executor.Spec{Script: []byte("true")}, "neither a private key nor a password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := e.target
			if tc.tg != nil {
				tg = tc.tg(tg)
			}
			res, _ := e.runOn(t, context.Background(), tg, tc.spec)
			if res.Status != executor.StatusFailed || res.ExitCode != -1 || !strings.Contains(res.Error, tc.want) {
				t.Fatalf("%+v; want error containing %q", res, tc.want)
			}
		})
	}
	t.Run("cancelled before a slot", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		full, _ := New(Config{HostKeys: e.keys, Concurrency: 1})
		full.slots <- struct{}{} // every slot taken
		res := full.Run(ctx, e.target, executor.Spec{Script: []byte("true")}, filepath.Join(e.dir, "noslot.out"))
		if res.Status != executor.StatusCancelled {
			t.Fatalf("%+v", res)
		}
	})
}

// TestRunConcurrencyBound: with Concurrency 2, five parallel Runs never have
// more than two sessions open at once.
func TestRunConcurrencyBound(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Concurrency = 2 })
	var open, peak atomic.Int64
	e.runner.sessionHook = func(delta int) {
		n := open.Add(int64(delta))
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				return
			}
		}
	}
	var wg sync.WaitGroup
	results := make([]executor.Result, 5)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = e.run(t, context.Background(), executor.Spec{Script: []byte("sleep 0.2")})
		}()
	}
	wg.Wait()
	for i, res := range results {
		if res.Status != executor.StatusSuccess {
			t.Fatalf("run %d: %+v", i, res)
		}
	}
	if p := peak.Load(); p > 2 || p < 1 {
		t.Fatalf("peak open sessions %d, want 1..2", p)
	}
	if open.Load() != 0 {
		t.Fatalf("%d sessions still open", open.Load())
	}
}
