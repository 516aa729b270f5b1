package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/consensus/state"
	"github.com/herd-io/herd/jobs"
	"github.com/herd-io/herd/mesh/p2p"
	"github.com/herd-io/herd/node/api"
)

// Control-plane endpoints: thin over consensus.Server, which does all the
// routing to leaders and IDCs.

func (s *apiServer) registerControl() {
	s.mux.HandleFunc("GET /v1/control/status", s.authed(s.controlStatus))
	s.mux.HandleFunc("GET /v1/kv", s.authed(s.kvList))
	// /v1/kv/KEY is routed in route, ahead of the mux.
}

func (s *apiServer) controlStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.agent.control.Status(r.Context(), r.URL.Query().Get("idc"))
	if err != nil {
		writeControlError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// kvScope reads ?scope= (default global).
func kvScope(r *http.Request) string {
	if sc := r.URL.Query().Get("scope"); sc != "" {
		return sc
	}
	return state.ScopeGlobal
}

// queryOptions reads ?consistent, ?stale, ?index=N and ?wait=DURATION.
func queryOptions(r *http.Request) (consensus.QueryOptions, error) {
	q := r.URL.Query()
	var o consensus.QueryOptions
	_, consistent := q["consistent"]
	_, stale := q["stale"]
	switch {
	case consistent && stale:
		return o, errors.New("give ?consistent or ?stale, not both")
	case consistent:
		o.Consistency = consensus.ConsistencyStrong
	case stale:
		o.Consistency = consensus.ConsistencyStale
	}
	if v := q.Get("index"); v != "" {
		idx, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return o, fmt.Errorf("index %q is not a number", v)
		}
		o.MinIndex = idx
	}
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return o, fmt.Errorf("wait %q is not a duration like 30s", v)
		}
		o.MaxWait = d
	}
	return o, nil
}

// casParam reads ?cas=N: nil when absent.
func casParam(r *http.Request) (*uint64, error) {
	v := r.URL.Query().Get("cas")
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("cas %q is not a version number", v)
	}
	return &n, nil
}

func setIndexHeaders(w http.ResponseWriter, meta consensus.QueryMeta) {
	w.Header().Set("X-Herd-Index", strconv.FormatUint(meta.Index, 10))
	w.Header().Set("X-Herd-Known-Leader", strconv.FormatBool(meta.KnownLeader))
	w.Header().Set("X-Herd-Last-Contact", strconv.FormatInt(meta.LastContact.Milliseconds(), 10))
}

func (s *apiServer) kvGet(w http.ResponseWriter, r *http.Request) {
	opts, ctx, cancel, ok := readOptions(w, r)
	if !ok {
		return
	}
	defer cancel()
	key := r.PathValue("key")
	e, meta, err := s.agent.control.KVGet(ctx, kvScope(r), key, opts)
	if err != nil {
		writeControlError(w, err)
		return
	}
	setIndexHeaders(w, meta)
	if e == nil {
		writeError(w, http.StatusNotFound, api.CodeNotFound, fmt.Sprintf("key %q not found in scope %s", key, kvScope(r)))
		return
	}
	writeJSON(w, http.StatusOK, api.KVEntry(*e))
}

func (s *apiServer) kvList(w http.ResponseWriter, r *http.Request) {
	opts, ctx, cancel, ok := readOptions(w, r)
	if !ok {
		return
	}
	defer cancel()
	entries, meta, err := s.agent.control.KVList(ctx, kvScope(r), r.URL.Query().Get("prefix"), opts)
	if err != nil {
		writeControlError(w, err)
		return
	}
	setIndexHeaders(w, meta)
	out := api.KVList{Index: meta.Index, Entries: make([]api.KVEntry, 0, len(entries))}
	for _, e := range entries {
		out.Entries = append(out.Entries, api.KVEntry(*e))
	}
	writeJSON(w, http.StatusOK, out)
}

