package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/herd-io/herd/jobs/model"
)

// This file is the client side of script execution: runs, their logs, the
// script library, execution accounts, static groups and SSH targets. The
// wire types are jobs/model's.

// RunsQuery filters GET /v1/runs.
type RunsQuery struct {
	IDC    string // the IDC whose runs to list ("" = the answering node's)
	Status string // running, succeeded, failed or cancelled ("" = all)
	Limit  int    // at most this many, newest first (0 = the server's default)
}

// RunQuery shapes GET /v1/runs/{id}. With Index set the request blocks
// until the run changes past Index or Wait elapses (a blocking query).
type RunQuery struct {
	IDC     string
	Index   uint64        // block until the run's index passes this
	Wait    time.Duration // block at most this long (0 = the server's default)
	NoHosts bool          // leave Hosts out: cheap progress polling
}

// LogsQuery shapes GET /v1/runs/{id}/logs.
type LogsQuery struct {
	IDC    string
	Host   string // required: whose output
	Offset int64  // first byte wanted
	Max    int64  // at most this many bytes (0 = the server's default, 1 MiB)
}

// ScriptAdd is the body of POST /v1/scripts/{name}: a new version of a
// library script. Identical content yields the existing version.
type ScriptAdd struct {
	Lang        string `json:"lang"`
	Body        []byte `json:"body"`
	Description string `json:"description,omitempty"`
	Note        string `json:"note,omitempty"`
	Online      bool   `json:"online,omitempty"` // make this version the online one
}

// ScriptBody is one version's content (GET /v1/scripts/{name}/versions/{version}).
type ScriptBody struct {
	Version string `json:"version"`
	Body    []byte `json:"body"`
	Lang    string `json:"lang"`
}

// sendJSON encodes in as the request body and decodes the answer into out.
func (c *Client) sendJSON(ctx context.Context, method, path string, q url.Values, in, out any) (http.Header, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return nil, fmt.Errorf("encoding request: %w", err)
		}
	}
	return c.do(ctx, method, path, q, body, out)
}

func idcValues(idc string) url.Values {
	v := url.Values{}
	if idc != "" {
		v.Set("idc", idc)
	}
	return v
}

