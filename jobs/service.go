package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
)

// Service is what the node's HTTP API calls: runs and the catalog, from
// any node, for any IDC. It holds no state of its own; runs live in the
// control groups, outputs on the executors' disks.
type Service struct {
	name, idc string
	srv       *consensus.Server
	lan       *mesh.Mesh
	host      *p2p.Host
	worker    *Worker
	uploads   sync.Map // upload id → *sync.Mutex
}

// ServiceConfig wires a Service to the node's parts.
type ServiceConfig struct {
	Name, IDC string
	Server    *consensus.Server
	LAN       *mesh.Mesh
	Host      *p2p.Host
	Worker    *Worker // this node's worker: local logs are read directly
}

// NewService returns the API-facing service.
func NewService(cfg ServiceConfig) *Service {
	return &Service{name: cfg.Name, idc: cfg.IDC, srv: cfg.Server, lan: cfg.LAN, host: cfg.Host, worker: cfg.Worker}
}

// idcOr returns idc, or this node's IDC when empty.
func (s *Service) idcOr(idc string) string {
	if idc == "" {
		return s.idc
	}
	return idc
}

// CreateRun creates a run (or resolves a dry run) in the IDC the request
// names, through that IDC's leader.
func (s *Service) CreateRun(ctx context.Context, rr model.RunRequest) (*CreateResponse, error) {
	if err := rr.Targets.Validate(); err != nil {
		return nil, badRequest("%v", err)
	}
	if rr.ScriptRef == "" && !rr.DryRun && rr.Push == nil {
		if err := rr.Script.Validate(); err != nil {
			return nil, badRequest("%v", err)
		}
	}
	idc := s.idcOr(rr.Targets.IDC)
	req := CreateRequest{Request: rr, ID: NewRunID(time.Now()), CreatedBy: s.name, IDC: idc}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	raw, err := s.srv.RelayIDC(ctx, idc, protoCreate, body)
	if err != nil {
		return nil, err
	}
	var out CreateResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("decode the created run: %w", err)
	}
	return &out, nil
}

// GetRun reads a run, blocking per opts. A missing run is a not_found
// error.
func (s *Service) GetRun(ctx context.Context, idc, id string, hosts bool, opts consensus.QueryOptions) (*model.RunView, consensus.QueryMeta, error) {
	if err := model.ValidateRunID(id); err != nil {
		return nil, consensus.QueryMeta{}, badRequest("%v", err)
	}
	idc = s.idcOr(idc)
	var v *model.RunView
	meta, err := s.srv.Query(ctx, idc, queryRun, runQuery{IDC: idc, ID: id, Hosts: hosts}, opts, &v)
	if err != nil {
		return nil, meta, err
	}
	if v == nil {
		return nil, meta, p2p.Errorf(p2p.CodeNotFound, "no run %s in IDC %s (herd runs lists them)", id, idc)
	}
	return v, meta, nil
}

// ListRuns lists runs newest first.
func (s *Service) ListRuns(ctx context.Context, idc string, status model.RunStatus, limit int) (*model.RunList, error) {
	idc = s.idcOr(idc)
	switch status {
	case "", model.RunRunning, model.RunSucceeded, model.RunFailed, model.RunCancelled:
	default:
		return nil, badRequest("unknown run status %q (want running, succeeded, failed or cancelled)", status)
	}
	var out *model.RunList
	_, err := s.srv.Query(ctx, idc, queryRuns, runsQuery{IDC: idc, Status: status, Limit: limit}, consensus.QueryOptions{}, &out)
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = &model.RunList{Runs: []model.Run{}}
	}
	return out, nil
}

// CancelRun cancels a run: pending hosts at once, running ones through
// their executors.
func (s *Service) CancelRun(ctx context.Context, idc, id string) (*model.Run, error) {
	if err := model.ValidateRunID(id); err != nil {
		return nil, badRequest("%v", err)
	}
	idc = s.idcOr(idc)
	res, err := s.srv.Apply(ctx, idc, RunCancelType, RunCancel{IDC: idc, RunID: id, Now: time.Now()})
	if err != nil {
		return nil, err
	}
	var r model.Run
	if err := json.Unmarshal(res.Data, &r); err != nil {
		return nil, fmt.Errorf("decode the cancelled run: %w", err)
	}
	return &r, nil
}

// rerunStatuses are the statuses `rerun --failed` repeats.
var rerunStatuses = map[model.HostStatus]bool{
	model.HostFailed: true, model.HostTimeout: true, model.HostUnreachable: true, model.HostCancelled: true,
}

