package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/consensus/state"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
	"github.com/herd-io/herd/transfer"
)

// NewRunID returns a run id that sorts by creation time:
// YYYYMMDD-HHMMSS-xxxxxx (UTC, then 24 random bits).
func NewRunID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// handleCreate creates a run on the leader (a member that is not the
// leader passes it on).
func (s *Scheduler) handleCreate(ctx context.Context, _ peer.ID, req CreateRequest) (CreateResponse, error) {
	if req.IDC != s.cfg.IDC {
		return CreateResponse{}, p2p.Errorf(p2p.CodeBadRequest, "a run for IDC %s reached IDC %s", req.IDC, s.cfg.IDC)
	}
	t := s.current()
	if t == nil {
		var out CreateResponse
		err := s.cfg.Server.CallLeader(ctx, func(ctx context.Context, m mesh.Member) error {
			r, err := callMember[CreateRequest, CreateResponse](ctx, s.cfg.Host, m, protoCreate, req)
			out = r
			return err
		})
		return out, err
	}
	return s.create(ctx, t, req)
}

// badRequest wraps a validation failure for the API.
func badRequest(format string, args ...any) error {
	return p2p.Errorf(p2p.CodeBadRequest, format, args...)
}

func (s *Scheduler) create(ctx context.Context, t *term, req CreateRequest) (CreateResponse, error) {
	rr := req.Request
	store := s.cfg.Server.Store()
	groups, err := groupsMap(store)
	if err != nil {
		return CreateResponse{}, p2p.Errorf(p2p.CodeInternal, "%v", err)
	}
	sshHosts, err := listObjects[model.SSHHost](store, prefixSSHHosts)
	if err != nil {
		return CreateResponse{}, p2p.Errorf(p2p.CodeInternal, "%v", err)
	}
	res, err := Resolve(rr.Targets, s.cfg.IDC, s.cfg.LAN.Members(), groups, sshHosts)
	if err != nil {
		return CreateResponse{}, badRequest("%v", err)
	}
	if rr.DryRun {
		return CreateResponse{DryRun: &model.DryRun{IDC: s.cfg.IDC, Targets: res.Targets, Unknown: res.Unknown}}, nil
	}
	if rr.Push != nil {
		return s.createPush(ctx, t, req, res)
	}
	spec := rr.Script
	if rr.ScriptRef != "" {
		name, version, _ := strings.Cut(rr.ScriptRef, "@")
		if err := model.ValidateName("script name", name); err != nil {
			return CreateResponse{}, badRequest("%v", err)
		}
		sc, ver, body, err := scriptBody(store, name, version)
		if err != nil {
			return CreateResponse{}, badRequest("%v", err)
		}
		spec.Body, spec.Name, spec.Version = body, name, ver
		if spec.Lang == "" {
			spec.Lang = sc.Lang
		}
	}
	if spec.Lang == "" {
		spec.Lang = "sh"
	}
	if err := spec.Validate(); err != nil {
		return CreateResponse{}, badRequest("%v", err)
	}
	if spec.Timeout == 0 {
		spec.Timeout = model.Duration(model.DefaultTimeout)
	}
	if len(res.Targets) == 0 {
		return CreateResponse{}, badRequest("the targets match no host in IDC %s", s.cfg.IDC)
	}
	if err := model.ValidateRunID(req.ID); err != nil {
		return CreateResponse{}, badRequest("%v", err)
	}
	now := time.Now()
	run := model.Run{
		ID: req.ID, IDC: s.cfg.IDC, Script: spec, Targets: rr.Targets, Created: now,
		RerunOf: rr.RerunOf, CreatedBy: req.CreatedBy, Leader: s.cfg.Name,
	}
	settledHosts := s.settleAtCreate(store, &run, rr.Account, res, groups, now)
	return s.commitRun(ctx, t, run, res, settledHosts)
}

