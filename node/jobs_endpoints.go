package node

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/herd-io/herd/jobs"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/node/api"
)

// HTTP endpoints of script execution: thin over jobs.Service.

func (s *apiServer) registerJobs() {
	h := func(pattern string, fn http.HandlerFunc) { s.mux.HandleFunc(pattern, s.authed(fn)) }
	h("POST /v1/runs", s.runCreate)
	h("GET /v1/runs", s.runList)
	h("GET /v1/runs/{id}", s.runGet)
	h("POST /v1/runs/{id}/cancel", s.runCancel)
	h("POST /v1/runs/{id}/rerun", s.runRerun)
	h("GET /v1/runs/{id}/logs", s.runLogs)
	h("GET /v1/runs/{id}/progress", s.runProgress)

	h("GET /v1/scripts", s.scriptList)
	h("GET /v1/scripts/{name}", s.scriptGet)
	h("POST /v1/scripts/{name}", s.scriptAdd)
	h("GET /v1/scripts/{name}/versions/{version}", s.scriptVersion)
	h("POST /v1/scripts/{name}/online", s.scriptOnline)
	h("DELETE /v1/scripts/{name}", s.scriptRemove)

	h("GET /v1/accounts", s.accountList)
	h("PUT /v1/accounts/{name}", s.accountPut)
	h("DELETE /v1/accounts/{name}", s.accountDelete)
	h("PUT /v1/accounts-default", s.accountDefault)

	h("GET /v1/groups", s.groupList)
	h("GET /v1/groups/{name}", s.groupGet)
	h("POST /v1/groups/{name}", s.groupCreate)
	h("POST /v1/groups/{name}/hosts", s.groupHosts)
	h("DELETE /v1/groups/{name}", s.groupDelete)

	h("GET /v1/files", s.fileList)
	h("POST /v1/files", s.fileAdd)
	h("GET /v1/files/{sha}", s.fileGet)
	h("DELETE /v1/files/{sha}", s.fileDelete)
	h("POST /v1/uploads", s.uploadBegin)
	h("GET /v1/uploads/{id}", s.uploadStatus)
	h("PUT /v1/uploads/{id}", s.uploadWrite)
	h("POST /v1/uploads/{id}/commit", s.uploadCommit)

	h("GET /v1/ssh-hosts", s.sshHostList)
	h("PUT /v1/ssh-hosts/{name}", s.sshHostPut)
	h("DELETE /v1/ssh-hosts/{name}", s.sshHostDelete)
}

// maxRequestBody bounds JSON request bodies (a script is at most 256 KiB,
// base64 makes it a third bigger).
const maxRequestBody = 1 << 20

// readBody decodes a JSON request body into v; on bad input it has
// answered and returns false.
func readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, "reading the request: "+err.Error())
		return false
	}
	if len(data) > maxRequestBody {
		writeError(w, http.StatusRequestEntityTooLarge, api.CodeBadRequest, fmt.Sprintf("request body is larger than %d bytes", maxRequestBody))
		return false
	}
	if err := json.Unmarshal(data, v); err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, "request body: "+err.Error())
		return false
	}
	return true
}

// reply writes v, or err mapped to its HTTP status.
func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeControlError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// withBody answers a request whose JSON body is a B: it decodes the body
// (readBody answers bad input) and replies with what handle makes of it.
func withBody[B, R any](w http.ResponseWriter, r *http.Request, handle func(B) (R, error)) {
	var b B
	if !readBody(w, r, &b) {
		return
	}
	out, err := handle(b)
	reply(w, out, err)
}

func intParam(r *http.Request, name string) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s %q is not a non-negative number", name, v)
	}
	return n, nil
}

func (s *apiServer) runCreate(w http.ResponseWriter, r *http.Request) {
	var req model.RunRequest
	if !readBody(w, r, &req) {
		return
	}
	res, err := s.agent.jobs.CreateRun(r.Context(), req)
	if err != nil {
		writeControlError(w, err)
		return
	}
	if res.DryRun != nil {
		writeJSON(w, http.StatusOK, res.DryRun)
		return
	}
	writeJSON(w, http.StatusOK, res.Run)
}

func (s *apiServer) runList(w http.ResponseWriter, r *http.Request) {
	limit, err := intParam(r, "limit")
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	q := r.URL.Query()
	out, err := s.agent.jobs.ListRuns(r.Context(), q.Get("idc"), model.RunStatus(q.Get("status")), limit)
	reply(w, out, err)
}

