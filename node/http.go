package node

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/herd-io/herd/node/api"
)

// apiServer serves the HTTP API. Handlers are thin: they parse, check and
// call into the agent's parts.
type apiServer struct {
	agent *Agent
	ln    net.Listener
	srv   *http.Server
	mux   *http.ServeMux
}

func newAPIServer(a *Agent, ln net.Listener) *apiServer {
	s := &apiServer{agent: a, ln: ln, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /v1/health", s.health)
	s.mux.HandleFunc("GET /v1/self", s.authed(s.self))
	s.mux.HandleFunc("GET /v1/members", s.authed(s.members))
	s.mux.HandleFunc("GET /v1/members/{name}/ping", s.authed(s.ping))
	s.registerControl()
	s.registerJobs()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, api.CodeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.route),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	return s
}

// route sends /v1/kv/KEY requests to the KV handlers before the mux sees
// them: the mux would "clean" a key like a//b into a redirect, while the KV
// must answer with a clear validation error instead.
func (s *apiServer) route(w http.ResponseWriter, r *http.Request) {
	if key, ok := strings.CutPrefix(r.URL.Path, "/v1/kv/"); ok {
		var h http.HandlerFunc
		switch r.Method {
		case http.MethodGet:
			h = s.kvGet
		case http.MethodPut:
			h = s.kvPut
		case http.MethodDelete:
			h = s.kvDelete
		default:
			writeError(w, http.StatusMethodNotAllowed, api.CodeBadRequest, "method "+r.Method+" not allowed on /v1/kv/KEY (GET, PUT, DELETE)")
			return
		}
		r.SetPathValue("key", key)
		s.authed(h)(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *apiServer) serve() {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.agent.log.Error("api server stopped", "err", err)
	}
}

func (s *apiServer) addr() string { return s.ln.Addr().String() }

func (s *apiServer) shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// close stops the listener when Start fails before serve ran.
func (s *apiServer) close() { _ = s.srv.Close(); _ = s.ln.Close() }

// forwardedKey marks a request that arrived over an authenticated node
// stream; the entry node already checked its token.
type forwardedKey struct{}

// authed wraps h with the bearer-token check and, for ?on=NODE, with
// forwarding to that node.
func (s *apiServer) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(forwardedKey{}) == nil {
			if !s.checkToken(w, r) {
				return
			}
		}
		if on := r.URL.Query().Get("on"); on != "" && on != s.agent.Name() {
			s.forwardHTTP(w, r, on)
			return
		}
		h(w, r)
	}
}

func (s *apiServer) checkToken(w http.ResponseWriter, r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || token == "" {
		writeError(w, http.StatusUnauthorized, api.CodeUnauthorized,
			"missing API token: pass --token or set HERD_TOKEN")
		return false
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(s.agent.token)) != 1 {
		writeError(w, http.StatusForbidden, api.CodeForbidden, "invalid API token")
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.ErrorBody{Error: api.Error{Code: code, Message: msg}})
}
