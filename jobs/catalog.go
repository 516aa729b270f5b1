package jobs

import (
	"encoding/json"
	"fmt"

	"github.com/herd-io/herd/consensus/state"
	"github.com/herd-io/herd/jobs/model"
)

// Reads of the global catalog (scripts, accounts, groups, SSH hosts) from a
// local state store: the leader resolving a run reads its own replica.

func listObjects[T any](store *state.Store, prefix string) ([]T, error) {
	_, entries, err := store.KVList(nil, state.ScopeGlobal, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(entries))
	for _, e := range entries {
		var v T
		if err := json.Unmarshal(e.Value, &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", e.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func getObject[T any](store *state.Store, key string) (*T, uint64, error) {
	_, e, err := store.KVGet(nil, state.ScopeGlobal, key)
	if err != nil || e == nil {
		return nil, 0, err
	}
	var v T
	if err := json.Unmarshal(e.Value, &v); err != nil {
		return nil, 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return &v, e.Version, nil
}

func (s *Scheduler) sshHostsMap() map[string]model.SSHHost {
	hosts, err := listObjects[model.SSHHost](s.cfg.Server.Store(), prefixSSHHosts)
	if err != nil {
		s.log.Error("cannot read SSH hosts", "error", err)
	}
	out := make(map[string]model.SSHHost, len(hosts))
	for _, h := range hosts {
		out[h.Name] = h
	}
	return out
}

func groupsMap(store *state.Store) (map[string]model.Group, error) {
	groups, err := listObjects[model.Group](store, prefixGroups)
	if err != nil {
		return nil, err
	}
	out := make(map[string]model.Group, len(groups))
	for _, g := range groups {
		out[g.Name] = g
	}
	return out, nil
}

func defaultAccountName(store *state.Store) (string, error) {
	_, e, err := store.KVGet(nil, state.ScopeGlobal, keyDefaultAccount)
	if err != nil || e == nil {
		return "", err
	}
	return string(e.Value), nil
}

// scriptBody returns the body of name@version ("" = the online version).
func scriptBody(store *state.Store, name, version string) (*model.Script, string, []byte, error) {
	sc, _, err := getObject[model.Script](store, scriptKey(name))
	if err != nil {
		return nil, "", nil, err
	}
	if sc == nil {
		return nil, "", nil, fmt.Errorf("no script named %q (herd script list shows them)", name)
	}
	if version == "" {
		version = sc.Online
	}
	_, e, err := store.KVGet(nil, state.ScopeGlobal, scriptBodyKey(name, version))
	if err != nil {
		return nil, "", nil, err
	}
	if e == nil {
		return nil, "", nil, fmt.Errorf("script %s has no version %q (herd script versions %s lists them)", name, version, name)
	}
	return sc, version, e.Value, nil
}
