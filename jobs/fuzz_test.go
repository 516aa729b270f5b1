package jobs

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh"
)

// Wire input from the API (a run request) and from peers (task envelopes,
// raft command bodies) must never panic and never be half-accepted.

func FuzzRunRequest(f *testing.F) {
	f.Add([]byte(`{"targets":{"all":true},"script":{"lang":"sh","body":"aWQ=","timeout":"30s"}}`))
	f.Add([]byte(`{"targets":{"hosts":["a","b"],"selector":"role in (web),!canary"},"script":{"lang":"python","body":"","env":{"A":"1"}}}`))
	f.Add([]byte(`{"targets":{"groups":["g"]},"push":{"file":{"sha256":"00"},"dest":"/opt"}}`))
	members := []mesh.Member{
		{Name: "a", Status: mesh.StatusAlive, Meta: mesh.Meta{IDC: "dc1"}, Labels: map[string]string{"role": "web"}},
		{Name: "b", Status: mesh.StatusFailed, Meta: mesh.Meta{IDC: "dc1"}},
	}
	groups := map[string]model.Group{"g": {Name: "g", Hosts: []string{"a", "zz"}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		var rr model.RunRequest
		if json.Unmarshal(b, &rr) != nil {
			return
		}
		_ = rr.Script.Validate()
		res, err := Resolve(rr.Targets, "dc1", members, groups, nil)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, tg := range res.Targets {
			if seen[tg.Name] {
				t.Fatalf("target %s twice", tg.Name)
			}
			seen[tg.Name] = true
		}
	})
}

func FuzzVerifyTask(f *testing.F) {
	f.Add([]byte(`{"task":"e30=","sig":"AAAA","signer":"12D3KooWExample"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var env Envelope
		if json.Unmarshal(b, &env) != nil {
			return
		}
		if _, err := VerifyTask(env, "a", time.Now(), func(string) bool { return true }); err == nil {
			t.Fatalf("a random envelope verified: %s", b)
		}
	})
}

func FuzzCommandBodies(f *testing.F) {
	f.Add(uint8(0), []byte(`{"run":{"id":"r1","idc":"dc1"},"targets":[{"name":"a","kind":"agent"}]}`))
	f.Add(uint8(1), []byte(`{"idc":"dc1","run_id":"r1","updates":[{"host":"a","status":"success"}]}`))
	f.Add(uint8(2), []byte(`{"idc":"dc1","run_id":"r1"}`))
	f.Add(uint8(3), []byte(`{"idc":"dc1","before":"2030-01-01T00:00:00Z"}`))
	types := []consensus.MessageType{RunCreateType, HostsUpdateType, RunCancelType, RunsPruneType}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		if !json.Valid(body) {
			return
		}
		fs := newFSM(t)
		fs.apply(RunCreateType, RunCreate{Run: model.Run{ID: "r1", IDC: "dc1"}, Targets: targets("a", "b")})
		fs.apply(types[int(which)%len(types)], json.RawMessage(body))
		// Whatever was applied, the run's hosts stay consistent.
		if _, v, err := readRun(nil, fs.f.Store(), runQuery{IDC: "dc1", ID: "r1", Hosts: true}); err == nil && v != nil {
			n := 0
			for _, c := range v.Run.Counts {
				n += c
			}
			if v.Run.Status != model.RunRunning && n != v.Run.Total {
				t.Fatalf("finished run counts %v for %d hosts", v.Run.Counts, v.Run.Total)
			}
		}
	})
}
