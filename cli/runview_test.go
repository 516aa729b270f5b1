package cli

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/herd-io/herd/jobs/model"
)

func TestGroupByOutput(t *testing.T) {
	noAck := result("z", model.HostUnreachable, 0, "")
	noAck.Error = "dead in gossip"
	cantStart := result("y", model.HostFailed, 127, "sh: deploy: not found\n")
	cantStart.Error = "exit 127"
	hosts := []model.HostResult{
		result("web-3", model.HostSuccess, 0, "v42\n"),
		result("web-1", model.HostSuccess, 0, "v42\n"),
		result("web-2", model.HostSuccess, 0, "v41\n"),
		result("db-1", model.HostFailed, 0, "v42\n"), // same output, other status
		result("db-2", model.HostFailed, 2, "v42\n"), // same output, other exit code
		result("db-3", model.HostFailed, 2, "v42\n"),
		result("q", model.HostSuccess, 0, ""), // silent success: its own group
		noAck,                                 // no output, an error: the error list only
		cantStart,                             // output and an error: both
	}
	got := groupByOutput(hosts)
	type g struct {
		status model.HostStatus
		exit   int
		hosts  []string
	}
	var short []g
	for _, x := range got {
		short = append(short, g{x.Status, x.ExitCode, x.Hosts})
	}
	want := []g{
		{model.HostSuccess, 0, []string{"web-1", "web-3"}},
		{model.HostFailed, 2, []string{"db-2", "db-3"}},
		{model.HostSuccess, 0, []string{"q"}},
		{model.HostSuccess, 0, []string{"web-2"}},
		{model.HostFailed, 0, []string{"db-1"}},
		{model.HostFailed, 127, []string{"y"}},
	}
	if !reflect.DeepEqual(short, want) {
		t.Fatalf("groups\n got %+v\nwant %+v", short, want)
	}
}

func TestGroupWithoutDigestFallsBackToContent(t *testing.T) {
	a := result("a", model.HostSuccess, 0, "same\n")
	b := result("b", model.HostSuccess, 0, "same\n")
	c := result("c", model.HostSuccess, 0, "other\n")
	a.Output.SHA256, b.Output.SHA256, c.Output.SHA256 = "", "", ""
	if got := groupByOutput([]model.HostResult{a, b, c}); len(got) != 2 || len(got[0].Hosts) != 2 {
		t.Fatalf("groups %+v, want a+b and c", got)
	}
}

func TestWriteOutputTruncated(t *testing.T) {
	var b bytes.Buffer
	o := model.Output{Bytes: 100, Head: []byte("head"), Tail: []byte("tail\xff"), Truncated: true}
	if err := writeOutput(&b, "r-1", "web-1", model.HostSuccess, o); err != nil {
		t.Fatal(err)
	}
	want := "head\n[... 91 bytes elided; herd logs r-1 --host web-1 for all ...]\ntail\xff\n"
	if b.String() != want {
		t.Fatalf("got %q\nwant %q", b.String(), want)
	}
}

func TestSummaryHostListIsCapped(t *testing.T) {
	var hosts []model.HostResult
	for i := range 60 {
		hosts = append(hosts, result(strings.Repeat("h", 1)+string(rune('A'+i%26))+string(rune('a'+i/26)), model.HostSuccess, 0, "x\n"))
	}
	var b bytes.Buffer
	v := &model.RunView{Run: model.Run{ID: "r-1", Status: model.RunSucceeded, Total: 60}, Hosts: hosts}
	if err := writeSummary(&b, v); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "== 60 hosts (success, exit 0): ") || !strings.Contains(b.String(), ", … (+10 more) ==") {
		t.Fatalf("summary:\n%s", b.String())
	}
}

func TestProgressLine(t *testing.T) {
	r := model.Run{Total: 20, Counts: map[model.HostStatus]int{
		model.HostSuccess: 9, model.HostFailed: 1, model.HostUnreachable: 2, model.HostRunning: 5, model.HostPending: 3}}
	got := progressLine(r, 4*time.Second, true)
	want := "[##############          ] 12/20 done · 3 failed · 5 running · 3 pending · 3.0 hosts/s · 4s"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	// Off a terminal: plain lines, only on change and at most every plainEvery.
	var b bytes.Buffer
	now := time.Unix(1000, 0)
	p := newProgress(&b, false, now)
	p.now = func() time.Time { return now }
	p.update(r)
	p.update(r)
	now = now.Add(plainEvery)
	p.update(r) // unchanged: nothing
	r.Counts[model.HostSuccess]++
	r.Counts[model.HostRunning]--
	p.update(r)
	if n := strings.Count(b.String(), "\n"); n != 2 {
		t.Fatalf("%d plain lines, want 2:\n%s", n, b.String())
	}
	if strings.Contains(b.String(), "\r") {
		t.Fatal("plain progress must not redraw")
	}
}

func TestRunExitCode(t *testing.T) {
	ok := model.Run{Status: model.RunSucceeded, Total: 2, Counts: map[model.HostStatus]int{model.HostSuccess: 2}}
	skipped := model.Run{Status: model.RunFailed, Total: 2, Counts: map[model.HostStatus]int{model.HostSuccess: 1, model.HostSkipped: 1}}
	bad := model.Run{Status: model.RunFailed, Total: 2, Counts: map[model.HostStatus]int{model.HostSuccess: 1, model.HostTimeout: 1}}
	if runExitCode(ok) != 0 || runExitCode(skipped) != 0 || runExitCode(bad) != 1 {
		t.Fatal("exit codes: want 0 for success/skipped, 1 otherwise")
	}
}

func TestSplitShellWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"a b  c", []string{"a", "b", "c"}, false},
		{`'two words' x`, []string{"two words", "x"}, false},
		{`"a \"b\" \$HOME \n"`, []string{`a "b" $HOME \n`}, false},
		{`a\ b c`, []string{"a b", "c"}, false},
		{`''`, []string{""}, false},
		{`x'y'"z"`, []string{"xyz"}, false},
		{`'open`, nil, true},
		{`"open`, nil, true},
		{`trailing\`, nil, true},
	}
	for _, tt := range tests {
		got, err := splitShellWords(tt.in)
		if (err != nil) != tt.err || (!tt.err && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("splitShellWords(%q) = %q, %v; want %q (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestGuessLang(t *testing.T) {
	for _, tt := range []struct{ name, body, want string }{
		{"x", "#!/usr/bin/env python3\n", "python"},
		{"x", "#!/bin/bash -e\n", "bash"},
		{"x.py", "print(1)\n", "python"},
		{"x.sh", "#!/bin/sh\n", "sh"},
		{"x", "echo\n", "sh"},
	} {
		if got := guessLang(tt.name, []byte(tt.body)); got != tt.want {
			t.Errorf("guessLang(%q, %q) = %q, want %q", tt.name, tt.body, got, tt.want)
		}
	}
}