func runPath(id string, rest ...string) string {
	p := "/v1/runs/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// CreateRun starts a run (POST /v1/runs). req.DryRun must be false: use
// DryRun to resolve targets only.
func (c *Client) CreateRun(ctx context.Context, req model.RunRequest) (*model.Run, error) {
	if req.DryRun {
		return nil, fmt.Errorf("CreateRun with DryRun set: call DryRun")
	}
	var out model.Run
	_, err := c.sendJSON(ctx, http.MethodPost, "/v1/runs", nil, req, &out)
	return &out, err
}

// DryRun resolves req's targets without creating anything.
func (c *Client) DryRun(ctx context.Context, req model.RunRequest) (*model.DryRun, error) {
	req.DryRun = true
	var out model.DryRun
	_, err := c.sendJSON(ctx, http.MethodPost, "/v1/runs", nil, req, &out)
	return &out, err
}

// Runs lists runs, newest first (GET /v1/runs).
func (c *Client) Runs(ctx context.Context, q RunsQuery) (*model.RunList, error) {
	v := idcValues(q.IDC)
	if q.Status != "" {
		v.Set("status", q.Status)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out model.RunList
	return &out, c.get(ctx, "/v1/runs", v, &out)
}

// Run reads one run (GET /v1/runs/{id}) and returns it with the index to
// pass back as q.Index to wait for the next change: the X-Herd-Index
// header, or the run's ModifyIndex when the header is missing.
func (c *Client) Run(ctx context.Context, id string, q RunQuery) (*model.RunView, uint64, error) {
	v := idcValues(q.IDC)
	if q.Index > 0 {
		v.Set("index", strconv.FormatUint(q.Index, 10))
	}
	if q.Wait > 0 {
		v.Set("wait", q.Wait.String())
	}
	if q.NoHosts {
		v.Set("hosts", "0")
	}
	var out model.RunView
	h, err := c.do(ctx, http.MethodGet, runPath(id), v, nil, &out)
	if err != nil {
		return nil, 0, err
	}
	index := out.Run.ModifyIndex
	if s := h.Get("X-Herd-Index"); s != "" {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			index = n
		}
	}
	return &out, index, nil
}

// CancelRun asks the run's hosts to stop (POST /v1/runs/{id}/cancel).
func (c *Client) CancelRun(ctx context.Context, id, idc string) (*model.Run, error) {
	var out model.Run
	_, err := c.do(ctx, http.MethodPost, runPath(id, "cancel"), idcValues(idc), nil, &out)
	return &out, err
}

// Rerun starts a new run of run id's script (POST /v1/runs/{id}/rerun): on
// every host, or with failed only on those whose status was failed,
// timeout, unreachable or cancelled.
func (c *Client) Rerun(ctx context.Context, id, idc string, failed bool) (*model.Run, error) {
	var out model.Run
	_, err := c.sendJSON(ctx, http.MethodPost, runPath(id, "rerun"), idcValues(idc),
		map[string]bool{"failed": failed}, &out)
	return &out, err
}

// RunLogs reads a piece of one host's full output (GET /v1/runs/{id}/logs).
func (c *Client) RunLogs(ctx context.Context, id string, q LogsQuery) (*model.LogChunk, error) {
	v := idcValues(q.IDC)
	v.Set("host", q.Host)
	v.Set("offset", strconv.FormatInt(q.Offset, 10))
	if q.Max > 0 {
		v.Set("max", strconv.FormatInt(q.Max, 10))
	}
	var out model.LogChunk
	return &out, c.get(ctx, runPath(id, "logs"), v, &out)
}

func scriptPath(name string, rest ...string) string {
	p := "/v1/scripts/" + url.PathEscape(name)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

// Scripts lists the script library (GET /v1/scripts).
func (c *Client) Scripts(ctx context.Context) ([]model.Script, error) {
	var out struct {
		Scripts []model.Script `json:"scripts"`
	}
	return out.Scripts, c.get(ctx, "/v1/scripts", nil, &out)
}

// Script reads one library script with its versions.
func (c *Client) Script(ctx context.Context, name string) (*model.Script, error) {
	var out model.Script
	return &out, c.get(ctx, scriptPath(name), nil, &out)
}

// AddScript adds a version of script name (creating the script if new).
func (c *Client) AddScript(ctx context.Context, name string, in ScriptAdd) (*model.Script, error) {
	var out model.Script
	_, err := c.sendJSON(ctx, http.MethodPost, scriptPath(name), nil, in, &out)
	return &out, err
}

// ScriptVersion reads the content of one version of script name.
func (c *Client) ScriptVersion(ctx context.Context, name, version string) (*ScriptBody, error) {
	var out ScriptBody
	return &out, c.get(ctx, scriptPath(name, "versions", version), nil, &out)
}

// SetScriptOnline makes version the one runs use when they name none.
func (c *Client) SetScriptOnline(ctx context.Context, name, version string) (*model.Script, error) {
	var out model.Script
	_, err := c.sendJSON(ctx, http.MethodPost, scriptPath(name, "online"), nil,
		map[string]string{"version": version}, &out)
	return &out, err
}

// DeleteScript removes script name, or only one version of it when version
// is set. The server refuses to remove the online version of a script
// that has others.
func (c *Client) DeleteScript(ctx context.Context, name, version string) error {
	v := url.Values{}
	if version != "" {
		v.Set("version", version)
	}
	_, err := c.do(ctx, http.MethodDelete, scriptPath(name), v, nil, nil)
	return err
}

// Accounts lists the execution accounts and the cluster default.
func (c *Client) Accounts(ctx context.Context) (*model.AccountList, error) {
	var out model.AccountList
	return &out, c.get(ctx, "/v1/accounts", nil, &out)
}

// PutAccount creates or replaces an execution account.
func (c *Client) PutAccount(ctx context.Context, a model.Account) (*model.Account, error) {
	var out model.Account
	_, err := c.sendJSON(ctx, http.MethodPut, "/v1/accounts/"+url.PathEscape(a.Name), nil, a, &out)
	return &out, err
}

// DeleteAccount removes an execution account.
func (c *Client) DeleteAccount(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/accounts/"+url.PathEscape(name), nil, nil, nil)
	return err
}

// SetDefaultAccount makes name the account runs use without --user; ""
// clears it (runs then use the agents' own OS user).
func (c *Client) SetDefaultAccount(ctx context.Context, name string) (*model.AccountList, error) {
	var out model.AccountList
	_, err := c.sendJSON(ctx, http.MethodPut, "/v1/accounts-default", nil, map[string]string{"name": name}, &out)
	return &out, err
}

func groupPath(name string, rest ...string) string {
	p := "/v1/groups/" + url.PathEscape(name)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// Groups lists the static groups.
func (c *Client) Groups(ctx context.Context) ([]model.Group, error) {
	var out struct {
		Groups []model.Group `json:"groups"`
	}
	return out.Groups, c.get(ctx, "/v1/groups", nil, &out)
}

// Group reads one static group.
func (c *Client) Group(ctx context.Context, name string) (*model.Group, error) {
	var out model.Group
	return &out, c.get(ctx, groupPath(name), nil, &out)
}

// CreateGroup creates a static group; it fails (HTTP 409) if it exists.
func (c *Client) CreateGroup(ctx context.Context, g model.Group) (*model.Group, error) {
	var out model.Group
	_, err := c.sendJSON(ctx, http.MethodPost, groupPath(g.Name), nil, g, &out)
	return &out, err
}

// UpdateGroupHosts adds and removes hosts of a static group in one write.
func (c *Client) UpdateGroupHosts(ctx context.Context, name string, add, remove []string) (*model.Group, error) {
	in := struct {
		Add    []string `json:"add,omitempty"`
		Remove []string `json:"remove,omitempty"`
	}{add, remove}
	var out model.Group
	_, err := c.sendJSON(ctx, http.MethodPost, groupPath(name, "hosts"), nil, in, &out)
	return &out, err
}

// DeleteGroup removes a static group.
func (c *Client) DeleteGroup(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, groupPath(name), nil, nil, nil)
	return err
}

// SSHHosts lists the agentless SSH targets (secrets blanked).
func (c *Client) SSHHosts(ctx context.Context) ([]model.SSHHost, error) {
	var out struct {
		Hosts []model.SSHHost `json:"hosts"`
	}
	return out.Hosts, c.get(ctx, "/v1/ssh-hosts", nil, &out)
}

// PutSSHHost registers or replaces an SSH target. h carries the PEM key or
// the password; the answer has them blanked.
func (c *Client) PutSSHHost(ctx context.Context, h model.SSHHost) (*model.SSHHost, error) {
	var out model.SSHHost
	_, err := c.sendJSON(ctx, http.MethodPut, "/v1/ssh-hosts/"+url.PathEscape(h.Name), nil, h, &out)
	return &out, err
}

// DeleteSSHHost removes an SSH target.
func (c *Client) DeleteSSHHost(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/ssh-hosts/"+url.PathEscape(name), nil, nil, nil)
	return err
}
