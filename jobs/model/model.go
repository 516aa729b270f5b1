// Package model holds the objects of runs as the control group stores them
// and the HTTP API shows them: runs, per-host results, scripts, execution
// accounts, static groups, SSH targets, files and pushes. It has no behaviour
// beyond validation and no dependencies beyond the standard library, so the
// API client (node/api) and the CLI can share it with the jobs package.
package model

import (
	"time"
)

// HostStatus is where one targeted host stands in a run. The terminal
// statuses are final: the first one committed for a host wins.
type HostStatus string

// Host statuses.
const (
	HostPending     HostStatus = "pending"     // not yet acknowledged by its executor
	HostRunning     HostStatus = "running"     // acknowledged, executing
	HostSuccess     HostStatus = "success"     // exit code 0
	HostFailed      HostStatus = "failed"      // non-zero exit, or could not start (Error says why)
	HostTimeout     HostStatus = "timeout"     // killed at the run's timeout
	HostCancelled   HostStatus = "cancelled"   // the run was cancelled before or while it ran
	HostUnreachable HostStatus = "unreachable" // dead in gossip, unknown, or no acknowledgement by the deadline
	HostSkipped     HostStatus = "skipped"     // deliberately not run (e.g. a push whose file was already identical)
)

// Terminal reports whether s is final.
func (s HostStatus) Terminal() bool {
	switch s {
	case HostSuccess, HostFailed, HostTimeout, HostCancelled, HostUnreachable, HostSkipped:
		return true
	}
	return false
}

// AllHostStatuses lists every status in display order.
var AllHostStatuses = []HostStatus{HostPending, HostRunning, HostSuccess, HostFailed, HostTimeout, HostCancelled, HostUnreachable, HostSkipped}

// RunStatus is the state of a whole run.
type RunStatus string

// Run statuses.
const (
	RunRunning   RunStatus = "running"   // some host is not terminal yet
	RunSucceeded RunStatus = "succeeded" // every host ended in success (or skipped)
	RunFailed    RunStatus = "failed"    // every host is terminal and at least one did not succeed
	RunCancelled RunStatus = "cancelled" // cancelled by an operator; every host is terminal
)

// TargetKind says how a target is reached.
type TargetKind string

// Target kinds.
const (
	TargetAgent TargetKind = "agent" // a node running herd agent
	TargetSSH   TargetKind = "ssh"   // an agentless host reached over SSH from an agent of its IDC
)

// Targets selects hosts. The result is the union of every criterion given;
// IDC picks the IDC whose hosts are considered (default: the IDC of the node
// the request entered).
type Targets struct {
	All      bool     `json:"all,omitempty"`      // every host of the IDC (agents and SSH targets)
	IDC      string   `json:"idc,omitempty"`      // the IDC to run in
	Hosts    []string `json:"hosts,omitempty"`    // host names (agents or SSH targets)
	Groups   []string `json:"groups,omitempty"`   // static group names
	Selector string   `json:"selector,omitempty"` // label/attribute selector over live membership (see mesh.ParseSelector)
}

// Empty reports whether no criterion is set.
func (t Targets) Empty() bool {
	return !t.All && len(t.Hosts) == 0 && len(t.Groups) == 0 && t.Selector == ""
}

// Target is one resolved host of a run.
type Target struct {
	Name string     `json:"name"`
	Kind TargetKind `json:"kind"`
}

// ScriptSpec is what a run executes.
type ScriptSpec struct {
	Lang    string            `json:"lang"`              // sh, bash or python
	Body    []byte            `json:"body"`              // the script itself
	Args    []string          `json:"args,omitempty"`    // positional arguments
	Env     map[string]string `json:"env,omitempty"`     // extra environment
	Timeout Duration          `json:"timeout"`           // 0 = DefaultTimeout
	WorkDir string            `json:"workdir,omitempty"` // absolute; "" = the account's home
	// Name and Version are set when the script came from the library.
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
	// Command is set for inline runs (`herd run -- CMD ARGS`): shown instead of the body.
	Command string `json:"command,omitempty"`
}

// DefaultTimeout applies when a run gives none.
const DefaultTimeout = time.Hour

// MaxScriptSize bounds a script body.
const MaxScriptSize = 256 << 10

// RunRequest asks for a new run (POST /v1/runs).
type RunRequest struct {
	Targets Targets    `json:"targets"`
	Script  ScriptSpec `json:"script"`
	// ScriptRef names a library script NAME or NAME@VERSION instead of Script.Body
	// (Lang/Args/Env/Timeout/WorkDir of Script still apply when set).
	ScriptRef string `json:"script_ref,omitempty"`
	Account   string `json:"account,omitempty"` // execution account; "" = the cluster default
	DryRun    bool   `json:"dry_run,omitempty"` // resolve targets only, create nothing
	// RerunOf links a rerun to the run it repeats.
	RerunOf string `json:"rerun_of,omitempty"`
	// Push makes the run a file push instead of a script.
	Push *PushSpec `json:"push,omitempty"`
}

