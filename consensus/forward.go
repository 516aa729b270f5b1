package consensus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/herd-io/herd/consensus/state"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
)

// This file is the one place where requests find their way: to this IDC's
// leader for writes, to a control member for reads, and once across the WAN
// for another IDC. Every endpoint calls Apply or Query and never routes on
// its own.

// newRequestID returns a random ID that makes a retried write apply once.
func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Apply commits a command in the control group of idc ("" = this node's)
// and returns the FSM's result. It retries across leader changes with the
// same request ID, so the command applies exactly once. A command the FSM
// rejected (CAS conflict, bad input) is returned as *CommandError.
func (s *Server) Apply(ctx context.Context, idc string, t MessageType, body any) (*ApplyResult, error) {
	cmd, err := EncodeCommand(t, newRequestID(), body)
	if err != nil {
		return nil, fmt.Errorf("encoding command: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ApplyTimeout)
	defer cancel()
	var res *ApplyResult
	if idc != "" && idc != s.cfg.IDC {
		resp, err := s.forwardIDC(ctx, idcRequest{IDC: idc, Apply: &applyRequest{Command: cmd}})
		if err != nil {
			return nil, err
		}
		res = resp.Apply
	} else if res, err = s.applyLocalIDC(ctx, cmd); err != nil {
		return nil, err
	}
	if res == nil {
		return nil, errors.New("consensus: empty apply result")
	}
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}

// applyLocalIDC sends cmd to this IDC's leader, retrying while leadership
// moves. The request ID inside cmd makes retries idempotent.
func (s *Server) applyLocalIDC(ctx context.Context, cmd []byte) (*ApplyResult, error) {
	var res *ApplyResult
	err := s.retryLeader(ctx, func(ctx context.Context) error {
		if r := s.group.Raft(); r != nil && r.State() == raft.Leader {
			var err error
			res, err = s.applyAsLeader(ctx, r, cmd)
			return err
		}
		return s.callLeader(ctx, true, func(ctx context.Context, m mesh.Member) error {
			r, err := callPeer[applyRequest, ApplyResult](ctx, s, m, protoApply, applyRequest{Command: cmd})
			if err == nil {
				res = &r
			}
			return err
		})
	})
	return res, err
}

// retryLeader runs attempt until it succeeds, fails for good, or ctx ends,
// backing off while leadership moves; at the end it explains what an
// operator needs to know (see noQuorumError).
func (s *Server) retryLeader(ctx context.Context, attempt func(context.Context) error) error {
	backoff := 50 * time.Millisecond
	for {
		err := attempt(ctx)
		if err == nil || !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return s.noQuorumError(err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// callLeader makes one call to this IDC's leader (see leaderMember). A
// bounded call gets forwardAttemptTimeout: a leader that vanished without
// closing its connections would otherwise hold it until the whole request
// times out. Blocking reads are unbounded: they wait on purpose.
func (s *Server) callLeader(ctx context.Context, bounded bool, call func(context.Context, mesh.Member) error) error {
	m, err := s.leaderMember()
	if err != nil {
		return err
	}
	actx, cancel := ctx, context.CancelFunc(func() {})
	if bounded {
		actx, cancel = context.WithTimeout(ctx, forwardAttemptTimeout)
	}
	defer cancel()
	if err := call(actx, m); err != nil {
		s.noteFailure(ctx, actx, m.Name, &err)
		return fmt.Errorf("forwarding to %s: %w", m.Name, err)
	}
	return nil
}

// forwardAttemptTimeout bounds one forwarded write or read: a few election
// timeouts, so a dead leader costs one attempt, not the whole deadline.
const forwardAttemptTimeout = 3 * time.Second

// suspectLeaders remembers members whose forwarded call just failed, so the
// next attempt tries another candidate while gossip has not yet declared
// the old leader failed.
type suspectLeaders struct {
	mu    sync.Mutex
	since map[string]time.Time
}

// noteFailure marks target suspect when the call failed in transport (no
// connection, or the attempt's own deadline passed) rather than with an
// answer: a leader that answers "not ready yet" is alive and stays
// preferred. A timed-out attempt's error is replaced by one naming it.
func (s *Server) noteFailure(ctx, attempt context.Context, target string, err *error) {
	timedOut := ctx.Err() == nil && attempt.Err() != nil
	var perr *p2p.Error
	if timedOut || (errors.As(*err, &perr) && perr.Unwrap() != nil) {
		s.suspects.mark(target)
	}
	if timedOut {
		*err = unavailablef("%s did not answer within %s", target, forwardAttemptTimeout)
	}
}

// suspectFor is how long a failed leader is passed over.
const suspectFor = 5 * time.Second

func (sl *suspectLeaders) mark(name string) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.since == nil {
		sl.since = map[string]time.Time{}
	}
	sl.since[name] = time.Now()
}

func (sl *suspectLeaders) suspect(name string) bool {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	t, ok := sl.since[name]
	if ok && time.Since(t) > suspectFor {
		delete(sl.since, name)
		return false
	}
	return ok
}

// applyAsLeader commits on this node's raft.
func (s *Server) applyAsLeader(ctx context.Context, r *raft.Raft, cmd []byte) (*ApplyResult, error) {
	timeout := time.Until(deadlineOr(ctx, 5*time.Second))
	f := r.Apply(cmd, timeout)
	if err := waitFuture(ctx, f); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return nil, unavailablef("leadership moved: %v", err)
		}
		if errors.Is(err, raft.ErrEnqueueTimeout) {
			return nil, unavailablef("the control group did not commit in time (no quorum?): %v", err)
		}
		return nil, unavailablef("raft apply: %v", err)
	}
	switch res := f.Response().(type) {
	case *ApplyResult:
		return res, nil
	case ApplyResult:
		return &res, nil
	case error:
		return nil, res
	default:
		return nil, fmt.Errorf("consensus: unexpected FSM response %T", res)
	}
}

// noQuorumError turns the last retry error into what an operator needs:
// which IDC, and whether a leader was known.
func (s *Server) noQuorumError(last error) error {
	gs := s.group.Status()
	if gs.Waiting != "" {
		return unavailablef("control group of IDC %s is not formed yet: %s", s.cfg.IDC, gs.Waiting)
	}
	leader := s.group.LeaderName()
	if leader == "" {
		if m, err := s.leaderMember(); err == nil {
			leader = m.Name
		}
	}
	if leader == "" {
		return unavailablef("no leader in the control group of IDC %s: a majority of its voters is unreachable (last error: %v)", s.cfg.IDC, last)
	}
	return unavailablef("the control group of IDC %s did not answer in time (current leader: %s; last error: %v)", s.cfg.IDC, leader, last)
}

// leaderMember finds where to send this IDC's leader-only requests: raft's
// own knowledge on members, else the "leader" role in gossip metadata,
// passing over leaders whose last call failed; failing those, a voter,
// which relays to the leader its raft knows (one hop). A suspect is passed
// over only for another candidate: with none (a group of one), it is the
// only way to a leader, and a call that timed out on a busy leader must
// not cost every caller suspectFor of "no known leader".
func (s *Server) leaderMember() (mesh.Member, error) {
	var suspect *mesh.Member
	if name := s.group.LeaderName(); name != "" {
		if m, ok := s.cfg.LAN.Member(name); ok && alive(m) {
			if !s.suspects.suspect(name) {
				return m, nil
			}
			suspect = &m
		}
	}
	var fallback []mesh.Member
	for _, m := range s.controlMembers() {
		if m.Name == s.cfg.Name {
			continue
		}
		if s.suspects.suspect(m.Name) {
			if suspect == nil {
				suspect = &m
			}
			continue
		}
		if slices.Contains(m.Meta.Roles, RoleLeader) {
			return m, nil
		}
		fallback = append(fallback, m)
	}
	switch {
	case len(fallback) > 0:
		return fallback[0], nil
	case suspect != nil:
		return *suspect, nil
	}
	return mesh.Member{}, unavailablef("no known leader in IDC %s", s.cfg.IDC)
}

// controlMembers lists alive members of this IDC's control group, the
// leader first, then voters, then non-voters.
// It ranges over the members that carry a role (an index: a few control
// members among thousands of nodes), not the pool.
func (s *Server) controlMembers() []mesh.Member {
	var leader, voters, nonvoters []mesh.Member
	s.cfg.LAN.RangeRoled(func(m *mesh.Member) bool {
		if !isLive(m.Status) {
			return true
		}
		switch {
		case slices.Contains(m.Meta.Roles, RoleLeader):
			leader = append(leader, *m)
		case slices.Contains(m.Meta.Roles, RoleVoter):
			voters = append(voters, *m)
		case slices.Contains(m.Meta.Roles, RoleNonvoter):
			nonvoters = append(nonvoters, *m)
		}
		return true
	})
	return append(append(leader, voters...), nonvoters...)
}

// callMember runs fn against control members in turn until one succeeds.
func (s *Server) callMember(ctx context.Context, fn func(context.Context, mesh.Member) error) error {
	members := s.controlMembers()
	if len(members) == 0 {
		return unavailablef("%v (IDC %s)", errNoControlMember, s.cfg.IDC)
	}
	var errs []error
	for _, m := range members {
		err := fn(ctx, m)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
		if !retryable(err) || ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

func alive(m mesh.Member) bool {
	return m.Status == mesh.StatusAlive || m.Status == mesh.StatusSuspect
}

// retryable reports errors worth retrying against another member or
// after a leader change.
func retryable(err error) bool {
	var perr *p2p.Error
	if errors.As(err, &perr) {
		return perr.Retryable()
	}
	return false
}

// callPeer makes a typed node-stream call to a mesh member.
func callPeer[Req, Resp any](ctx context.Context, s *Server, m mesh.Member, proto protocol.ID, req Req) (Resp, error) {
	var zero Resp
	pid, err := p2p.ParsePeerID(m.Meta.ID)
	if err != nil {
		return zero, fmt.Errorf("member %s: %w", m.Name, err)
	}
	return p2p.CallJSON[Req, Resp](ctx, s.cfg.Host, pid, m.Meta.P2P, proto, req)
}

// waitFuture waits for a raft future or ctx. raft may never answer a future
// queued while it shuts down (hashicorp/raft#498): waiting on ctx too keeps
// a handler, and the host's Close that waits for handlers, from hanging.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func deadlineOr(ctx context.Context, d time.Duration) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(d)
}

// queryFunc runs a read against the store, adding what it read to ws, and
// returns the index the result reflects.
type queryFunc func(ws memdb.WatchSet, store *state.Store, args json.RawMessage) (uint64, any, error)

// queries is the registry of reads control members serve.
var queries = map[string]queryFunc{}

// Query runs the named read in the control group of idc ("" = this node's)
// and decodes its result into out.
func (s *Server) Query(ctx context.Context, idc, kind string, args any, opts QueryOptions, out any) (QueryMeta, error) {
	raw, err := json.Marshal(args)
	if err != nil {
		return QueryMeta{}, err
	}
	req := queryRequest{Kind: kind, Args: raw, Options: opts}
	var resp *queryResponse
	if idc != "" && idc != s.cfg.IDC {
		r, err := s.forwardIDC(ctx, idcRequest{IDC: idc, Query: &req})
		if err != nil {
			return QueryMeta{}, err
		}
		resp = r.Query
	} else if resp, err = s.queryLocalIDC(ctx, req); err != nil {
		return QueryMeta{}, err
	}
	if resp == nil {
		return QueryMeta{}, errors.New("consensus: empty query answer")
	}
	if out != nil {
		if err := json.Unmarshal(resp.Result, out); err != nil {
			return resp.Meta, fmt.Errorf("decoding %s answer: %w", kind, err)
		}
	}
	return resp.Meta, nil
}

// queryLocalIDC serves req here when this node may, else on a member that
// may: the leader for default and consistent reads, any member for stale.
func (s *Server) queryLocalIDC(ctx context.Context, req queryRequest) (*queryResponse, error) {
	if s.canServe(req.Options.Consistency) {
		return s.serveQuery(ctx, req)
	}
	var out *queryResponse
	call := func(ctx context.Context, m mesh.Member) error {
		r, err := callPeer[queryRequest, queryResponse](ctx, s, m, protoQuery, req)
		if err == nil {
			out = &r
		}
		return err
	}
	if req.Options.Consistency == ConsistencyStale {
		return out, s.callMember(ctx, call)
	}
	err := s.retryLeader(ctx, func(ctx context.Context) error {
		return s.callLeader(ctx, req.Options.MinIndex == 0, call)
	})
	return out, err
}

func (s *Server) canServe(c Consistency) bool {
	r := s.group.Raft()
	if r == nil {
		return false
	}
	if c == ConsistencyStale {
		return true
	}
	return r.State() == raft.Leader
}

// maxQueryWait caps blocking queries, as Consul and Nomad do.
const maxQueryWait = 5 * time.Minute

// serveQuery runs a read on this member: once, or blocking until the
// index passes MinIndex (Nomad's blockingRPC).
func (s *Server) serveQuery(ctx context.Context, req queryRequest) (*queryResponse, error) {
	fn, ok := queries[req.Kind]
	if !ok {
		return nil, p2p.Errorf(p2p.CodeBadRequest, "unknown query %q", req.Kind)
	}
	r := s.group.Raft()
	if r == nil {
		return nil, unavailablef("%s is not a control member", s.cfg.Name)
	}
	if req.Options.Consistency != ConsistencyStale {
		if r.State() != raft.Leader {
			return nil, unavailablef("%s is not the leader", s.cfg.Name)
		}
		if !s.readyForReads() {
			return nil, unavailablef("%s has just become leader and is still applying earlier entries", s.cfg.Name)
		}
	}
	if req.Options.Consistency == ConsistencyStrong {
		if err := waitFuture(ctx, r.VerifyLeader()); err != nil {
			return nil, unavailablef("leadership not confirmed by a quorum: %v", err)
		}
	}
	wait := min(req.Options.MaxWait, maxQueryWait)
	if req.Options.MinIndex > 0 && wait <= 0 {
		wait = maxQueryWait
	}
	// Jitter spreads the wake-ups of many watchers (Nomad adds up to 1/16).
	wait += time.Duration(int64(wait) / 16 * int64(randByte()) / 256)
	var deadline <-chan time.Time
	if req.Options.MinIndex > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		deadline = t.C
	}
	for {
		ws := memdb.NewWatchSet()
		ws.Add(s.store.AbandonCh())
		idx, result, err := fn(ws, s.store, req.Args)
		if err != nil {
			return nil, err
		}
		if req.Options.MinIndex == 0 || idx > req.Options.MinIndex {
			return s.answer(idx, result)
		}
		wctx, cancel := context.WithCancel(ctx)
		stop := make(chan struct{})
		go func() {
			select {
			case <-deadline:
				cancel()
			case <-stop:
			}
		}()
		err = ws.WatchCtx(wctx)
		close(stop)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// The wait ran out: answer with what is there now.
			idx, result, err = fn(nil, s.store, req.Args)
			if err != nil {
				return nil, err
			}
			return s.answer(idx, result)
		}
	}
}

func (s *Server) answer(idx uint64, result any) (*queryResponse, error) {
	raw, err := json.Marshal(result)
	if err != nil {
		return nil, err
	}
	meta := QueryMeta{Index: max(idx, 1), ServedBy: s.cfg.Name}
	if r := s.group.Raft(); r != nil {
		_, leaderID := r.LeaderWithID()
		meta.KnownLeader = leaderID != ""
		if r.State() != raft.Leader {
			meta.LastContact = time.Since(r.LastContact())
		}
	}
	return &queryResponse{Meta: meta, Result: raw}, nil
}

func randByte() byte {
	var b [1]byte
	_, _ = rand.Read(b[:])
	return b[0]
}

// forwardIDC sends req to the control group of another IDC. A WAN member
// sends it straight across; other nodes hand it to a local WAN member.
func (s *Server) forwardIDC(ctx context.Context, req idcRequest) (*idcResponse, error) {
	if req.Hops > 1 {
		return nil, p2p.Errorf(p2p.CodeBadRequest, "request for IDC %s is looping", req.IDC)
	}
	req.Hops++
	if s.wan.joined() {
		targets := s.wan.membersOf(req.IDC)
		if len(targets) == 0 {
			return nil, p2p.Errorf(p2p.CodeNotFound, "unknown IDC %q: no control member of it is alive in the WAN pool (known IDCs: %v)", req.IDC, s.wan.idcs())
		}
		var errs []error
		for _, m := range targets {
			resp, err := callPeer[idcRequest, idcResponse](ctx, s, m, protoIDC, req)
			if err == nil {
				return &resp, nil
			}
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
			if !retryable(err) {
				break
			}
		}
		return nil, errors.Join(errs...)
	}
	var out *idcResponse
	err := s.callMember(ctx, func(ctx context.Context, m mesh.Member) error {
		resp, err := callPeer[idcRequest, idcResponse](ctx, s, m, protoIDC, req)
		if err == nil {
			out = &resp
		}
		return err
	})
	return out, err
}

// relayPrefix limits RelayIDC to the node API's protocols.
const relayPrefix = "/herd/api/"

// RelayIDC has a node of another IDC serve a node-API stream call (protocol
// under /herd/api/) and returns its answer: how a node answers for IDCs
// outside its own gossip pool.
func (s *Server) RelayIDC(ctx context.Context, idc string, proto protocol.ID, body []byte) ([]byte, error) {
	if idc == s.cfg.IDC {
		return s.cfg.Host.Call(ctx, s.cfg.Host.ID(), "", proto, body)
	}
	resp, err := s.forwardIDC(ctx, idcRequest{IDC: idc, Relay: &relayRequest{Proto: proto, Body: body}})
	if err != nil {
		return nil, err
	}
	return resp.Relay, nil
}

// registerEndpoints installs the control plane's node-stream handlers.
func (s *Server) registerEndpoints() {
	p2p.HandleJSON(s.cfg.Host, protoApply, func(ctx context.Context, _ peer.ID, req applyRequest) (ApplyResult, error) {
		r := s.group.Raft()
		if r != nil && r.State() != raft.Leader && !req.Relayed {
			// A member that knows the leader from raft relays once: callers
			// whose gossip view still names a dead leader get through.
			if name := s.group.LeaderName(); name != "" && name != s.cfg.Name {
				if m, ok := s.cfg.LAN.Member(name); ok && alive(m) {
					req.Relayed = true
					return callPeer[applyRequest, ApplyResult](ctx, s, m, protoApply, req)
				}
			}
		}
		if r == nil || r.State() != raft.Leader {
			return ApplyResult{}, unavailablef("%s is not the leader of IDC %s", s.cfg.Name, s.cfg.IDC)
		}
		res, err := s.applyAsLeader(ctx, r, req.Command)
		if err != nil {
			return ApplyResult{}, err
		}
		return *res, nil
	})
	p2p.HandleJSON(s.cfg.Host, protoQuery, func(ctx context.Context, _ peer.ID, req queryRequest) (queryResponse, error) {
		res, err := s.serveQuery(ctx, req)
		if err != nil {
			return queryResponse{}, err
		}
		return *res, nil
	})
	p2p.HandleJSON(s.cfg.Host, protoStatus, func(ctx context.Context, _ peer.ID, _ struct{}) (ControlStatus, error) {
		if s.group.Raft() == nil {
			return ControlStatus{}, unavailablef("%s is not a control member", s.cfg.Name)
		}
		return *s.memberStatus(), nil
	})
	p2p.HandleJSON(s.cfg.Host, protoIDC, s.serveIDC)
}

// serveIDC handles a request aimed at an IDC: here if it is ours, else one
// hop across the WAN.
func (s *Server) serveIDC(ctx context.Context, _ peer.ID, req idcRequest) (idcResponse, error) {
	if req.IDC != s.cfg.IDC {
		if !s.wan.joined() {
			return idcResponse{}, unavailablef("%s is not in the WAN pool", s.cfg.Name)
		}
		resp, err := s.forwardIDC(ctx, req)
		if err != nil {
			return idcResponse{}, err
		}
		return *resp, nil
	}
	var out idcResponse
	switch {
	case req.Apply != nil:
		res, err := s.applyLocalIDC(ctx, req.Apply.Command)
		if err != nil {
			return out, err
		}
		out.Apply = res
	case req.Query != nil:
		res, err := s.queryLocalIDC(ctx, *req.Query)
		if err != nil {
			return out, err
		}
		out.Query = res
	case req.Relay != nil:
		if !strings.HasPrefix(string(req.Relay.Proto), relayPrefix) {
			return out, p2p.Errorf(p2p.CodeForbidden, "protocol %s cannot be relayed across IDCs", req.Relay.Proto)
		}
		// Served by this node's own handler, as if called locally.
		body, err := s.cfg.Host.Call(ctx, s.cfg.Host.ID(), "", req.Relay.Proto, req.Relay.Body)
		if err != nil {
			return out, err
		}
		out.Relay = body
	case req.Status:
		st, err := s.localStatus(ctx)
		if err != nil {
			return out, err
		}
		out.Status = st
	default:
		return out, p2p.Errorf(p2p.CodeBadRequest, "empty IDC request")
	}
	return out, nil
}

// CallLeader runs call against this IDC's leader, retrying with backoff
// while leadership moves (each attempt bounded like a forwarded write)
// until call succeeds, fails with a non-retryable error, or ctx ends. It is
// how upper packages send their own leader-only requests.
func (s *Server) CallLeader(ctx context.Context, call func(ctx context.Context, m mesh.Member) error) error {
	return s.retryLeader(ctx, func(ctx context.Context) error {
		return s.callLeader(ctx, true, call)
	})
}

// IsLeader reports whether this node leads its IDC's control group now.
func (s *Server) IsLeader() bool { return s.group.IsLeader() }

// Name returns this node's name; IDC its IDC.
func (s *Server) Name() string { return s.cfg.Name }

// IDC returns this node's IDC.
func (s *Server) IDC() string { return s.cfg.IDC }