// reservedKey refuses writes to keys under jobs.ReservedPrefix, where
// herd keeps its own objects; it has answered when it returns true.
func reservedKey(w http.ResponseWriter, key string) bool {
	if strings.HasPrefix(key, jobs.ReservedPrefix) {
		writeError(w, http.StatusForbidden, api.CodeForbidden,
			fmt.Sprintf("key %q is under %s, where herd keeps its own objects: change them with the herd commands (run, script, group, account, host)", key, jobs.ReservedPrefix))
		return true
	}
	return false
}

func (s *apiServer) kvPut(w http.ResponseWriter, r *http.Request) {
	if reservedKey(w, r.PathValue("key")) {
		return
	}
	cas, err := casParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	value, err := io.ReadAll(io.LimitReader(r.Body, state.MaxValueSize+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, "reading value: "+err.Error())
		return
	}
	if len(value) > state.MaxValueSize {
		writeError(w, http.StatusRequestEntityTooLarge, api.CodeBadRequest,
			fmt.Sprintf("value is larger than the %d-byte limit", state.MaxValueSize))
		return
	}
	e, err := s.agent.control.KVPut(r.Context(), kvScope(r), r.PathValue("key"), value, cas)
	if err != nil {
		writeControlError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.KVEntry(*e))
}

func (s *apiServer) kvDelete(w http.ResponseWriter, r *http.Request) {
	if reservedKey(w, r.PathValue("key")) {
		return
	}
	cas, err := casParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	if err := s.agent.control.KVDelete(r.Context(), kvScope(r), r.PathValue("key"), cas); err != nil {
		writeControlError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readOptions parses a read's options and bounds its context; on bad input
// it has answered and returns ok false.
func readOptions(w http.ResponseWriter, r *http.Request) (consensus.QueryOptions, context.Context, context.CancelFunc, bool) {
	opts, err := queryOptions(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return opts, nil, nil, false
	}
	ctx, cancel := blockingContext(r.Context(), opts)
	return opts, ctx, cancel, true
}

// blockingContext gives a blocking read room for its wait plus slack.
func blockingContext(parent context.Context, o consensus.QueryOptions) (context.Context, context.CancelFunc) {
	if o.MinIndex == 0 {
		return context.WithTimeout(parent, 30*time.Second)
	}
	wait := o.MaxWait
	if wait <= 0 || wait > 5*time.Minute {
		wait = 5 * time.Minute
	}
	return context.WithTimeout(parent, wait+30*time.Second)
}

// writeControlError maps control-plane errors to HTTP answers with stable
// codes: conflicts 409, bad input 400, unknown things 404, no quorum 503.
func writeControlError(w http.ResponseWriter, err error) {
	var cerr *consensus.CommandError
	if errors.As(err, &cerr) {
		status := http.StatusBadRequest
		switch cerr.Code {
		case consensus.CodeCASConflict, "conflict":
			status = http.StatusConflict
		case "not_found":
			status = http.StatusNotFound
		case consensus.CodeInternal:
			status = http.StatusInternalServerError
		}
		writeError(w, status, cerr.Code, cerr.Message)
		return
	}
	var perr *p2p.Error
	if errors.As(err, &perr) {
		switch perr.Code {
		case p2p.CodeBadRequest, p2p.CodeTooLarge:
			writeError(w, http.StatusBadRequest, api.CodeBadRequest, perr.Message)
		case p2p.CodeNotFound:
			writeError(w, http.StatusNotFound, api.CodeNotFound, perr.Message)
		case p2p.CodeForbidden:
			writeError(w, http.StatusForbidden, api.CodeForbidden, perr.Message)
		case p2p.CodeUnavailable, p2p.CodeTimeout:
			writeError(w, http.StatusServiceUnavailable, api.CodeUnavailable, perr.Message)
		default:
			writeError(w, http.StatusInternalServerError, api.CodeInternal, perr.Message)
		}
		return
	}
	if errors.Is(err, context.DeadlineExceeded) {
		writeError(w, http.StatusServiceUnavailable, api.CodeUnavailable, "the control group did not answer in time: "+err.Error())
		return
	}
	writeError(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
}
