package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/node/api"
)

// fakeJobs is an in-memory stand-in for the jobs endpoints of a node: one
// run at a time, which is running for the first poll and finished after.
type fakeJobs struct {
	mu       sync.Mutex
	hosts    []model.HostResult // the run's final results
	logs     map[string][]byte  // full output per host
	requests []model.RunRequest // POST /v1/runs bodies
	rerun    []map[string]bool  // POST rerun bodies
	calls    []string           // "METHOD PATH?QUERY"
	bodies   map[string][]byte  // last body per "METHOD PATH"
	answers  map[string]any     // canned answers per "METHOD PATH"
	created  time.Time
}

func newFakeJobs(hosts ...model.HostResult) *fakeJobs {
	return &fakeJobs{hosts: hosts, logs: map[string][]byte{}, bodies: map[string][]byte{}, answers: map[string]any{},
		created: time.Now().Add(-2 * time.Second)}
}

// start serves f and returns the flags that point the CLI at it.
func (f *fakeJobs) start(t *testing.T) []string {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return []string{"--node", srv.URL, "--token", "tok"}
}

func (f *fakeJobs) run(finished bool) model.Run {
	r := model.Run{ID: "r-1", IDC: "dc1", Status: model.RunRunning, Total: len(f.hosts),
		Counts: map[model.HostStatus]int{}, Created: f.created, ModifyIndex: 1}
	if !finished {
		r.Counts[model.HostRunning] = len(f.hosts)
		return r
	}
	r.Status = model.RunSucceeded
	for _, h := range f.hosts {
		r.Counts[h.Status]++
		if h.Status != model.HostSuccess {
			r.Status = model.RunFailed
		}
	}
	done := f.created.Add(time.Second)
	r.Finished, r.ModifyIndex = &done, 2
	return r
}

