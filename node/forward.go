package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/herd-io/herd/mesh/p2p"
	"github.com/herd-io/herd/node/api"
)

// maxForwardBody bounds a relayed request body; large uploads never travel
// this way.
const maxForwardBody = 1 << 20

// forwardTimeout bounds one relayed request.
const forwardTimeout = 30 * time.Second

// forwardedWrites are the writes ?on=NODE may relay: those that act on the
// named node itself rather than on the control group (which any node
// reaches anyway), with how long each may take.
var forwardedWrites = map[string]time.Duration{
	"POST /v1/files": time.Hour, // add a file that is on that node: hashing 10 GB takes a while
}

// forwardBudget is how long a relayed request may take, and whether it may
// be relayed at all.
func forwardBudget(method, path string) (time.Duration, bool) {
	if method == http.MethodGet {
		return forwardTimeout, true
	}
	d, ok := forwardedWrites[method+" "+path]
	return d, ok
}

// registerStreams installs the node-stream handlers this node serves.
func (a *Agent) registerStreams() {
	p2p.HandleJSON(a.host, protoAPI, a.serveForwarded)
}

// forwardHTTP relays r to the named member and copies its answer back.
func (s *apiServer) forwardHTTP(w http.ResponseWriter, r *http.Request, name string) {
	m, pid, ok := s.peerOf(w, name)
	if !ok {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxForwardBody+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, "reading body: "+err.Error())
		return
	}
	if len(body) > maxForwardBody {
		writeError(w, http.StatusRequestEntityTooLarge, api.CodeBadRequest,
			fmt.Sprintf("a forwarded request body may be at most %d bytes", maxForwardBody))
		return
	}
	budget, ok := forwardBudget(r.Method, r.URL.Path)
	if !ok {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest,
			fmt.Sprintf("%s %s cannot be sent to another node with ?on=: send it to any node without ?on", r.Method, r.URL.Path))
		return
	}
	q := r.URL.Query()
	q.Del("on") // the target serves it itself: no second hop
	ctx, cancel := context.WithTimeout(r.Context(), budget)
	defer cancel()
	resp, err := p2p.CallJSON[forwardRequest, forwardResponse](ctx, s.agent.host, pid, m.Meta.P2P, protoAPI,
		forwardRequest{Method: r.Method, Path: r.URL.Path, Query: q.Encode(), Body: body})
	if err != nil {
		writeError(w, http.StatusBadGateway, api.CodeUnavailable, fmt.Sprintf("forwarding to %s: %v", name, err))
		return
	}
	writeForwarded(w, resp)
}

// relayToIDC has a node of another IDC serve r (a GET) and copies its
// answer back.
func (s *apiServer) relayToIDC(w http.ResponseWriter, r *http.Request, idc string) {
	body, err := json.Marshal(forwardRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query().Encode()})
	if err != nil {
		writeError(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), forwardTimeout)
	defer cancel()
	raw, err := s.agent.control.RelayIDC(ctx, idc, protoAPI, body)
	if err != nil {
		writeControlError(w, err)
		return
	}
	var resp forwardResponse
	if err := json.Unmarshal(raw, &resp); err != nil {
		writeError(w, http.StatusBadGateway, api.CodeInternal, "bad answer from IDC "+idc+": "+err.Error())
		return
	}
	writeForwarded(w, resp)
}

// writeForwarded copies a relayed answer to w.
func writeForwarded(w http.ResponseWriter, resp forwardResponse) {
	if resp.ContentType != "" {
		w.Header().Set("Content-Type", resp.ContentType)
	}
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

// serveForwarded runs a relayed request through this node's own API
// handlers. The stream is authenticated and the gater admits only mesh
// members, so the entry node's token check stands.
func (a *Agent) serveForwarded(ctx context.Context, from peer.ID, req forwardRequest) (forwardResponse, error) {
	if _, ok := forwardBudget(req.Method, req.Path); !ok {
		return forwardResponse{}, p2p.Errorf(p2p.CodeBadRequest, "%s %s cannot be forwarded", req.Method, req.Path)
	}
	u := &url.URL{Path: req.Path, RawQuery: req.Query}
	hr, err := http.NewRequestWithContext(context.WithValue(ctx, forwardedKey{}, from), req.Method, u.String(), bytes.NewReader(req.Body))
	if err != nil {
		return forwardResponse{}, p2p.Errorf(p2p.CodeBadRequest, "bad forwarded request: %v", err)
	}
	rec := &responseRecorder{header: http.Header{}, status: http.StatusOK}
	a.api.route(rec, hr)
	if rec.body.Len() > maxForwardResponse {
		return forwardResponse{}, p2p.Errorf(p2p.CodeTooLarge, "answer of %d bytes is too large to forward", rec.body.Len())
	}
	return forwardResponse{Status: rec.status, ContentType: rec.header.Get("Content-Type"), Body: rec.body.Bytes()}, nil
}

// maxForwardResponse keeps a relayed answer under the stream message limit
// with room for the JSON envelope (base64 grows bodies by a third).
const maxForwardResponse = 2 << 20

// responseRecorder is the minimal http.ResponseWriter serveForwarded needs.
type responseRecorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *responseRecorder) Header() http.Header { return r.header }

func (r *responseRecorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}

func (r *responseRecorder) Write(p []byte) (int, error) {
	r.wrote = true
	if r.body.Len()+len(p) > maxForwardResponse+1 {
		return 0, errors.New("forwarded answer too large")
	}
	return r.body.Write(p)
}
