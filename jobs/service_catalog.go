package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/consensus/state"
	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh/p2p"
)

// The catalog: global objects (scripts, accounts, groups, SSH hosts) kept
// in the primary IDC's control group and replicated to the others. Every
// change is a read-modify-write guarded by the entry's version.

// casRetries bounds read-modify-write attempts under concurrent changes.
const casRetries = 8

func (s *Service) getGlobal(ctx context.Context, key string, out any) (uint64, error) {
	e, _, err := s.srv.KVGet(ctx, state.ScopeGlobal, key, consensus.QueryOptions{})
	if err != nil || e == nil {
		return 0, err
	}
	if err := json.Unmarshal(e.Value, out); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return e.Version, nil
}

func (s *Service) putGlobal(ctx context.Context, key string, v any, cas *uint64) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = s.srv.KVPut(ctx, state.ScopeGlobal, key, b, cas)
	return err
}

func listGlobal[T any](ctx context.Context, s *Service, prefix string, stamp func(*T, uint64)) ([]T, error) {
	entries, _, err := s.srv.KVList(ctx, state.ScopeGlobal, prefix, consensus.QueryOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(entries))
	for _, e := range entries {
		var v T
		if err := json.Unmarshal(e.Value, &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", e.Key, err)
		}
		stamp(&v, e.ModifyIndex)
		out = append(out, v)
	}
	return out, nil
}

// modify applies fn to the object at key under CAS, retrying on conflicts.
// fn gets nil when the object does not exist and returns the new value.
func modify[T any](ctx context.Context, s *Service, key string, fn func(cur *T) (*T, error)) (*T, error) {
	for range casRetries {
		var cur T
		ver, err := s.getGlobal(ctx, key, &cur)
		if err != nil {
			return nil, err
		}
		var curp *T
		if ver != 0 {
			curp = &cur
		}
		next, err := fn(curp)
		if err != nil {
			return nil, err
		}
		err = s.putGlobal(ctx, key, next, &ver)
		if isConflict(err) {
			continue
		}
		return next, err
	}
	return nil, p2p.Errorf(p2p.CodeUnavailable, "%s changed %d times while being updated; try again", key, casRetries)
}

func notFound(format string, args ...any) error { return p2p.Errorf(p2p.CodeNotFound, format, args...) }

func conflict(format string, args ...any) error {
	return consensus.CommandErrorf(CodeConflict, format, args...)
}

// --- scripts ---

// ScriptVersionOf returns the version id of a script body.
func ScriptVersionOf(body []byte) (version, digest string) {
	sum := sha256.Sum256(body)
	digest = hex.EncodeToString(sum[:])
	return digest[:12], digest
}

// AddScript adds body as a version of script name (creating the script);
// identical content is the same version. The first version, or any when
// online is set, becomes the online version.
func (s *Service) AddScript(ctx context.Context, name, lang string, body []byte, description, note string, online bool) (*model.Script, error) {
	if err := model.ValidateName("script name", name); err != nil {
		return nil, badRequest("%v", err)
	}
	if lang == "" {
		lang = "sh"
	}
	spec := model.ScriptSpec{Lang: lang, Body: body}
	if err := spec.Validate(); err != nil {
		return nil, badRequest("%v", err)
	}
	ver, digest := ScriptVersionOf(body)
	zero := uint64(0)
	if _, err := s.srv.KVPut(ctx, state.ScopeGlobal, scriptBodyKey(name, ver), body, &zero); err != nil && !isConflict(err) {
		return nil, err
	}
	return modify(ctx, s, scriptKey(name), func(cur *model.Script) (*model.Script, error) {
		sc := model.Script{Name: name}
		if cur != nil {
			sc = *cur
			sc.Versions = slices.Clone(cur.Versions)
		}
		sc.Lang = lang
		if description != "" {
			sc.Description = description
		}
		if !slices.ContainsFunc(sc.Versions, func(v model.ScriptVersion) bool { return v.Version == ver }) {
			sc.Versions = append(sc.Versions, model.ScriptVersion{Version: ver, SHA256: digest, Size: len(body), Created: time.Now().UTC(), Note: note})
		}
		if sc.Online == "" || online {
			sc.Online = ver
		}
		return &sc, nil
	})
}