// Rerun creates a new run of the same script on the same hosts, or only on
// those that did not succeed, linked to the old run.
func (s *Service) Rerun(ctx context.Context, idc, id string, failedOnly bool) (*CreateResponse, error) {
	idc = s.idcOr(idc)
	v, _, err := s.GetRun(ctx, idc, id, true, consensus.QueryOptions{})
	if err != nil {
		return nil, err
	}
	var hosts []string
	for _, h := range v.Hosts {
		if !failedOnly || rerunStatuses[h.Status] {
			hosts = append(hosts, h.Host)
		}
	}
	if len(hosts) == 0 {
		return nil, badRequest("run %s has no failed, timed-out, cancelled or unreachable host to rerun", id)
	}
	spec := v.Run.Script
	rr := model.RunRequest{
		Targets: model.Targets{IDC: idc, Hosts: hosts},
		Script:  spec,
		Account: v.Run.Account,
		RerunOf: id,
	}
	return s.CreateRun(ctx, rr)
}

// Logs returns part of a host's full output: from its executor's disk,
// or, when the executor cannot be asked, the head and tail the control
// group keeps (Partial).
func (s *Service) Logs(ctx context.Context, idc, id, host string, offset int64, max int) (*model.LogChunk, error) {
	if err := model.ValidateName("host name", host); err != nil {
		return nil, badRequest("%v", err)
	}
	idc = s.idcOr(idc)
	v, _, err := s.GetRun(ctx, idc, id, true, consensus.QueryOptions{})
	if err != nil {
		return nil, err
	}
	var hr *model.HostResult
	for i := range v.Hosts {
		if v.Hosts[i].Host == host {
			hr = &v.Hosts[i]
		}
	}
	if hr == nil {
		return nil, p2p.Errorf(p2p.CodeNotFound, "host %s is not a target of run %s", host, id)
	}
	if hr.Node == "" {
		return &model.LogChunk{Host: host, Offset: offset, Done: hr.Status.Terminal()}, nil
	}
	req := LogsRequest{RunID: id, Host: host, Offset: offset, Max: max}
	chunk, err := s.askLogs(ctx, idc, hr.Node, req)
	if err == nil {
		return chunk, nil
	}
	if p2p.CodeOf(err) == p2p.CodeBadRequest {
		return nil, err
	}
	// The executor is gone or has pruned the output: what the control
	// group kept is all there is.
	partial := append(append([]byte{}, hr.Output.Head...), hr.Output.Tail...)
	out := &model.LogChunk{Host: host, Offset: offset, Size: int64(len(partial)), Done: hr.Status.Terminal(), Partial: true}
	if offset < int64(len(partial)) {
		out.Data = partial[offset:]
	}
	return out, nil
}

func (s *Service) askLogs(ctx context.Context, idc, node string, req LogsRequest) (*model.LogChunk, error) {
	if node == s.name && s.worker != nil {
		c, err := s.worker.handleLogs(ctx, "", req)
		return &c, err
	}
	if idc != s.idc {
		return nil, p2p.Errorf(p2p.CodeUnavailable, "the output of a run in IDC %s is read from that IDC's nodes", idc)
	}
	m, ok := s.lan.Member(node)
	if !ok || m.Status == mesh.StatusFailed || m.Status == mesh.StatusLeft {
		return nil, p2p.Errorf(p2p.CodeUnavailable, "node %s is not reachable", node)
	}
	c, err := callMember[LogsRequest, model.LogChunk](ctx, s.host, m, protoLogs, req)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// isConflict reports a CAS conflict from the control group.
func isConflict(err error) bool {
	var ce *consensus.CommandError
	return errors.As(err, &ce) && ce.Code == consensus.CodeCASConflict
}

// PushProgress returns the live byte counts of a push's hosts still
// fetching, from the leader of the run's IDC.
func (s *Service) PushProgress(ctx context.Context, idc, id string) (*model.PushProgress, error) {
	if err := model.ValidateRunID(id); err != nil {
		return nil, badRequest("%v", err)
	}
	idc = s.idcOr(idc)
	body, err := json.Marshal(ProgressRequest{IDC: idc, RunID: id})
	if err != nil {
		return nil, err
	}
	raw, err := s.srv.RelayIDC(ctx, idc, protoProgress, body)
	if err != nil {
		return nil, err
	}
	var out model.PushProgress
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("decode push progress: %w", err)
	}
	return &out, nil
}