func (s *apiServer) runGet(w http.ResponseWriter, r *http.Request) {
	opts, ctx, cancel, ok := readOptions(w, r)
	if !ok {
		return
	}
	defer cancel()
	q := r.URL.Query()
	v, meta, err := s.agent.jobs.GetRun(ctx, q.Get("idc"), r.PathValue("id"), q.Get("hosts") != "0", opts)
	if err != nil {
		writeControlError(w, err)
		return
	}
	setIndexHeaders(w, meta)
	writeJSON(w, http.StatusOK, v)
}

func (s *apiServer) runCancel(w http.ResponseWriter, r *http.Request) {
	out, err := s.agent.jobs.CancelRun(r.Context(), r.URL.Query().Get("idc"), r.PathValue("id"))
	reply(w, out, err)
}

func (s *apiServer) runRerun(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Failed bool `json:"failed"`
	}
	if r.ContentLength != 0 && !readBody(w, r, &body) {
		return
	}
	res, err := s.agent.jobs.Rerun(r.Context(), r.URL.Query().Get("idc"), r.PathValue("id"), body.Failed)
	if err != nil {
		writeControlError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res.Run)
}

func (s *apiServer) runLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var offset int64
	if v := q.Get("offset"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("offset %q is not a non-negative number", v))
			return
		}
		offset = n
	}
	max, err := intParam(r, "max")
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	out, err := s.agent.jobs.Logs(r.Context(), q.Get("idc"), r.PathValue("id"), q.Get("host"), offset, max)
	reply(w, out, err)
}

// --- scripts ---

type scriptAddBody struct {
	Lang        string `json:"lang"`
	Body        []byte `json:"body"`
	Description string `json:"description"`
	Note        string `json:"note"`
	Online      bool   `json:"online"`
}

func (s *apiServer) scriptList(w http.ResponseWriter, r *http.Request) {
	out, err := s.agent.jobs.ListScripts(r.Context())
	reply(w, map[string]any{"scripts": out}, err)
}

func (s *apiServer) scriptGet(w http.ResponseWriter, r *http.Request) {
	out, err := s.agent.jobs.GetScript(r.Context(), r.PathValue("name"))
	reply(w, out, err)
}

func (s *apiServer) scriptAdd(w http.ResponseWriter, r *http.Request) {
	withBody(w, r, func(b scriptAddBody) (*model.Script, error) {
		return s.agent.jobs.AddScript(r.Context(), r.PathValue("name"), b.Lang, b.Body, b.Description, b.Note, b.Online)
	})
}

func (s *apiServer) scriptVersion(w http.ResponseWriter, r *http.Request) {
	sc, ver, body, err := s.agent.jobs.ScriptBody(r.Context(), r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		writeControlError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"version": ver, "body": body, "lang": sc.Lang})
}

func (s *apiServer) scriptOnline(w http.ResponseWriter, r *http.Request) {
	withBody(w, r, func(b struct {
		Version string `json:"version"`
	}) (*model.Script, error) {
		return s.agent.jobs.SetScriptOnline(r.Context(), r.PathValue("name"), b.Version)
	})
}

func (s *apiServer) scriptRemove(w http.ResponseWriter, r *http.Request) {
	err := s.agent.jobs.RemoveScript(r.Context(), r.PathValue("name"), r.URL.Query().Get("version"))
	reply(w, struct{}{}, err)
}

// --- accounts ---

func (s *apiServer) accountList(w http.ResponseWriter, r *http.Request) {
	out, err := s.agent.jobs.ListAccounts(r.Context())
	reply(w, out, err)
}

func (s *apiServer) accountPut(w http.ResponseWriter, r *http.Request) {
	withBody(w, r, func(a model.Account) (*model.Account, error) {
		a.Name = r.PathValue("name")
		return s.agent.jobs.PutAccount(r.Context(), a)
	})
}

func (s *apiServer) accountDelete(w http.ResponseWriter, r *http.Request) {
	reply(w, struct{}{}, s.agent.jobs.DeleteAccount(r.Context(), r.PathValue("name")))
}

func (s *apiServer) accountDefault(w http.ResponseWriter, r *http.Request) {
	withBody(w, r, func(b struct {
		Name string `json:"name"`
	}) (*model.AccountList, error) {
		return s.agent.jobs.SetDefaultAccount(r.Context(), b.Name)
	})
}

// --- groups ---