func (f *fakeJobs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	f.calls = append(f.calls, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
	key := r.Method + " " + r.URL.Path
	f.bodies[key] = body
	if r.Header.Get("Authorization") != "Bearer tok" {
		writeFake(w, 401, api.ErrorBody{Error: api.Error{Code: api.CodeUnauthorized, Message: "bad token"}})
		return
	}
	if a, ok := f.answers[key]; ok {
		writeFake(w, 200, a)
		return
	}
	q := r.URL.Query()
	switch {
	case key == "POST /v1/runs":
		var req model.RunRequest
		if err := json.Unmarshal(body, &req); err != nil {
			writeFake(w, 400, api.ErrorBody{Error: api.Error{Code: api.CodeBadRequest, Message: err.Error()}})
			return
		}
		f.requests = append(f.requests, req)
		if req.DryRun {
			dr := model.DryRun{IDC: "dc1", Unknown: []string{"ghost"}}
			for _, h := range f.hosts {
				dr.Targets = append(dr.Targets, model.Target{Name: h.Host, Kind: model.TargetAgent})
			}
			writeFake(w, 200, dr)
			return
		}
		writeFake(w, 200, f.run(false))
	case key == "POST /v1/runs/r-1/rerun":
		var in map[string]bool
		_ = json.Unmarshal(body, &in)
		f.rerun = append(f.rerun, in)
		writeFake(w, 200, f.run(false))
	case key == "POST /v1/runs/r-1/cancel":
		r := f.run(false)
		r.Cancelled = true
		writeFake(w, 200, r)
	case key == "GET /v1/runs/r-1":
		// A blocking query: index 0 sees the run running, any later one finished.
		index, _ := strconv.ParseUint(q.Get("index"), 10, 64)
		finished := index > 0 || q.Get("hosts") != "0"
		v := model.RunView{Run: f.run(finished)}
		if q.Get("hosts") != "0" {
			v.Hosts = f.hosts
		}
		w.Header().Set("X-Herd-Index", strconv.FormatUint(v.Run.ModifyIndex, 10))
		writeFake(w, 200, v)
	case key == "GET /v1/runs/r-1/logs":
		host := q.Get("host")
		data, ok := f.logs[host]
		if !ok {
			writeFake(w, 404, api.ErrorBody{Error: api.Error{Code: api.CodeNotFound, Message: "no host " + host}})
			return
		}
		off, _ := strconv.Atoi(q.Get("offset"))
		end := min(off+3, len(data)) // tiny chunks exercise the offset loop
		writeFake(w, 200, model.LogChunk{Host: host, Offset: int64(off), Data: data[off:end], Size: int64(len(data)), Done: end == len(data)})
	case strings.HasPrefix(r.URL.Path, "/v1/runs/"):
		writeFake(w, 404, api.ErrorBody{Error: api.Error{Code: api.CodeNotFound, Message: "run not found"}})
	default:
		writeFake(w, 200, map[string]any{})
	}
}

func writeFake(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// result builds a finished host result with out as its whole output.
func result(host string, status model.HostStatus, exit int, out string) model.HostResult {
	sum := sha256Hex([]byte(out))
	if out == "" {
		sum = ""
	}
	return model.HostResult{Host: host, Kind: model.TargetAgent, Status: status, ExitCode: exit,
		Output: model.Output{Bytes: int64(len(out)), SHA256: sum, Head: []byte(out)}}
}

func sha256Hex(b []byte) string {
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func TestRunFlagsBecomeRequest(t *testing.T) {
	dir := t.TempDir()
	py := filepath.Join(dir, "report")
	writeFile(t, py, "#!/usr/bin/env python3\nprint('hi')\n")
	tests := []struct {
		name string
		args []string
		want model.RunRequest
	}{
		{"inline with targets",
			[]string{"--hosts", "a,b", "--hosts", "c", "--group", "db", "--group", "web", "--idc", "dc1",
				"--select", "role=web,env in (prod,staging),!canary", "--", "uname", "-a"},
			model.RunRequest{
				Targets: model.Targets{IDC: "dc1", Hosts: []string{"a", "b", "c"}, Groups: []string{"db", "web"}, Selector: "role=web,env in (prod,staging),!canary"},
				Script:  model.ScriptSpec{Command: "uname -a", Body: []byte("uname -a\n")},
			}},
		{"script file and options",
			[]string{"--all", "--script", py, "--args", `v42 'two words' "q\"x"`, "--env", "A=1", "--env", "LIST=a,b",
				"--timeout", "2m", "--workdir", "/srv", "--user", "deploy"},
			model.RunRequest{
				Targets: model.Targets{All: true},
				Script: model.ScriptSpec{Lang: "python", Body: []byte("#!/usr/bin/env python3\nprint('hi')\n"),
					Args: []string{"v42", "two words", `q"x`}, Env: map[string]string{"A": "1", "LIST": "a,b"},
					Timeout: model.Duration(2 * time.Minute), WorkDir: "/srv"},
				Account: "deploy",
			}},
		{"library script",
			[]string{"--all", "--lang", "bash", "--script-name", "backup@3fa2b1c4d5e6"},
			model.RunRequest{Targets: model.Targets{All: true}, Script: model.ScriptSpec{Lang: "bash"}, ScriptRef: "backup@3fa2b1c4d5e6"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeJobs(result("a", model.HostSuccess, 0, "ok\n"))
			args := append(append([]string{"run"}, f.start(t)...), tt.args...)
			code, _, stderr := run(t, args...)
			if code != ExitOK {
				t.Fatalf("exit %d; stderr %s", code, stderr)
			}
			if len(f.requests) != 1 {
				t.Fatalf("%d run requests", len(f.requests))
			}
			if got := f.requests[0]; !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("request\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestRunUsageErrorsSendNothing(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad env", []string{"--all", "--env", "NOEQUALS", "--", "id"}, `env "NOEQUALS": want NAME=VALUE`},
		{"bad env name", []string{"--all", "--env", "1A=b", "--", "id"}, `env "1A=b": the name`},
		{"bad timeout", []string{"--all", "--timeout", "soon", "--", "id"}, `timeout "soon"`},
		{"negative timeout", []string{"--all", "--timeout", "-1s", "--", "id"}, `timeout "-1s"`},
		{"no targets", []string{"--", "id"}, "no targets"},
		{"no script", []string{"--all"}, "nothing to run"},
		{"two scripts", []string{"--all", "--script-name", "x", "--", "id"}, "not several"},
		{"bad selector", []string{"--select", "a in (b", "--", "id"}, "select:"},
		{"bad args", []string{"--all", "--args", "'open", "--", "id"}, "unterminated single quote"},
		{"bad lang", []string{"--all", "--lang", "perl", "--", "id"}, `unknown script language "perl"`},
		{"relative workdir", []string{"--all", "--workdir", "tmp", "--", "id"}, "absolute"},
		{"missing file", []string{"--all", "--script", "/nonexistent/x.sh"}, "script:"},
		{"bad version", []string{"--all", "--script-name", "backup@latest"}, "12 hex digits"},
		{"unknown flag", []string{"--all", "--frob", "--", "id"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeJobs()
			code, _, stderr := run(t, append(append([]string{"run"}, f.start(t)...), tt.args...)...)
			if code != ExitUsage {
				t.Fatalf("exit %d, want %d; stderr %q", code, ExitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Fatalf("stderr %q does not mention %q", stderr, tt.want)
			}
			if len(f.calls) != 0 {
				t.Fatalf("a usage error sent requests: %v", f.calls)
			}
		})
	}
}

func TestRunExitCodeAndSummary(t *testing.T) {
	t.Run("all success", func(t *testing.T) {
		f := newFakeJobs(result("b", model.HostSuccess, 0, "Linux\n"), result("a", model.HostSuccess, 0, "Linux\n"))
		code, out, stderr := run(t, append(append([]string{"run"}, f.start(t)...), "--all", "--", "uname")...)
		if code != ExitOK {
			t.Fatalf("exit %d; stderr %s", code, stderr)
		}
		if !strings.Contains(out, "== 2 hosts (success, exit 0): a, b ==\nLinux\n") {
			t.Fatalf("summary does not group a and b:\n%s", out)
		}
		if !strings.Contains(stderr, "run r-1: 2 hosts in dc1") {
			t.Fatalf("stderr does not name the run: %q", stderr)
		}
		// The watch polled without hosts, passing the index back, then read the full view.
		var polls []string
		for _, c := range f.calls {
			if strings.HasPrefix(c, "GET /v1/runs/r-1?") {
				polls = append(polls, c)
			}
		}
		want := []string{"GET /v1/runs/r-1?hosts=0&idc=dc1&wait=30s", "GET /v1/runs/r-1?hosts=0&idc=dc1&index=1&wait=30s", "GET /v1/runs/r-1?idc=dc1"}
		if !reflect.DeepEqual(polls, want) {
			t.Fatalf("polls\n got %q\nwant %q", polls, want)
		}
	})
	t.Run("one failed", func(t *testing.T) {
		unreachable := result("c", model.HostUnreachable, 0, "")
		unreachable.Error = "no acknowledgement within 30s"
		f := newFakeJobs(result("a", model.HostSuccess, 0, "ok\n"), result("b", model.HostFailed, 3, "boom\n"), unreachable)
		code, out, _ := run(t, append(append([]string{"run"}, f.start(t)...), "--all", "--", "deploy")...)
		if code != ExitFailure {
			t.Fatalf("exit %d, want %d", code, ExitFailure)
		}
		for _, want := range []string{
			"run r-1 failed in 1s: 1 success, 1 failed, 1 unreachable of 3 hosts",
			"== 1 host (failed, exit 3): b ==\nboom\n",
			"== 1 host did not run to completion ==",
			"no acknowledgement within 30s",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("summary lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "(unreachable)") {
			t.Errorf("an unreachable host without output got an output group:\n%s", out)
		}
	})
}

func TestRunJSONAndDetach(t *testing.T) {
	f := newFakeJobs(result("a", model.HostSuccess, 0, "ok\n"))
	flags := f.start(t)

	code, out, _ := run(t, append(append([]string{"run"}, flags...), "--json", "--all", "--", "true")...)
	var view model.RunView
	if code != ExitOK || json.Unmarshal([]byte(out), &view) != nil || len(view.Hosts) != 1 || view.Run.ID != "r-1" {
		t.Fatalf("run --json: exit %d, want the final RunView, got %s", code, out)
	}

	code, out, _ = run(t, append(append([]string{"run"}, flags...), "--detach", "--all", "--", "true")...)
	if code != ExitOK || out != "r-1\n" {
		t.Fatalf("run --detach: exit %d, out %q; want the id", code, out)
	}

	code, out, _ = run(t, append(append([]string{"run"}, flags...), "--detach", "--json", "--all", "--", "true")...)
	var r model.Run
	if code != ExitOK || json.Unmarshal([]byte(out), &r) != nil || r.ID != "r-1" || r.Status != model.RunRunning {
		t.Fatalf("run --detach --json: exit %d, want the Run, got %s", code, out)
	}

	code, out, _ = run(t, append(append([]string{"run"}, flags...), "--dry-run", "--json", "--all", "--", "true")...)
	var dr model.DryRun
	if code != ExitOK || json.Unmarshal([]byte(out), &dr) != nil || len(dr.Targets) != 1 || dr.Unknown[0] != "ghost" {
		t.Fatalf("run --dry-run --json: exit %d, got %s", code, out)
	}
	code, out, _ = run(t, append(append([]string{"run"}, flags...), "--dry-run", "--all", "--", "true")...)
	if code != ExitOK || !strings.Contains(out, "1 hosts in dc1 would run") || !strings.Contains(out, "ghost") {
		t.Fatalf("run --dry-run: exit %d, out %s", code, out)
	}
	if !f.requests[len(f.requests)-1].DryRun {
		t.Fatal("dry run request without dry_run")
	}
}

func TestLogsByteForByte(t *testing.T) {
	raw := []byte{'o', 'k', 0xff, 0xfe, '\n', 0xc3, 0x28, 0x00, 'z'} // not UTF-8, with a NUL
	f := newFakeJobs(result("a", model.HostSuccess, 0, "x"), result("b", model.HostSuccess, 0, "y"))
	f.logs["a"] = raw
	f.logs["b"] = []byte("second\n")
	flags := f.start(t)

	code, out, stderr := run(t, append([]string{"logs", "r-1", "--host", "a"}, flags...)...)
	if code != ExitOK || !bytes.Equal([]byte(out), raw) {
		t.Fatalf("logs --host a: exit %d (%s), got %q want %q", code, stderr, out, raw)
	}
	code, out, _ = run(t, append([]string{"logs", "r-1"}, flags...)...)
	want := "==> a <==\n" + string(raw) + "\n==> b <==\nsecond\n"
	if code != ExitOK || out != want {
		t.Fatalf("logs: exit %d, got %q want %q", code, out, want)
	}
	code, _, stderr = run(t, append([]string{"logs", "r-1", "--host", "nope"}, flags...)...)
	if code != ExitFailure || !strings.Contains(stderr, "no host nope") {
		t.Fatalf("logs of an unknown host: exit %d, stderr %q", code, stderr)
	}
}

func TestShowRerunCancel(t *testing.T) {
	f := newFakeJobs(result("a", model.HostSuccess, 0, "ok\n"), result("b", model.HostFailed, 1, "bad\n"))
	flags := f.start(t)

	code, out, _ := run(t, append([]string{"show", "r-1"}, flags...)...)
	if code != ExitOK || !strings.Contains(out, "HOST") || !strings.Contains(out, "== 1 host (failed, exit 1): b ==") {
		t.Fatalf("show: exit %d\n%s", code, out)
	}
	if code, _, _ := run(t, append([]string{"show", "r-1", "--exit-code"}, flags...)...); code != ExitFailure {
		t.Fatalf("show --exit-code: exit %d, want 1", code)
	}
	code, out, _ = run(t, append([]string{"show", "r-1", "--json"}, flags...)...)
	var v model.RunView
	if code != ExitOK || json.Unmarshal([]byte(out), &v) != nil || len(v.Hosts) != 2 {
		t.Fatalf("show --json: %s", out)
	}
	if code, _, stderr := run(t, append([]string{"show", "r-9"}, flags...)...); code != ExitFailure || !strings.Contains(stderr, "run not found") {
		t.Fatalf("show of a missing run: exit %d, %q", code, stderr)
	}

	code, _, _ = run(t, append([]string{"rerun", "r-1", "--failed"}, flags...)...)
	if code != ExitFailure || len(f.rerun) != 1 || !f.rerun[0]["failed"] {
		t.Fatalf("rerun --failed: exit %d, bodies %v", code, f.rerun)
	}

	code, out, _ = run(t, append([]string{"cancel", "r-1"}, flags...)...)
	if code != ExitOK || !strings.Contains(out, "run r-1: cancel requested; 2 hosts still stopping") {
		t.Fatalf("cancel: exit %d, %q", code, out)
	}
	if code, _, stderr := run(t, "cancel", "--node", "127.0.0.1:1"); code != ExitUsage || !strings.Contains(stderr, "exactly one RUN") {
		t.Fatalf("cancel without RUN: exit %d, %q", code, stderr)
	}
}

func TestRunsTable(t *testing.T) {
	f := newFakeJobs()
	done := time.Now()
	f.answers["GET /v1/runs"] = model.RunList{Runs: []model.Run{{
		ID: "r-2", Status: model.RunFailed, Total: 3, Created: done.Add(-5 * time.Minute),
		Counts: map[model.HostStatus]int{model.HostSuccess: 1, model.HostFailed: 1, model.HostTimeout: 1},
		Script: model.ScriptSpec{Name: "backup", Version: "3fa2b1c4d5e6"},
	}}}
	flags := f.start(t)
	code, out, _ := run(t, append([]string{"runs", "--status", "failed", "--limit", "5"}, flags...)...)
	if code != ExitOK {
		t.Fatalf("runs: exit %d", code)
	}
	fields := strings.Fields(strings.Split(out, "\n")[1])
	if want := []string{"r-2", "failed", "1/3", "2", "backup@3fa2b1c4d5e6", "5m"}; !reflect.DeepEqual(fields, want) {
		t.Fatalf("row %q, want %q\n%s", fields, want, out)
	}
	if last := f.calls[len(f.calls)-1]; last != "GET /v1/runs?limit=5&status=failed" {
		t.Fatalf("request %q", last)
	}
	if code, _, _ := run(t, append([]string{"runs", "--status", "done"}, flags...)...); code != ExitUsage {
		t.Fatalf("runs --status done: exit %d", code)
	}
}