// GetScript returns a script's record.
func (s *Service) GetScript(ctx context.Context, name string) (*model.Script, error) {
	if err := model.ValidateName("script name", name); err != nil {
		return nil, badRequest("%v", err)
	}
	var sc model.Script
	ver, err := s.getGlobal(ctx, scriptKey(name), &sc)
	if err != nil {
		return nil, err
	}
	if ver == 0 {
		return nil, notFound("no script named %q", name)
	}
	return &sc, nil
}

// ScriptBody returns one version's body ("" = the online one).
func (s *Service) ScriptBody(ctx context.Context, name, version string) (*model.Script, string, []byte, error) {
	sc, err := s.GetScript(ctx, name)
	if err != nil {
		return nil, "", nil, err
	}
	if version == "" {
		version = sc.Online
	}
	e, _, err := s.srv.KVGet(ctx, state.ScopeGlobal, scriptBodyKey(name, version), consensus.QueryOptions{})
	if err != nil {
		return nil, "", nil, err
	}
	if e == nil {
		return nil, "", nil, notFound("script %s has no version %q", name, version)
	}
	return sc, version, e.Value, nil
}

// ListScripts lists the library.
func (s *Service) ListScripts(ctx context.Context) ([]model.Script, error) {
	return listGlobal(ctx, s, prefixScripts, func(sc *model.Script, idx uint64) { sc.ModifyIndex = idx })
}

// SetScriptOnline marks version as the one runs use by default.
func (s *Service) SetScriptOnline(ctx context.Context, name, version string) (*model.Script, error) {
	return modify(ctx, s, scriptKey(name), func(cur *model.Script) (*model.Script, error) {
		if cur == nil {
			return nil, notFound("no script named %q", name)
		}
		if !slices.ContainsFunc(cur.Versions, func(v model.ScriptVersion) bool { return v.Version == version }) {
			return nil, notFound("script %s has no version %q", name, version)
		}
		sc := *cur
		sc.Online = version
		return &sc, nil
	})
}

// RemoveScript removes one version (never the online one), or with
// version "" the whole script.
func (s *Service) RemoveScript(ctx context.Context, name, version string) error {
	sc, err := s.GetScript(ctx, name)
	if err != nil {
		return err
	}
	if version == "" {
		for _, v := range sc.Versions {
			if err := s.srv.KVDelete(ctx, state.ScopeGlobal, scriptBodyKey(name, v.Version), nil); err != nil {
				return err
			}
		}
		return s.srv.KVDelete(ctx, state.ScopeGlobal, scriptKey(name), nil)
	}
	_, err = modify(ctx, s, scriptKey(name), func(cur *model.Script) (*model.Script, error) {
		if cur == nil {
			return nil, notFound("no script named %q", name)
		}
		if cur.Online == version {
			return nil, conflict("version %s is the online version of %s: mark another online first (herd script online)", version, name)
		}
		i := slices.IndexFunc(cur.Versions, func(v model.ScriptVersion) bool { return v.Version == version })
		if i < 0 {
			return nil, notFound("script %s has no version %q", name, version)
		}
		sc := *cur
		sc.Versions = slices.Delete(slices.Clone(cur.Versions), i, i+1)
		return &sc, nil
	})
	if err != nil {
		return err
	}
	return s.srv.KVDelete(ctx, state.ScopeGlobal, scriptBodyKey(name, version), nil)
}

// --- accounts ---

var osUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,30}\$?$`)

// PutAccount registers or updates an execution account.
func (s *Service) PutAccount(ctx context.Context, a model.Account) (*model.Account, error) {
	if err := model.ValidateName("account name", a.Name); err != nil {
		return nil, badRequest("%v", err)
	}
	if a.OSUser == "" {
		a.OSUser = a.Name
	}
	if !osUserRE.MatchString(a.OSUser) {
		return nil, badRequest("OS user %q is not a valid user name", a.OSUser)
	}
	for _, g := range a.Groups {
		if err := model.ValidateName("group name", g); err != nil {
			return nil, badRequest("%v", err)
		}
	}
	for _, i := range a.IDCs {
		if err := model.ValidateName("idc", i); err != nil {
			return nil, badRequest("%v", err)
		}
	}
	a.ModifyIndex = 0
	if err := s.putGlobal(ctx, accountKey(a.Name), a, nil); err != nil {
		return nil, err
	}
	return &a, nil
}

// ListAccounts lists accounts and the default.
func (s *Service) ListAccounts(ctx context.Context) (*model.AccountList, error) {
	accts, err := listGlobal(ctx, s, prefixAccounts, func(a *model.Account, idx uint64) { a.ModifyIndex = idx })
	if err != nil {
		return nil, err
	}
	e, _, err := s.srv.KVGet(ctx, state.ScopeGlobal, keyDefaultAccount, consensus.QueryOptions{})
	if err != nil {
		return nil, err
	}
	out := &model.AccountList{Accounts: accts}
	if e != nil {
		out.Default = string(e.Value)
	}
	return out, nil
}

// DeleteAccount removes an account (and clears it as the default).
func (s *Service) DeleteAccount(ctx context.Context, name string) error {
	if err := model.ValidateName("account name", name); err != nil {
		return badRequest("%v", err)
	}
	list, err := s.ListAccounts(ctx)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(list.Accounts, func(a model.Account) bool { return a.Name == name }) {
		return notFound("no account named %q", name)
	}
	if list.Default == name {
		if err := s.srv.KVDelete(ctx, state.ScopeGlobal, keyDefaultAccount, nil); err != nil {
			return err
		}
	}
	return s.srv.KVDelete(ctx, state.ScopeGlobal, accountKey(name), nil)
}

// SetDefaultAccount sets the account runs use without --user ("" clears).
func (s *Service) SetDefaultAccount(ctx context.Context, name string) (*model.AccountList, error) {
	if name == "" {
		if err := s.srv.KVDelete(ctx, state.ScopeGlobal, keyDefaultAccount, nil); err != nil {
			return nil, err
		}
		return s.ListAccounts(ctx)
	}
	var a model.Account
	ver, err := s.getGlobal(ctx, accountKey(name), &a)
	if err != nil {
		return nil, err
	}
	if ver == 0 {
		return nil, notFound("no account named %q (herd account add %s)", name, name)
	}
	if _, err := s.srv.KVPut(ctx, state.ScopeGlobal, keyDefaultAccount, []byte(name), nil); err != nil {
		return nil, err
	}
	return s.ListAccounts(ctx)
}

// --- groups ---

func validateHosts(hosts []string) error {
	for _, h := range hosts {
		if err := model.ValidateName("host name", h); err != nil {
			return err
		}
	}
	return nil
}

// CreateGroup creates a static group; an existing name is a conflict.
func (s *Service) CreateGroup(ctx context.Context, g model.Group) (*model.Group, error) {
	if err := model.ValidateName("group name", g.Name); err != nil {
		return nil, badRequest("%v", err)
	}
	if err := validateHosts(g.Hosts); err != nil {
		return nil, badRequest("%v", err)
	}
	g.Hosts = sortedUnique(g.Hosts)
	g.ModifyIndex = 0
	zero := uint64(0)
	if err := s.putGlobal(ctx, groupKey(g.Name), g, &zero); err != nil {
		if isConflict(err) {
			return nil, conflict("group %s exists (herd group add %s HOST... changes it)", g.Name, g.Name)
		}
		return nil, err
	}
	return &g, nil
}

// GetGroup returns a group.
func (s *Service) GetGroup(ctx context.Context, name string) (*model.Group, error) {
	if err := model.ValidateName("group name", name); err != nil {
		return nil, badRequest("%v", err)
	}
	var g model.Group
	ver, err := s.getGlobal(ctx, groupKey(name), &g)
	if err != nil {
		return nil, err
	}
	if ver == 0 {
		return nil, notFound("no group named %q", name)
	}
	return &g, nil
}

// ListGroups lists the static groups.
func (s *Service) ListGroups(ctx context.Context) ([]model.Group, error) {
	return listGlobal(ctx, s, prefixGroups, func(g *model.Group, idx uint64) { g.ModifyIndex = idx })
}

// UpdateGroupHosts adds and removes hosts of a group.
func (s *Service) UpdateGroupHosts(ctx context.Context, name string, add, remove []string) (*model.Group, error) {
	if err := validateHosts(append(slices.Clone(add), remove...)); err != nil {
		return nil, badRequest("%v", err)
	}
	return modify(ctx, s, groupKey(name), func(cur *model.Group) (*model.Group, error) {
		if cur == nil {
			return nil, notFound("no group named %q (herd group create %s)", name, name)
		}
		g := *cur
		hosts := append(slices.Clone(cur.Hosts), add...)
		hosts = slices.DeleteFunc(hosts, func(h string) bool { return slices.Contains(remove, h) })
		g.Hosts = sortedUnique(hosts)
		return &g, nil
	})
}

// DeleteGroup removes a group.
func (s *Service) DeleteGroup(ctx context.Context, name string) error {
	if _, err := s.GetGroup(ctx, name); err != nil {
		return err
	}
	return s.srv.KVDelete(ctx, state.ScopeGlobal, groupKey(name), nil)
}

func sortedUnique(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

// --- SSH hosts ---

// PutSSHHost registers an agentless host. Its key must parse; secrets are
// never returned.
func (s *Service) PutSSHHost(ctx context.Context, h model.SSHHost) (*model.SSHHost, error) {
	if err := model.ValidateName("host name", h.Name); err != nil {
		return nil, badRequest("%v", err)
	}
	if err := model.ValidateName("idc", h.IDC); err != nil {
		return nil, badRequest("%v (an SSH host needs --idc)", err)
	}
	if !osUserRE.MatchString(h.User) {
		return nil, badRequest("SSH user %q is not a valid user name", h.User)
	}
	addr, err := normalizeSSHAddr(h.Addr)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	h.Addr = addr
	if len(h.Key) == 0 && h.Password == "" {
		return nil, badRequest("SSH host %s needs a key (--key FILE) or a password (--password-env VAR)", h.Name)
	}
	if len(h.Key) > 0 {
		if _, err := ssh.ParsePrivateKey(h.Key); err != nil {
			return nil, badRequest("SSH key for %s: %v (an unencrypted PEM/OpenSSH private key is needed)", h.Name, err)
		}
	}
	h.HasKey, h.HasPassword, h.HostKey, h.ModifyIndex = len(h.Key) > 0, h.Password != "", "", 0
	if err := s.putGlobal(ctx, sshHostKey(h.Name), h, nil); err != nil {
		return nil, err
	}
	return redact(h), nil
}

func normalizeSSHAddr(addr string) (string, error) {
	if addr == "" {
		return "", fmt.Errorf("SSH address is empty")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = strings.Trim(addr, "[]"), "22"
	}
	if host == "" || strings.ContainsAny(host, " /\x00") {
		return "", fmt.Errorf("SSH address %q: want HOST or HOST:PORT", addr)
	}
	return net.JoinHostPort(host, port), nil
}

func redact(h model.SSHHost) *model.SSHHost {
	h.Key, h.Password = nil, ""
	return &h
}

// ListSSHHosts lists agentless hosts without their secrets, with the host
// key fingerprint recorded on first use.
func (s *Service) ListSSHHosts(ctx context.Context) ([]model.SSHHost, error) {
	hosts, err := listGlobal(ctx, s, prefixSSHHosts, func(h *model.SSHHost, idx uint64) { h.ModifyIndex = idx })
	if err != nil {
		return nil, err
	}
	out := make([]model.SSHHost, 0, len(hosts))
	for _, h := range hosts {
		if e, _, err := s.srv.KVGet(ctx, state.ScopeGlobal, sshHostKeyKey(h.Addr), consensus.QueryOptions{}); err == nil && e != nil {
			if pk, err := ssh.ParsePublicKey(e.Value); err == nil {
				h.HostKey = ssh.FingerprintSHA256(pk)
			}
		}
		out = append(out, *redact(h))
	}
	return out, nil
}

// DeleteSSHHost removes an agentless host (its recorded host key stays,
// so a host re-added at the same address is still checked).
func (s *Service) DeleteSSHHost(ctx context.Context, name string) error {
	if err := model.ValidateName("host name", name); err != nil {
		return badRequest("%v", err)
	}
	var h model.SSHHost
	ver, err := s.getGlobal(ctx, sshHostKey(name), &h)
	if err != nil {
		return err
	}
	if ver == 0 {
		return notFound("no SSH host named %q", name)
	}
	return s.srv.KVDelete(ctx, state.ScopeGlobal, sshHostKey(name), nil)
}
