package cli

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
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

// fakeStore is an in-memory node for pushes: the file catalog, uploads
// and one push run that finishes at once with hosts' results.
type fakeStore struct {
	mu      sync.Mutex
	files   map[string]model.File
	upload  []byte // the one upload's bytes
	upName  string
	upSize  int64
	puts    int
	failPut int // this PUT (1-based) keeps half its body and fails with 503
	commit  string
	calls   []string // "METHOD PATH?QUERY"
	bodies  map[string][]byte
	pushes  []model.RunRequest
	hosts   []model.HostResult
	// createErr, when set, answers POST /v1/runs with 400.
	createErr string
}

func newFakeStore(hosts ...model.HostResult) *fakeStore {
	return &fakeStore{files: map[string]model.File{}, bodies: map[string][]byte{}, hosts: hosts}
}

func (f *fakeStore) start(t *testing.T) []string {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return []string{"--node", srv.URL, "--token", "tok"}
}

func (f *fakeStore) add(data []byte, name string) model.File {
	m := md5.Sum(data)
	file := model.File{SHA256: sha256Hex(data), MD5: hex.EncodeToString(m[:]), Size: int64(len(data)), Name: name,
		Origins: []model.FileHolder{{Node: "n1", IDC: "dc1"}}, Added: time.Now().Add(-time.Hour)}
	f.files[file.SHA256] = file
	return file
}

func (f *fakeStore) run() model.Run {
	r := model.Run{ID: "r-1", IDC: "dc1", Status: model.RunSucceeded, Total: len(f.hosts), Counts: map[model.HostStatus]int{},
		Created: time.Now().Add(-2 * time.Second), ModifyIndex: 2}
	if len(f.pushes) > 0 {
		p := *f.pushes[len(f.pushes)-1].Push
		p.File = f.files[p.File.SHA256]
		r.Push = &p
	}
	for _, h := range f.hosts {
		r.Counts[h.Status]++
		if h.Status != model.HostSuccess && h.Status != model.HostSkipped {
			r.Status = model.RunFailed
		}
	}
	done := time.Now()
	r.Finished = &done
	return r
}

func (f *fakeStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	key := r.Method + " " + r.URL.Path
	f.calls = append(f.calls, key+"?"+r.URL.RawQuery)
	f.bodies[key] = body
	fail := func(status int, code, msg string) {
		writeFake(w, status, api.ErrorBody{Error: api.Error{Code: code, Message: msg}})
	}
	upload := func() api.Upload {
		return api.Upload{ID: "u1", Name: f.upName, Size: f.upSize, Received: int64(len(f.upload))}
	}
	switch {
	case key == "GET /v1/files":
		l := model.FileList{}
		for _, file := range f.files {
			l.Files = append(l.Files, file)
		}
		writeFake(w, 200, l)
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/v1/files/"):
		file, ok := f.files[strings.TrimPrefix(r.URL.Path, "/v1/files/")]
		if !ok {
			fail(404, api.CodeNotFound, "no such file")
			return
		}
		writeFake(w, 200, file)
	case r.Method == "DELETE" && strings.HasPrefix(r.URL.Path, "/v1/files/"):
		delete(f.files, strings.TrimPrefix(r.URL.Path, "/v1/files/"))
		writeFake(w, 200, struct{}{})
	case key == "POST /v1/files":
		var b struct{ Path string }
		_ = json.Unmarshal(body, &b)
		writeFake(w, 200, f.add([]byte("on "+r.URL.Query().Get("on")+":"+b.Path), filepath.Base(b.Path)))
	case key == "POST /v1/uploads":
		var b struct {
			Name string
			Size int64
		}
		_ = json.Unmarshal(body, &b)
		f.upName, f.upSize, f.upload = b.Name, b.Size, nil
		writeFake(w, 200, upload())
	case key == "GET /v1/uploads/u1":
		writeFake(w, 200, upload())
	case key == "PUT /v1/uploads/u1":
		f.puts++
		if off, _ := strconv.Atoi(r.URL.Query().Get("offset")); off != len(f.upload) {
			fail(409, "conflict", "wrong offset")
			return
		}
		if f.puts == f.failPut {
			f.upload = append(f.upload, body[:len(body)/2]...)
			fail(503, api.CodeUnavailable, "connection reset")
			return
		}
		f.upload = append(f.upload, body...)
		writeFake(w, 200, upload())
	case key == "POST /v1/uploads/u1/commit":
		var b struct{ SHA256 string }
		_ = json.Unmarshal(body, &b)
		f.commit = b.SHA256
		writeFake(w, 200, f.add(f.upload, f.upName))
	case key == "POST /v1/runs":
		if f.createErr != "" {
			fail(400, api.CodeBadRequest, f.createErr)
			return
		}
		var req model.RunRequest
		_ = json.Unmarshal(body, &req)
		f.pushes = append(f.pushes, req)
		run := f.run()
		run.Status, run.Finished = model.RunRunning, nil
		writeFake(w, 200, run)
	case key == "GET /v1/runs/r-1":
		w.Header().Set("X-Herd-Index", "2")
		writeFake(w, 200, model.RunView{Run: f.run(), Hosts: f.hosts})
	default:
		fail(404, api.CodeNotFound, key)
	}
}

