package jobs

import (
	"encoding/json"
	"sort"

	"github.com/hashicorp/go-memdb"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/consensus/state"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh/p2p"
)

// Reads of jobs' objects that control members serve (consensus.Query).
const (
	queryRun  = "jobs.run"
	queryRuns = "jobs.runs"
)

type runQuery struct {
	IDC   string `json:"idc"`
	ID    string `json:"id"`
	Hosts bool   `json:"hosts"`
}

type runsQuery struct {
	IDC    string          `json:"idc"`
	Status model.RunStatus `json:"status,omitempty"`
	Limit  int             `json:"limit,omitempty"`
}

func init() {
	consensus.RegisterQuery(queryRun, func(ws memdb.WatchSet, store *state.Store, raw json.RawMessage) (uint64, any, error) {
		var q runQuery
		if err := json.Unmarshal(raw, &q); err != nil {
			return 0, nil, p2p.Errorf(p2p.CodeBadRequest, "%s: %v", queryRun, err)
		}
		return readRun(ws, store, q)
	})
	consensus.RegisterQuery(queryRuns, func(ws memdb.WatchSet, store *state.Store, raw json.RawMessage) (uint64, any, error) {
		var q runsQuery
		if err := json.Unmarshal(raw, &q); err != nil {
			return 0, nil, p2p.Errorf(p2p.CodeBadRequest, "%s: %v", queryRuns, err)
		}
		return readRuns(ws, store, q)
	})
}

// readRun returns a run with, when asked, every target's result (pending
// ones made up from the target list). A nil view means no such run.
func readRun(ws memdb.WatchSet, store *state.Store, q runQuery) (uint64, *model.RunView, error) {
	idx, e, err := store.KVGet(ws, q.IDC, runKey(q.ID))
	if err != nil || e == nil {
		return idx, nil, err
	}
	var v model.RunView
	if err := json.Unmarshal(e.Value, &v.Run); err != nil {
		return 0, nil, err
	}
	v.Run.ModifyIndex = e.ModifyIndex
	if !q.Hosts {
		return idx, &v, nil
	}
	_, hosts, err := store.KVList(ws, q.IDC, runHostsPrefix(q.ID))
	if err != nil {
		return 0, nil, err
	}
	byName := make(map[string]model.HostResult, len(hosts))
	for _, he := range hosts {
		var h model.HostResult
		if err := json.Unmarshal(he.Value, &h); err == nil {
			byName[h.Host] = h
		}
	}
	_, te, err := store.KVGet(ws, q.IDC, runTargetsKey(q.ID))
	if err != nil {
		return 0, nil, err
	}
	var targets []model.Target
	if te != nil {
		_ = json.Unmarshal(te.Value, &targets)
	}
	v.Hosts = make([]model.HostResult, 0, len(targets))
	for _, t := range targets {
		h, ok := byName[t.Name]
		if !ok {
			h = model.HostResult{Host: t.Name, Kind: t.Kind, Status: model.HostPending, ExitCode: -1}
		}
		v.Hosts = append(v.Hosts, h)
	}
	sort.Slice(v.Hosts, func(i, j int) bool { return v.Hosts[i].Host < v.Hosts[j].Host })
	return idx, &v, nil
}

// readRuns lists runs newest first, bodies of scripts left out. Run ids
// carry the creation time only to the second, with a random suffix, so
// runs created in the same second are ordered by their Created time, not
// by id.
func readRuns(ws memdb.WatchSet, store *state.Store, q runsQuery) (uint64, *model.RunList, error) {
	idx, entries, err := store.KVList(ws, q.IDC, prefixRuns)
	if err != nil {
		return 0, nil, err
	}
	out := &model.RunList{Runs: []model.Run{}}
	for i := len(entries) - 1; i >= 0; i-- {
		var r model.Run
		if err := json.Unmarshal(entries[i].Value, &r); err != nil {
			continue
		}
		if q.Status != "" && r.Status != q.Status {
			continue
		}
		r.ModifyIndex = entries[i].ModifyIndex
		r.Script.Body = nil
		out.Runs = append(out.Runs, r)
	}
	sort.SliceStable(out.Runs, func(i, j int) bool {
		a, b := out.Runs[i], out.Runs[j]
		if !a.Created.Equal(b.Created) {
			return a.Created.After(b.Created)
		}
		return a.ID > b.ID
	})
	if q.Limit > 0 && len(out.Runs) > q.Limit {
		out.Runs = out.Runs[:q.Limit]
	}
	return idx, out, nil
}

// activeRuns lists the ids of the runs of idc that are running.
func activeRuns(store *state.Store, idc string) ([]string, error) {
	_, entries, err := store.KVList(nil, idc, prefixActiveRuns)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.Key[len(prefixActiveRuns):]
	}
	return ids, nil
}