func (s *apiServer) groupList(w http.ResponseWriter, r *http.Request) {
	out, err := s.agent.jobs.ListGroups(r.Context())
	reply(w, map[string]any{"groups": out}, err)
}

func (s *apiServer) groupGet(w http.ResponseWriter, r *http.Request) {
	out, err := s.agent.jobs.GetGroup(r.Context(), r.PathValue("name"))
	reply(w, out, err)
}

func (s *apiServer) groupCreate(w http.ResponseWriter, r *http.Request) {
	withBody(w, r, func(g model.Group) (*model.Group, error) {
		g.Name = r.PathValue("name")
		return s.agent.jobs.CreateGroup(r.Context(), g)
	})
}

func (s *apiServer) groupHosts(w http.ResponseWriter, r *http.Request) {
	withBody(w, r, func(b struct {
		Add    []string `json:"add"`
		Remove []string `json:"remove"`
	}) (*model.Group, error) {
		return s.agent.jobs.UpdateGroupHosts(r.Context(), r.PathValue("name"), b.Add, b.Remove)
	})
}

func (s *apiServer) groupDelete(w http.ResponseWriter, r *http.Request) {
	reply(w, struct{}{}, s.agent.jobs.DeleteGroup(r.Context(), r.PathValue("name")))
}

// --- SSH hosts ---

func (s *apiServer) sshHostList(w http.ResponseWriter, r *http.Request) {
	out, err := s.agent.jobs.ListSSHHosts(r.Context())
	reply(w, map[string]any{"hosts": out}, err)
}

func (s *apiServer) sshHostPut(w http.ResponseWriter, r *http.Request) {
	withBody(w, r, func(h model.SSHHost) (*model.SSHHost, error) {
		h.Name = r.PathValue("name")
		return s.agent.jobs.PutSSHHost(r.Context(), h)
	})
}

func (s *apiServer) sshHostDelete(w http.ResponseWriter, r *http.Request) {
	reply(w, struct{}{}, s.agent.jobs.DeleteSSHHost(r.Context(), r.PathValue("name")))
}

// --- files and uploads ---

func (s *apiServer) fileList(w http.ResponseWriter, r *http.Request) {
	out, err := s.agent.jobs.ListFiles(r.Context())
	reply(w, out, err)
}

func (s *apiServer) fileAdd(w http.ResponseWriter, r *http.Request) {
	withBody(w, r, func(b struct {
		Path string `json:"path"`
	}) (*model.File, error) {
		return s.agent.jobs.AddLocalFile(r.Context(), b.Path)
	})
}

func (s *apiServer) fileGet(w http.ResponseWriter, r *http.Request) {
	out, err := s.agent.jobs.GetFile(r.Context(), r.PathValue("sha"))
	reply(w, out, err)
}

func (s *apiServer) fileDelete(w http.ResponseWriter, r *http.Request) {
	reply(w, struct{}{}, s.agent.jobs.RemoveFile(r.Context(), r.PathValue("sha")))
}

func (s *apiServer) uploadBegin(w http.ResponseWriter, r *http.Request) {
	withBody(w, r, func(b struct {
		Name string `json:"name"`
		Size int64  `json:"size"`
	}) (*jobs.Upload, error) {
		return s.agent.jobs.BeginUpload(b.Name, b.Size)
	})
}

func (s *apiServer) uploadStatus(w http.ResponseWriter, r *http.Request) {
	out, err := s.agent.jobs.UploadStatus(r.PathValue("id"))
	reply(w, out, err)
}

// uploadWrite appends a raw chunk (the body) at ?offset=N.
func (s *apiServer) uploadWrite(w http.ResponseWriter, r *http.Request) {
	off, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err != nil || off < 0 {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, "offset must be a non-negative number")
		return
	}
	out, err := s.agent.jobs.WriteUpload(r.PathValue("id"), off, r.Body)
	reply(w, out, err)
}

func (s *apiServer) uploadCommit(w http.ResponseWriter, r *http.Request) {
	var b struct {
		SHA256 string `json:"sha256"`
	}
	if r.ContentLength != 0 && !readBody(w, r, &b) {
		return
	}
	out, err := s.agent.jobs.CommitUpload(r.Context(), r.PathValue("id"), b.SHA256)
	reply(w, out, err)
}

func (s *apiServer) runProgress(w http.ResponseWriter, r *http.Request) {
	out, err := s.agent.jobs.PushProgress(r.Context(), r.URL.Query().Get("idc"), r.PathValue("id"))
	reply(w, out, err)
}