// sent reports whether the fake saw a request starting with prefix.
func (f *fakeStore) sent(prefix string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

// pushed builds a host result of a push.
func pushed(host string, status model.HostStatus, x *model.TransferStats, errMsg string) model.HostResult {
	start := time.Now().Add(-3 * time.Second)
	end := start.Add(1500 * time.Millisecond)
	return model.HostResult{Host: host, Kind: model.TargetAgent, Status: status, Transfer: x, Error: errMsg, Started: &start, Finished: &end}
}

func randomData(t *testing.T, dir string, n int) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	_, _ = rand.Read(data)
	path := filepath.Join(dir, "app.tar")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func TestParseSource(t *testing.T) {
	locals := map[string]bool{"./app.tar": true, "deadbeef00": true, "./a:/b": true}
	isFile := func(p string) bool { return locals[p] }
	tests := []struct {
		src     string
		want    pushSource
		wantErr string
	}{
		{"./app.tar", pushSource{Kind: sourceLocal, Path: "./app.tar"}, ""},
		{"build-1:/srv/app.tar", pushSource{Kind: sourceNode, Host: "build-1", Path: "/srv/app.tar"}, ""},
		{"./a:/b", pushSource{Kind: sourceLocal, Path: "./a:/b"}, ""},
		{"sha256:" + strings.Repeat("ab", 32), pushSource{Kind: sourceCatalog, Ref: strings.Repeat("ab", 32)}, ""},
		{"sha256:3FA2B1C4", pushSource{Kind: sourceCatalog, Ref: "3fa2b1c4"}, ""},
		{"3fa2b1c4", pushSource{Kind: sourceCatalog, Ref: "3fa2b1c4"}, ""},
		{"deadbeef00", pushSource{Kind: sourceLocal, Path: "deadbeef00"}, ""}, // a local file wins over a prefix
		{"sha256:3fa2", pushSource{}, "8 to 64 hex digits"},
		{"sha256:xyz12345", pushSource{}, "8 to 64 hex digits"},
		{"build-1:srv/app.tar", pushSource{}, "must be absolute"},
		{"build-1:/srv/../etc/shadow", pushSource{}, "absolute and clean"},
		{"./missing.tar", pushSource{}, "no such file"},
		{"3fa2b1c", pushSource{}, "no such file"}, // 7 digits: not a prefix
		{"", pushSource{}, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			got, err := parseSource(tt.src, isFile)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				if _, ok := err.(*UsageError); !ok {
					t.Fatalf("err %T, want a UsageError", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// Bad input exits 2 before anything reaches the node: no upload, no run.
func TestPushBadInputExits2BeforeUpload(t *testing.T) {
	path, _ := randomData(t, t.TempDir(), 100)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"relative dest", []string{path, "opt/app.tar", "--all"}, "not absolute"},
		{"dotdot dest", []string{path, "/opt/../etc/app.tar", "--all"}, `contains ".."`},
		{"unclean dest", []string{path, "/opt//app.tar", "--all"}, "not clean"},
		{"trailing slash", []string{path, "/opt/app/", "--all"}, "not clean"},
		{"root dest", []string{path, "/", "--all"}, "root directory"},
		{"bad rate", []string{path, "/opt/app.tar", "--all", "--rate", "fast"}, "rate"},
		{"negative rate", []string{path, "/opt/app.tar", "--all", "--rate", "-5MB"}, "rate"},
		{"zero rate", []string{path, "/opt/app.tar", "--all", "--rate", "0"}, "positive rate"},
		{"bad mode", []string{path, "/opt/app.tar", "--all", "--mode", "0999"}, "octal"},
		{"mode out of range", []string{path, "/opt/app.tar", "--all", "--mode", "17777"}, "out of range"},
		{"bad timeout", []string{path, "/opt/app.tar", "--all", "--timeout", "soon"}, "timeout"},
		{"missing source", []string{"/nonexistent/app.tar", "/opt/app.tar", "--all"}, "no such file"},
		{"no targets", []string{path, "/opt/app.tar"}, ""},
		{"one argument", []string{path, "--all"}, "SRC and DEST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeStore()
			args := append(append([]string{"push"}, f.start(t)...), tt.args...)
			code, _, stderr := run(t, args...)
			if code != ExitUsage {
				t.Fatalf("exit %d, want 2; stderr %s", code, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Fatalf("stderr %q, want %q", stderr, tt.want)
			}
			if len(f.calls) > 0 {
				t.Fatalf("sent %v before rejecting the input", f.calls)
			}
		})
	}
}

// A local file is hashed, found missing from the store, uploaded in chunks
// (one of which fails half-way and is resumed), committed with its
// sha256, and pushed with the flags as the PushSpec.
func TestPushLocalUploadsWithResume(t *testing.T) {
	path, data := randomData(t, t.TempDir(), 10*1024+3)
	sum := sha256Hex(data)
	x := &model.TransferStats{Bytes: int64(len(data)), FromOrigin: int64(len(data)), ByIDC: map[string]int64{"dc1": int64(len(data))}, MD5: "0123456789abcdef0123"}
	f := newFakeStore(pushed("web-1", model.HostSuccess, x, ""),
		pushed("web-2", model.HostSkipped, &model.TransferStats{Identical: true, MD5: "0123456789abcdef0123"}, ""))
	f.failPut = 4
	args := append([]string{"push"}, f.start(t)...)
	args = append(args, path, "/opt/app/app.tar", "--hosts", "web-1,web-2", "--mode", "0755", "--owner", "app:app",
		"--rate", "50MB", "--no-swarm", "--mkdir", "--timeout", "2h", "--chunk-size", "1KiB")
	code, stdout, stderr := run(t, args...)
	if code != ExitOK {
		t.Fatalf("exit %d; stderr %s", code, stderr)
	}
	if !bytes.Equal(f.upload, data) || f.upName != "app.tar" {
		t.Fatalf("the node holds %d bytes named %q, want the file's %d", len(f.upload), f.upName, len(data))
	}
	if f.commit != sum {
		t.Fatalf("commit sent sha256 %q, want %s", f.commit, sum)
	}
	if f.puts != 11 { // 3 chunks, one cut after 512 bytes, then 7 from 3,584
		t.Fatalf("%d PUTs, want 11", f.puts)
	}
	if !strings.Contains(stderr, "resuming at 3.5KB") {
		t.Fatalf("stderr %q does not tell of the resume", stderr)
	}
	want := model.RunRequest{Targets: model.Targets{Hosts: []string{"web-1", "web-2"}}, Push: &model.PushSpec{
		File: model.File{SHA256: sum}, Dest: "/opt/app/app.tar", Mode: "0755", Owner: "app:app", Mkdir: true,
		Rate: 50e6, NoSwarm: true, Timeout: model.Duration(2 * time.Hour)}}
	if len(f.pushes) != 1 || !reflect.DeepEqual(f.pushes[0], want) {
		t.Fatalf("run requests %+v, want %+v", f.pushes, want)
	}
	for _, s := range []string{"web-1  success", "web-2  skipped (identical)", "0123456789ab", "from origin", "1 host already identical"} {
		if !strings.Contains(stdout, s) {
			t.Fatalf("summary lacks %q:\n%s", s, stdout)
		}
	}
}

// The sources other than a fresh local file never upload.
func TestPushSourcesWithoutUpload(t *testing.T) {
	dir := t.TempDir()
	path, data := randomData(t, dir, 3000)
	tests := []struct {
		name  string
		src   func(f *fakeStore) string
		calls []string // requests expected before POST /v1/runs
	}{
		{"local file the store has", func(f *fakeStore) string { f.add(data, "app.tar"); return path },
			[]string{"GET /v1/files/" + sha256Hex(data) + "?"}},
		{"file on a host", func(*fakeStore) string { return "build-1:/srv/app.tar" },
			[]string{"POST /v1/files?on=build-1"}},
		{"sha256", func(f *fakeStore) string { return "sha256:" + f.add(data, "app.tar").SHA256 },
			[]string{"GET /v1/files/" + sha256Hex(data) + "?"}},
		{"prefix", func(f *fakeStore) string {
			f.add([]byte("other"), "other.tar")
			return f.add(data, "app.tar").SHA256[:10]
		}, []string{"GET /v1/files?", "GET /v1/files/" + sha256Hex(data) + "?"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeStore(pushed("web-1", model.HostSuccess, &model.TransferStats{Bytes: 3000, FromPeers: 3000}, ""))
			src := tt.src(f)
			args := append(append([]string{"push"}, f.start(t)...), src, "/opt/app.tar", "--all")
			code, _, stderr := run(t, args...)
			if code != ExitOK {
				t.Fatalf("exit %d; stderr %s", code, stderr)
			}
			if f.sent("POST /v1/uploads") {
				t.Fatal("uploaded a file the store has")
			}
			if got := f.calls[:len(tt.calls)]; !reflect.DeepEqual(got, tt.calls) {
				t.Fatalf("calls %v, want %v first", f.calls, tt.calls)
			}
			if tt.name == "file on a host" && string(f.bodies["POST /v1/files"]) != `{"path":"/srv/app.tar"}` {
				t.Fatalf("add body %s", f.bodies["POST /v1/files"])
			}
			if len(f.pushes) != 1 || f.pushes[0].Push.File.SHA256 == "" {
				t.Fatalf("pushes %+v", f.pushes)
			}
		})
	}
}

func TestPushExitCodes(t *testing.T) {
	ok := &model.TransferStats{Bytes: 10}
	tests := []struct {
		name      string
		hosts     []model.HostResult
		createErr string
		want      int
	}{
		{"all success or skipped", []model.HostResult{pushed("a", model.HostSuccess, ok, ""), pushed("b", model.HostSkipped, &model.TransferStats{Identical: true}, "")}, "", ExitOK},
		{"one failed", []model.HostResult{pushed("a", model.HostSuccess, ok, ""), pushed("b", model.HostFailed, nil, "no space left on device")}, "", ExitFailure},
		{"one unreachable", []model.HostResult{pushed("a", model.HostUnreachable, nil, "dead in gossip")}, "", ExitFailure},
		{"server refuses the push", nil, "dest \"/opt/x\": unknown owner syntax", ExitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeStore(tt.hosts...)
			f.createErr = tt.createErr
			file := f.add([]byte("payload"), "p.bin")
			args := append(append([]string{"push"}, f.start(t)...), "sha256:"+file.SHA256, "/opt/x", "--all")
			code, stdout, stderr := run(t, args...)
			if code != tt.want {
				t.Fatalf("exit %d, want %d; stdout %s stderr %s", code, tt.want, stdout, stderr)
			}
			if tt.name == "one failed" && !strings.Contains(stdout, "no space left on device") {
				t.Fatalf("summary lacks the error:\n%s", stdout)
			}
		})
	}
}

func TestPushJSONIsTheRunView(t *testing.T) {
	x := &model.TransferStats{Bytes: 7, FromOrigin: 7, MD5: "abc"}
	f := newFakeStore(pushed("a", model.HostSuccess, x, ""))
	file := f.add([]byte("payload"), "p.bin")
	args := append(append([]string{"push"}, f.start(t)...), file.SHA256[:8], "/opt/x", "--all", "--json")
	code, stdout, stderr := run(t, args...)
	if code != ExitOK {
		t.Fatalf("exit %d; %s", code, stderr)
	}
	var v model.RunView
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("stdout is not a RunView: %v\n%s", err, stdout)
	}
	if v.Run.Push == nil || len(v.Hosts) != 1 || v.Hosts[0].Transfer == nil || v.Hosts[0].Transfer.FromOrigin != 7 {
		t.Fatalf("view %+v", v)
	}
}

func TestPushSummaryTotals(t *testing.T) {
	const mb = 1 << 20
	hosts := []model.HostResult{
		pushed("a-1", model.HostSuccess, &model.TransferStats{Bytes: 30 * mb, FromOrigin: 30 * mb, ByIDC: map[string]int64{"dc1": 30 * mb}, MD5: "aaaaaaaaaaaaaaaa", DurationSec: 2.5}, ""),
		pushed("a-2", model.HostSuccess, &model.TransferStats{Bytes: 30 * mb, FromPeers: 30 * mb, ByIDC: map[string]int64{"dc1": 20 * mb, "dc2": 10 * mb}, MD5: "aaaaaaaaaaaaaaaa"}, ""),
		pushed("b-1", model.HostSkipped, &model.TransferStats{Identical: true, MD5: "aaaaaaaaaaaaaaaa"}, ""),
		pushed("b-2", model.HostFailed, &model.TransferStats{Bytes: 4 * mb, FromPeers: 4 * mb, Resumed: mb, ByIDC: map[string]int64{"dc2": 4 * mb}}, "no space left on device"),
		{Host: "c-1", Status: model.HostUnreachable, Error: "dead in gossip"},
	}
	got := totalsLine(sumTransfers(hosts))
	want := "moved 64.0MB: 30.0MB from origin, 34.0MB from peers (1.0MB kept from before a restart); by source IDC: dc1 50.0MB, dc2 14.0MB; 1 host already identical"
	if got != want {
		t.Fatalf("totals\n got %s\nwant %s", got, want)
	}

	var b bytes.Buffer
	v := &model.RunView{Run: model.Run{ID: "r-1", Status: model.RunFailed, Total: 5,
		Push: &model.PushSpec{Dest: "/opt/app.tar", File: model.File{Name: "app.tar", Size: 30 * mb, SHA256: strings.Repeat("f", 64), MD5: strings.Repeat("a", 32)}}}, Hosts: hosts}
	if err := writePushSummary(&b, v); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{
		"run r-1 failed: 2 success, 1 failed, 1 unreachable, 1 skipped of 5 hosts",
		"push app.tar (30.0MB, sha256:ffffffffffff, md5:aaaaaaaaaaaa) → /opt/app.tar",
		"HOST  STATUS               BYTES   FROM ORIGIN  FROM PEERS  DURATION  MD5           ERROR",
		"a-1   success              30.0MB  30.0MB       0B          2.5s      aaaaaaaaaaaa  -",
		"a-2   success              30.0MB  0B           30.0MB      1.5s",
		"b-1   skipped (identical)  0B",
		"b-2   failed               4.0MB   0B           4.0MB       1.5s      -             no space left on device",
		"c-1   unreachable          -       -            -           -         -             dead in gossip",
		"\n" + want + "\n",
	} {
		if !strings.Contains(out, s) {
			t.Fatalf("summary lacks %q:\n%s", s, out)
		}
	}
}

func TestPushProgressLine(t *testing.T) {
	const mb = 1 << 20
	r := model.Run{Total: 10, Counts: map[model.HostStatus]int{model.HostSuccess: 3, model.HostSkipped: 1, model.HostFailed: 1, model.HostRunning: 5}}
	hosts := []model.HostResult{
		pushed("a", model.HostSuccess, &model.TransferStats{Bytes: 40 * mb}, ""),
		pushed("b", model.HostSuccess, &model.TransferStats{Bytes: 40 * mb}, ""),
		pushed("c", model.HostSuccess, &model.TransferStats{Bytes: 20 * mb}, ""),
		pushed("d", model.HostSkipped, &model.TransferStats{Identical: true}, ""),
		pushed("e", model.HostFailed, nil, "boom"),
		{Host: "f", Status: model.HostRunning, Transfer: &model.TransferStats{Bytes: 99 * mb}}, // not finished: not counted
	}
	got := pushProgressLine(r, hosts, nil, 10*time.Second, true)
	want := "[############            ] 5/10 hosts · 1 failed · 5 running · 10.0MB/s · ETA 10s · 10s"
	if got != want {
		t.Fatalf("progress\n got %s\nwant %s", got, want)
	}
	if got := pushProgressLine(model.Run{Total: 2, Counts: map[model.HostStatus]int{model.HostPending: 2}}, nil, nil, 0, false); got != "0/2 hosts · 0 failed · 0 running · 2 pending · 0B/s · ETA - · 0s" {
		t.Fatalf("empty progress %q", got)
	}
}

func TestMeterLine(t *testing.T) {
	got := meterLine("uploading app.tar", 50<<20, 200<<20, 5*time.Second)
	want := "uploading app.tar [#####               ]  25% 50.0MB/200.0MB 10.0MB/s ETA 15s"
	if got != want {
		t.Fatalf("meter\n got %q\nwant %q", got, want)
	}
}

func TestFileCommands(t *testing.T) {
	f := newFakeStore()
	flags := f.start(t)
	a := f.add([]byte("alpha"), "alpha.tar")
	b := f.add([]byte("beta"), "beta.tar")
	cmd := func(args ...string) (int, string, string) {
		return run(t, append(append([]string{"file"}, args[0]), append(flags, args[1:]...)...)...)
	}

	code, out, errOut := cmd("list")
	if code != ExitOK || !strings.Contains(out, "SHA256        NAME       SIZE  MD5           ORIGINS  ADDED") ||
		!strings.Contains(out, a.SHA256[:12]+"  alpha.tar  5B    "+a.MD5[:12]+"  n1       1h ago") {
		t.Fatalf("list: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = cmd("show", a.SHA256[:8])
	if code != ExitOK || !strings.Contains(out, "sha256:   "+a.SHA256) || !strings.Contains(out, "origins:  n1 (dc1)") {
		t.Fatalf("show by prefix: exit %d\n%s", code, out)
	}
	code, out, _ = cmd("show", "--json", "sha256:"+b.SHA256)
	var got model.File
	if code != ExitOK || json.Unmarshal([]byte(out), &got) != nil || got.Name != "beta.tar" {
		t.Fatalf("show --json: exit %d\n%s", code, out)
	}
	if code, _, errOut = cmd("show", "abc"); code != ExitUsage || !strings.Contains(errOut, "8 to 64 hex digits") {
		t.Fatalf("short prefix: exit %d %s", code, errOut)
	}
	if code, _, errOut = cmd("show", "00000000"); code != ExitFailure || !strings.Contains(errOut, "no file 00000000") {
		t.Fatalf("unknown prefix: exit %d %s", code, errOut)
	}
	// Two digests sharing a prefix are ambiguous.
	c := model.File{SHA256: a.SHA256[:8] + strings.Repeat("0", 56), Name: "twin"}
	f.files[c.SHA256] = c
	if code, _, errOut = cmd("show", a.SHA256[:8]); code != ExitUsage || !strings.Contains(errOut, "matches 2 files") {
		t.Fatalf("ambiguous prefix: exit %d %s", code, errOut)
	}
	code, out, _ = cmd("rm", b.SHA256[:12])
	if _, still := f.files[b.SHA256]; code != ExitOK || still || !strings.Contains(out, "removed "+b.SHA256) {
		t.Fatalf("rm: exit %d, still there %v\n%s", code, still, out)
	}
	code, out, _ = cmd("add", "--from", "build-1:/srv/app.tar")
	if code != ExitOK || !strings.Contains(out, "added app.tar") || !f.sent("POST /v1/files?on=build-1") {
		t.Fatalf("add --from: exit %d\n%s", code, out)
	}
	if code, _, errOut = cmd("add", "--from", "build-1:srv/app.tar"); code != ExitUsage {
		t.Fatalf("add --from relative: exit %d %s", code, errOut)
	}
}

func TestFileAddUploads(t *testing.T) {
	f := newFakeStore()
	path, data := randomData(t, t.TempDir(), 5000)
	f.failPut = 2
	args := append(append([]string{"file", "add"}, f.start(t)...), path, "--chunk-size", "2KiB", "--json")
	code, out, errOut := run(t, args...)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got model.File
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.SHA256 != sha256Hex(data) || f.commit != got.SHA256 {
		t.Fatalf("added %+v (%v), commit sha %s; want %s", got, err, f.commit, sha256Hex(data))
	}
	if !bytes.Equal(f.upload, data) {
		t.Fatal("uploaded bytes differ")
	}
	if f.sent("GET /v1/files/") {
		t.Fatal("file add needs no catalog look-up before uploading")
	}
}
