package jobs

import (
	"encoding/json"
	"time"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/consensus/state"
	"github.com/herd-io/herd/jobs/model"
)

// Raft commands of jobs. The numbers are part of the log format: only ever
// append (see consensus.RegisterCommand).
const (
	RunCreateType   consensus.MessageType = 32
	HostsUpdateType consensus.MessageType = 33
	RunCancelType   consensus.MessageType = 34
	RunsPruneType   consensus.MessageType = 35
)

// Error codes of jobs' commands, beyond consensus's.
const (
	CodeNotFound = "not_found"
	CodeConflict = "conflict"
)

func init() {
	consensus.RegisterCommand(RunCreateType, "run-create", applyRunCreate)
	consensus.RegisterCommand(HostsUpdateType, "hosts-update", applyHostsUpdate)
	consensus.RegisterCommand(RunCancelType, "run-cancel", applyRunCancel)
	consensus.RegisterCommand(RunsPruneType, "runs-prune", applyRunsPrune)
}

// RunCreate commits a new run: its header, its resolved targets, and the
// results of hosts settled at creation (unknown names, refused accounts).
type RunCreate struct {
	Run     model.Run          `json:"run"`
	Targets []model.Target     `json:"targets"`
	Settled []model.HostResult `json:"settled,omitempty"`
}

// HostsUpdate moves hosts of a run forward. Now is the proposer's clock,
// carried in the command so every server computes the same run header.
type HostsUpdate struct {
	IDC     string             `json:"idc"`
	RunID   string             `json:"run_id"`
	Updates []model.HostResult `json:"updates"`
	Now     time.Time          `json:"now"`
}

// HostsUpdateResult tells the proposer which updates took effect; the
// others met a host already terminal (the first terminal status wins).
type HostsUpdateResult struct {
	Applied int  `json:"applied"`
	Ignored int  `json:"ignored"`
	Done    bool `json:"done"` // the run is finished
}

// RunCancel marks a run cancelled: pending hosts become cancelled at once;
// running hosts are stopped by their agents, or settled by the watchdog.
type RunCancel struct {
	IDC   string    `json:"idc"`
	RunID string    `json:"run_id"`
	Now   time.Time `json:"now"`
}

// RunsPrune deletes finished runs created before Before.
type RunsPrune struct {
	IDC    string    `json:"idc"`
	Before time.Time `json:"before"`
	Max    int       `json:"max"` // at most this many runs per command
}

func decodeBody(body json.RawMessage, v any, what string) error {
	if err := json.Unmarshal(body, v); err != nil {
		return consensus.CommandErrorf(consensus.CodeBadRequest, "decode %s: %v", what, err)
	}
	return nil
}

func putJSON(w *state.KVWriter, scope, key string, v any, cas *uint64) (*state.KVEntry, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, consensus.CommandErrorf(consensus.CodeInternal, "encode %s: %v", key, err)
	}
	return w.Set(scope, key, b, cas)
}

func getJSON[T any](w *state.KVWriter, scope, key string) (*T, *state.KVEntry, error) {
	e, err := w.Get(scope, key)
	if err != nil || e == nil {
		return nil, e, err
	}
	var v T
	if err := json.Unmarshal(e.Value, &v); err != nil {
		return nil, e, consensus.CommandErrorf(consensus.CodeInternal, "decode %s: %v", key, err)
	}
	return &v, e, nil
}

var zeroCAS uint64