// Run is one execution of a script on a set of hosts in one IDC.
type Run struct {
	ID          string             `json:"id"`
	IDC         string             `json:"idc"`
	Status      RunStatus          `json:"status"`
	Script      ScriptSpec         `json:"script"` // Body is left out of listings
	Account     string             `json:"account"`
	OSUser      string             `json:"os_user,omitempty"` // the account's OS user ("" = the agent's own)
	Targets     Targets            `json:"targets"`           // as asked
	Total       int                `json:"total"`             // resolved hosts
	Counts      map[HostStatus]int `json:"counts"`            // hosts per status (pending included)
	Created     time.Time          `json:"created"`
	Finished    *time.Time         `json:"finished,omitempty"`
	Cancelled   bool               `json:"cancelled,omitempty"` // an operator asked to cancel
	RerunOf     string             `json:"rerun_of,omitempty"`
	Push        *PushSpec          `json:"push,omitempty"`       // set for file pushes
	CreatedBy   string             `json:"created_by,omitempty"` // node the request entered
	Leader      string             `json:"leader,omitempty"`     // leader that created it
	ModifyIndex uint64             `json:"modify_index"`
}

// HostResult is one host's outcome in a run. Output holds the head and tail;
// the full output stays on Node's disk (herd logs).
type HostResult struct {
	Host     string     `json:"host"`
	Kind     TargetKind `json:"kind"`
	Status   HostStatus `json:"status"`
	Node     string     `json:"node,omitempty"` // the agent that executed (the host itself, or an SSH executor)
	ExitCode int        `json:"exit_code"`
	Signal   string     `json:"signal,omitempty"`
	Error    string     `json:"error,omitempty"` // why it failed to run / was unreachable, for humans
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	Output   Output     `json:"output"`
	// Transfer is set for pushes.
	Transfer *TransferStats `json:"transfer,omitempty"`
}

// Duration returns how long the host ran, 0 if it did not.
func (h HostResult) Duration() time.Duration {
	if h.Started == nil || h.Finished == nil {
		return 0
	}
	return h.Finished.Sub(*h.Started)
}

// Output summarizes a host's combined stdout and stderr.
type Output struct {
	Bytes     int64  `json:"bytes"`               // bytes produced
	SHA256    string `json:"sha256,omitempty"`    // digest of all of them
	Head      []byte `json:"head,omitempty"`      // first bytes (up to 32 KiB)
	Tail      []byte `json:"tail,omitempty"`      // last bytes not in Head (up to 32 KiB)
	Truncated bool   `json:"truncated,omitempty"` // bytes between Head and Tail are elided
}

// RunView is a run with its hosts (GET /v1/runs/ID).
type RunView struct {
	Run   Run          `json:"run"`
	Hosts []HostResult `json:"hosts"` // every target, pending ones included, sorted by name
}

// RunList is GET /v1/runs.
type RunList struct {
	Runs []Run `json:"runs"` // newest first
}

// DryRun is the answer to a RunRequest with DryRun set.
type DryRun struct {
	IDC     string   `json:"idc"`
	Targets []Target `json:"targets"`
	Unknown []string `json:"unknown,omitempty"` // names that matched nothing (they would be unreachable)
}

// LogChunk is a piece of a host's full output (GET /v1/runs/ID/logs?host=H&offset=N).
type LogChunk struct {
	Host   string `json:"host"`
	Offset int64  `json:"offset"`
	Data   []byte `json:"data"`
	Size   int64  `json:"size"` // bytes stored so far
	Done   bool   `json:"done"` // the host is terminal and Data reaches the end
	// Partial is set when the agent could not be asked and Data is only
	// the head and tail kept by the control group.
	Partial bool `json:"partial,omitempty"`
}

// Script is a library script with its versions (content-addressed).
type Script struct {
	Name        string          `json:"name"`
	Lang        string          `json:"lang"`
	Description string          `json:"description,omitempty"`
	Online      string          `json:"online"` // the version runs use when none is named
	Versions    []ScriptVersion `json:"versions"`
	ModifyIndex uint64          `json:"modify_index"`
}

// ScriptVersion is one content of a script. Version is the first 12 hex
// digits of the body's SHA-256.
type ScriptVersion struct {
	Version string    `json:"version"`
	SHA256  string    `json:"sha256"`
	Size    int       `json:"size"`
	Created time.Time `json:"created"`
	Note    string    `json:"note,omitempty"`
}

// Account is an execution account: an OS user runs may run as, optionally
// limited to groups or IDCs.
type Account struct {
	Name        string   `json:"name"`
	OSUser      string   `json:"os_user"` // defaults to Name
	Groups      []string `json:"groups,omitempty"`
	IDCs        []string `json:"idcs,omitempty"`
	ModifyIndex uint64   `json:"modify_index"`
}

// AccountList is GET /v1/accounts.
type AccountList struct {
	Accounts []Account `json:"accounts"`
	Default  string    `json:"default,omitempty"` // "" = the agents' own OS user
}

// Group is a static group of host names.
type Group struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Hosts       []string `json:"hosts"`
	ModifyIndex uint64   `json:"modify_index"`
}

// SSHHost is an agentless host.
type SSHHost struct {
	Name        string `json:"name"`
	Addr        string `json:"addr"` // host:port
	IDC         string `json:"idc"`
	User        string `json:"user"`
	Key         []byte `json:"key,omitempty"`      // PEM private key; never shown by the API
	Password    string `json:"password,omitempty"` // never shown by the API
	HasKey      bool   `json:"has_key"`            // shown instead of Key
	HasPassword bool   `json:"has_password"`
	HostKey     string `json:"host_key,omitempty"` // SHA256 fingerprint recorded on first use
	ModifyIndex uint64 `json:"modify_index"`
}