// commitRun commits a resolved run, gossips its notice and wakes the
// watchdog to deliver it.
func (s *Scheduler) commitRun(ctx context.Context, t *term, run model.Run, res Resolution, settledHosts []model.HostResult) (CreateResponse, error) {
	store := s.cfg.Server.Store()
	cmd := RunCreate{Run: run, Targets: res.Targets, Settled: settledHosts}
	ares, err := s.cfg.Server.Apply(ctx, "", RunCreateType, cmd)
	var ce *consensus.CommandError
	if errors.As(err, &ce) && ce.Code == consensus.CodeCASConflict {
		// A retried create: the run exists already.
		_, v, rerr := readRun(nil, store, runQuery{IDC: s.cfg.IDC, ID: run.ID})
		if rerr == nil && v != nil {
			return CreateResponse{Run: &v.Run}, nil
		}
	}
	if err != nil {
		return CreateResponse{}, err
	}
	created := run
	if ares != nil && len(ares.Data) > 0 {
		_ = json.Unmarshal(ares.Data, &created)
	}
	created.ModifyIndex = ares.Index
	s.log.Info("run created", "run", run.ID, "hosts", len(res.Targets), "settled", len(settledHosts))
	var executors []string
	for _, tg := range res.Targets {
		if tg.Kind == model.TargetAgent {
			executors = append(executors, tg.Name)
		} else {
			executors = nil // SSH executors are chosen per host: send an open notice
			break
		}
	}
	s.notify(&created, executors)
	t.kick()
	return CreateResponse{Run: &created}, nil
}

// settleAtCreate resolves the execution account and returns the hosts that
// are settled before anything is sent: names that match no host
// (unreachable) and hosts the account may not run on (failed).
func (s *Scheduler) settleAtCreate(store *state.Store, run *model.Run, account string, res Resolution, groups map[string]model.Group, now time.Time) []model.HostResult {
	var out []model.HostResult
	refuse := map[string]string{}
	for _, name := range res.Unknown {
		refuse[name] = "unreachable:" + fmt.Sprintf("no host named %s in IDC %s (neither an agent nor an SSH target)", name, s.cfg.IDC)
	}
	name := account
	if name == "" {
		def, err := defaultAccountName(store)
		if err != nil {
			s.log.Error("cannot read the default account", "error", err)
		}
		name = def
	}
	run.Account = name
	if name != "" {
		acct, _, err := getObject[model.Account](store, accountKey(name))
		switch {
		case err != nil || acct == nil:
			why := fmt.Sprintf("account %q is not registered (herd account add %s)", name, name)
			if err != nil {
				why = fmt.Sprintf("account %q cannot be read: %v", name, err)
			}
			for _, tg := range res.Targets {
				if _, done := refuse[tg.Name]; !done {
					refuse[tg.Name] = "failed:" + why
				}
			}
		default:
			run.OSUser = acct.OSUser
			if run.OSUser == "" {
				run.OSUser = acct.Name
			}
			for _, tg := range res.Targets {
				if _, done := refuse[tg.Name]; done {
					continue
				}
				if why := accountRefuses(acct, s.cfg.IDC, tg.Name, groups); why != "" {
					refuse[tg.Name] = "failed:" + why
				}
			}
		}
	}
	for _, tg := range res.Targets {
		why, ok := refuse[tg.Name]
		if !ok {
			continue
		}
		status, msg, _ := strings.Cut(why, ":")
		t := now
		out = append(out, model.HostResult{Host: tg.Name, Kind: tg.Kind, Status: model.HostStatus(status), ExitCode: -1, Error: msg, Finished: &t})
	}
	return out
}

// accountRefuses says why acct may not run on host, "" when it may.
func accountRefuses(acct *model.Account, idc, host string, groups map[string]model.Group) string {
	if len(acct.IDCs) > 0 && !slices.Contains(acct.IDCs, idc) {
		return fmt.Sprintf("account %s is limited to IDCs %s", acct.Name, strings.Join(acct.IDCs, ","))
	}
	if len(acct.Groups) == 0 {
		return ""
	}
	for _, g := range acct.Groups {
		if grp, ok := groups[g]; ok && slices.Contains(grp.Hosts, host) {
			return ""
		}
	}
	return fmt.Sprintf("account %s is limited to groups %s, and %s is in none of them", acct.Name, strings.Join(acct.Groups, ","), host)
}