func applyRunCreate(w *state.KVWriter, body json.RawMessage) (any, error) {
	var c RunCreate
	if err := decodeBody(body, &c, "run-create"); err != nil {
		return nil, err
	}
	r := c.Run
	if err := model.ValidateRunID(r.ID); err != nil {
		return nil, consensus.CommandErrorf(consensus.CodeBadRequest, "%v", err)
	}
	if _, err := putJSON(w, r.IDC, runTargetsKey(r.ID), c.Targets, &zeroCAS); err != nil {
		return nil, err
	}
	targets := make(map[string]bool, len(c.Targets))
	for _, t := range c.Targets {
		targets[t.Name] = true
	}
	for _, h := range c.Settled {
		if !targets[h.Host] || !h.Status.Terminal() {
			return nil, consensus.CommandErrorf(consensus.CodeBadRequest, "settled host %q is not a target or not terminal", h.Host)
		}
		if _, err := putJSON(w, r.IDC, runHostKey(r.ID, h.Host), h, &zeroCAS); err != nil {
			return nil, err
		}
	}
	r.Total = len(c.Targets)
	r.Status = model.RunRunning
	if err := recount(w, &r, r.Created); err != nil {
		return nil, err
	}
	if _, err := putJSON(w, r.IDC, runKey(r.ID), r, &zeroCAS); err != nil {
		return nil, err
	}
	if err := markActive(w, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// loadRun reads a run's header for a command, refusing an unknown run.
func loadRun(w *state.KVWriter, idc, id string) (*model.Run, *state.KVEntry, error) {
	r, e, err := getJSON[model.Run](w, idc, runKey(id))
	if err != nil {
		return nil, nil, err
	}
	if r == nil {
		return nil, nil, consensus.CommandErrorf(CodeNotFound, "no run %s in IDC %s", id, idc)
	}
	return r, e, nil
}

// applyHostsUpdate applies per-host transitions: pending → running →
// terminal, never out of a terminal status; updates for hosts that are not
// targets of the run are ignored.
func applyHostsUpdate(w *state.KVWriter, body json.RawMessage) (any, error) {
	var c HostsUpdate
	if err := decodeBody(body, &c, "hosts-update"); err != nil {
		return nil, err
	}
	idc := c.IDC
	r, re, err := loadRun(w, idc, c.RunID)
	if err != nil {
		return nil, err
	}
	targets, _, err := getJSON[[]model.Target](w, idc, runTargetsKey(c.RunID))
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	if targets != nil {
		for _, t := range *targets {
			known[t.Name] = true
		}
	}
	var res HostsUpdateResult
	for _, u := range c.Updates {
		if !known[u.Host] || (u.Status != model.HostRunning && !u.Status.Terminal()) {
			res.Ignored++
			continue
		}
		cur, _, err := getJSON[model.HostResult](w, idc, runHostKey(c.RunID, u.Host))
		if err != nil {
			return nil, err
		}
		if cur != nil && (cur.Status.Terminal() || (cur.Status == u.Status && u.Status == model.HostRunning)) {
			res.Ignored++
			continue
		}
		if _, err := putJSON(w, idc, runHostKey(c.RunID, u.Host), u, nil); err != nil {
			return nil, err
		}
		if r.Push != nil && u.Status == model.HostSuccess && u.Transfer != nil && u.Transfer.Swarm != "" {
			// The host keeps the file in its store: a holder for later pushes.
			fh := model.FileHolder{Node: u.Node, IDC: idc, Swarm: u.Transfer.Swarm}
			if _, err := putJSON(w, idc, fileHolderKey(r.Push.File.SHA256, u.Node), fh, nil); err != nil {
				return nil, err
			}
		}
		res.Applied++
	}
	if res.Applied > 0 {
		if err := recount(w, r, c.Now); err != nil {
			return nil, err
		}
		if _, err := putJSON(w, idc, runKey(r.ID), r, &re.Version); err != nil {
			return nil, err
		}
		if err := markActive(w, r); err != nil {
			return nil, err
		}
	}
	res.Done = r.Status != model.RunRunning
	return res, nil
}

func applyRunCancel(w *state.KVWriter, body json.RawMessage) (any, error) {
	var c RunCancel
	if err := decodeBody(body, &c, "run-cancel"); err != nil {
		return nil, err
	}
	idc := c.IDC
	r, re, err := loadRun(w, idc, c.RunID)
	if err != nil {
		return nil, err
	}
	if r.Status != model.RunRunning || r.Cancelled {
		return r, nil
	}
	r.Cancelled = true
	targets, _, err := getJSON[[]model.Target](w, idc, runTargetsKey(c.RunID))
	if err != nil {
		return nil, err
	}
	if targets != nil {
		for _, t := range *targets {
			cur, err := w.Get(idc, runHostKey(r.ID, t.Name))
			if err != nil {
				return nil, err
			}
			if cur != nil {
				continue // running or terminal: the agent or the watchdog settles it
			}
			now := c.Now
			h := model.HostResult{Host: t.Name, Kind: t.Kind, Status: model.HostCancelled, ExitCode: -1,
				Error: "the run was cancelled before this host started", Finished: &now}
			if _, err := putJSON(w, idc, runHostKey(r.ID, t.Name), h, &zeroCAS); err != nil {
				return nil, err
			}
		}
	}
	if err := recount(w, r, c.Now); err != nil {
		return nil, err
	}
	if _, err := putJSON(w, idc, runKey(r.ID), r, &re.Version); err != nil {
		return nil, err
	}
	if err := markActive(w, r); err != nil {
		return nil, err
	}
	return r, nil
}

func applyRunsPrune(w *state.KVWriter, body json.RawMessage) (any, error) {
	var c RunsPrune
	if err := decodeBody(body, &c, "runs-prune"); err != nil {
		return nil, err
	}
	entries, err := w.List(c.IDC, prefixRuns)
	if err != nil {
		return nil, err
	}
	pruned := 0
	for _, e := range entries {
		if c.Max > 0 && pruned >= c.Max {
			break
		}
		var r model.Run
		if json.Unmarshal(e.Value, &r) != nil || r.Status == model.RunRunning || !r.Created.Before(c.Before) {
			continue
		}
		hosts, err := w.List(c.IDC, runHostsPrefix(r.ID))
		if err != nil {
			return nil, err
		}
		for _, h := range hosts {
			if err := w.Delete(c.IDC, h.Key, nil); err != nil {
				return nil, err
			}
		}
		if err := w.Delete(c.IDC, activeRunKey(r.ID), nil); err != nil {
			return nil, err
		}
		if err := w.Delete(c.IDC, runTargetsKey(r.ID), nil); err != nil {
			return nil, err
		}
		if err := w.Delete(c.IDC, e.Key, nil); err != nil {
			return nil, err
		}
		pruned++
	}
	return map[string]int{"pruned": pruned}, nil
}

// markActive keeps the run's entry in the active list in step with its
// status.
func markActive(w *state.KVWriter, r *model.Run) error {
	if r.Status == model.RunRunning {
		cur, err := w.Get(r.IDC, activeRunKey(r.ID))
		if err != nil || cur != nil {
			return err
		}
		_, err = w.Set(r.IDC, activeRunKey(r.ID), []byte{}, nil)
		return err
	}
	return w.Delete(r.IDC, activeRunKey(r.ID), nil)
}

// recount recomputes a run's counts from its host records and finishes it
// when every target is terminal.
func recount(w *state.KVWriter, r *model.Run, now time.Time) error {
	entries, err := w.List(r.IDC, runHostsPrefix(r.ID))
	if err != nil {
		return err
	}
	counts := map[model.HostStatus]int{}
	seen := 0
	for _, e := range entries {
		var h model.HostResult
		if err := json.Unmarshal(e.Value, &h); err != nil {
			return consensus.CommandErrorf(consensus.CodeInternal, "decode %s: %v", e.Key, err)
		}
		counts[h.Status]++
		seen++
	}
	if p := r.Total - seen; p > 0 {
		counts[model.HostPending] = p
	}
	r.Counts = counts
	terminal := 0
	for s, n := range counts {
		if s.Terminal() {
			terminal += n
		}
	}
	if terminal == r.Total && r.Status == model.RunRunning {
		r.Status = finalStatus(r, counts)
		t := now
		r.Finished = &t
	}
	return nil
}

func finalStatus(r *model.Run, counts map[model.HostStatus]int) model.RunStatus {
	if r.Cancelled {
		return model.RunCancelled
	}
	ok := counts[model.HostSuccess] + counts[model.HostSkipped]
	if ok == r.Total {
		return model.RunSucceeded
	}
	return model.RunFailed
}
