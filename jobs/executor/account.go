package executor

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// basePath is the PATH every script starts with, whatever the agent's own.
const basePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// account is the OS identity a script runs as.
type account struct {
	name  string
	uid   int
	gid   int
	home  string
	shell string
	// cred is nil when the script runs as the agent's own user: no setuid is
	// needed, and a non-root agent could not do it anyway.
	cred *syscall.Credential
}

// resolveAccount looks up the account for name ("" = the agent's own user).
// euid is the agent's effective uid (a parameter so tests can play non-root).
func resolveAccount(name string, euid int) (*account, error) {
	if name == "" {
		return selfAccount(euid), nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return nil, fmt.Errorf("user %q does not exist on this host", name)
		}
		return nil, fmt.Errorf("look up user %q: %w", name, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %q has a non-numeric uid or gid: %w", name, err)
	}
	a := &account{name: u.Username, uid: uid, gid: gid, home: u.HomeDir, shell: loginShell(u.Username)}
	if uid == euid {
		return a, nil
	}
	if euid != 0 {
		return nil, fmt.Errorf("cannot run as user %q: the agent runs as uid %d, not root", name, euid)
	}
	groups, err := supplementaryGroups(u)
	if err != nil {
		return nil, err
	}
	a.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}
	return a, nil
}

// selfAccount describes the agent's own user. Containers often run as a uid
// with no passwd entry, so every field falls back to something sane rather
// than failing the run.
func selfAccount(euid int) *account {
	a := &account{uid: euid, gid: os.Getegid(), home: os.Getenv("HOME"), name: os.Getenv("USER")}
	if u, err := user.LookupId(strconv.Itoa(euid)); err == nil {
		a.name, a.home = u.Username, u.HomeDir
		a.shell = loginShell(u.Username)
	}
	if a.name == "" {
		a.name = strconv.Itoa(euid)
	}
	if a.shell == "" {
		a.shell = "/bin/sh"
	}
	return a
}

// supplementaryGroups returns the gids to pass to setgroups. Without it the
// child would keep the agent's (root's) supplementary groups.
func supplementaryGroups(u *user.User) ([]uint32, error) {
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("list groups of user %q: %w", u.Username, err)
	}
	var groups []uint32
	for _, id := range ids {
		g, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("user %q: group id %q is not numeric", u.Username, id)
		}
		if !slices.Contains(groups, uint32(g)) {
			groups = append(groups, uint32(g))
		}
	}
	return groups, nil
}

// loginShell reads the account's shell from /etc/passwd: os/user does not
// expose it. Accounts from other NSS sources are not visible to the pure-Go
// os/user either, so this covers everything Lookup can find. Default /bin/sh.
func loginShell(name string) string {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return "/bin/sh"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 7 && fields[0] == name && fields[6] != "" {
			return fields[6]
		}
	}
	return "/bin/sh"
}

// buildEnv returns the script's environment: a clean base plus extra, extra
// winning. Nothing of the agent's own environment leaks in (tokens, proxies).
func buildEnv(a *account, spec Spec) map[string]string {
	env := map[string]string{
		"PATH":        basePath,
		"HOME":        a.home,
		"USER":        a.name,
		"LOGNAME":     a.name,
		"SHELL":       a.shell,
		"LANG":        "C.UTF-8",
		"HERD_RUN_ID": spec.RunID,
		"HERD_HOST":   spec.Host,
	}
	for k, v := range spec.Env {
		env[k] = v
	}
	return env
}

// envList flattens env into KEY=VALUE pairs in a stable order.
func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}