// createPush validates a push and creates its run. Per-host checks (the
// owner exists, the parent directory exists, there is space) happen on
// each host, which reports them.
func (s *Scheduler) createPush(ctx context.Context, t *term, req CreateRequest, res Resolution) (CreateResponse, error) {
	p := *req.Request.Push
	if err := transfer.ValidateDest(p.Dest); err != nil {
		return CreateResponse{}, badRequest("%v", err)
	}
	if p.Mode == "" {
		p.Mode = "0644"
	}
	if _, err := transfer.ParseMode(p.Mode); err != nil {
		return CreateResponse{}, badRequest("%v", err)
	}
	if err := validateOwnerSyntax(p.Owner); err != nil {
		return CreateResponse{}, badRequest("%v", err)
	}
	if p.Rate < 0 || p.Timeout < 0 {
		return CreateResponse{}, badRequest("rate and timeout must not be negative")
	}
	if !transfer.ValidSHA256(p.File.SHA256) {
		return CreateResponse{}, badRequest("push: file %q is not a sha256 (herd file list shows the files)", p.File.SHA256)
	}
	f, _, err := getObject[model.File](s.cfg.Server.Store(), fileKey(p.File.SHA256))
	if err != nil {
		return CreateResponse{}, p2p.Errorf(p2p.CodeInternal, "%v", err)
	}
	if f == nil {
		return CreateResponse{}, badRequest("no file %s in the content store (herd file add, or herd push with a local path, adds it)", p.File.SHA256)
	}
	if len(f.Origins) == 0 {
		return CreateResponse{}, badRequest("file %s has no origin left to fetch from", f.SHA256)
	}
	p.File = *f
	if p.Timeout == 0 {
		p.Timeout = model.Duration(model.DefaultTimeout)
	}
	if len(res.Targets) == 0 {
		return CreateResponse{}, badRequest("the targets match no host in IDC %s", s.cfg.IDC)
	}
	if err := model.ValidateRunID(req.ID); err != nil {
		return CreateResponse{}, badRequest("%v", err)
	}
	now := time.Now()
	run := model.Run{
		ID: req.ID, IDC: s.cfg.IDC, Push: &p, Targets: req.Request.Targets, Created: now,
		RerunOf: req.Request.RerunOf, CreatedBy: req.CreatedBy, Leader: s.cfg.Name,
		Script: model.ScriptSpec{Command: fmt.Sprintf("push %s → %s", f.Name, p.Dest)},
	}
	var settled []model.HostResult
	for _, tg := range res.Targets {
		why := ""
		switch {
		case slices.Contains(res.Unknown, tg.Name):
			why = fmt.Sprintf("no host named %s in IDC %s", tg.Name, s.cfg.IDC)
		case tg.Kind == model.TargetSSH:
			why = "pushes to agentless (SSH) hosts are not supported: install herd agent there"
		}
		if why != "" {
			n := now
			st := model.HostUnreachable
			if tg.Kind == model.TargetSSH {
				st = model.HostFailed
			}
			settled = append(settled, model.HostResult{Host: tg.Name, Kind: tg.Kind, Status: st, ExitCode: -1, Error: why, Finished: &n})
		}
	}
	return s.commitRun(ctx, t, run, res, settled)
}

var ownerRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// validateOwnerSyntax checks "user", "user:group" or ":group" (names or
// numbers); whether they exist is each host's business.
func validateOwnerSyntax(owner string) error {
	if owner == "" {
		return nil
	}
	user, group, _ := strings.Cut(owner, ":")
	for _, part := range []string{user, group} {
		if part != "" && !ownerRE.MatchString(part) {
			return fmt.Errorf("owner %q: want user, user:group or :group", owner)
		}
	}
	if user == "" && group == "" {
		return fmt.Errorf("owner %q: want user, user:group or :group", owner)
	}
	return nil
}
