package sshexec

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/herd-io/herd/jobs/executor"
)

// userNameRE bounds Spec.User in SSH mode: it goes into `sudo -u` and a
// `cd ~USER`, so it must be a plain account name.
var userNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// pythonInterp finds python3, falling back to python, on the remote PATH,
// without printing anything; if neither exists env reports "python3" missing.
const pythonInterp = `"$(command -v python3 || command -v python || echo python3)"`

// remoteCommand builds the command line sshd runs through the login shell of
// loginUser. See the package doc for its shape and why the script is read
// from /dev/fd/3. spec must be valid.
func remoteCommand(spec executor.Spec, loginUser, token string) (string, error) {
	lang, err := executor.ParseLang(string(spec.Lang))
	if err != nil {
		return "", err
	}
	var interp string
	switch lang {
	case executor.LangSh:
		interp = "sh"
	case executor.LangBash:
		interp = "bash"
	case executor.LangPython:
		interp = pythonInterp
	default:
		return "", fmt.Errorf("language %q is not supported over ssh", lang)
	}
	sudo := spec.User != "" && spec.User != loginUser
	if sudo && !userNameRE.MatchString(spec.User) {
		return "", fmt.Errorf("user %q is not a valid account name", spec.User)
	}

	var b strings.Builder
	switch {
	case spec.WorkDir != "":
		b.WriteString("cd " + shellQuote(spec.WorkDir) + " && ")
	case sudo:
		// sudo keeps the login user's cwd, which the other account may not
		// be able to enter; start in its home as the local executor does.
		b.WriteString("{ cd ~" + spec.User + " 2>/dev/null || cd /; } && ")
	}
	b.WriteString("exec ")
	env := envAssignments(spec)
	if token != "" {
		env = append(env, shellQuote(tokenVar+"="+token))
	}
	if len(env) > 0 {
		b.WriteString("env " + strings.Join(env, " ") + " ")
	}
	b.WriteString(interp + " /dev/fd/3")
	for _, a := range spec.Args {
		b.WriteString(" " + shellQuote(a))
	}
	b.WriteString(" 3<&0 </dev/null")
	if !sudo {
		return b.String(), nil
	}
	// sudo closes fds above 2, so the whole line, fd 3 juggling included,
	// runs in a shell under sudo; stdin passes through sudo.
	return asUser(spec.User, b.String()), nil
}

// asUser wraps a command line to run as user through sudo.
func asUser(user, cmd string) string {
	return "exec sudo -n -u " + shellQuote(user) + " -- sh -c " + shellQuote(cmd)
}

// tokenVar is the environment variable that tags every process of one run
// (it is inherited down the whole tree), so killCommand can find them.
const tokenVar = "HERD_SSH_RUN"

// killCommand builds the command that sends sig ("TERM", "KILL") to every
// process of the run tagged with token: those whose environment holds
// HERD_SSH_RUN=token, found in /proc with one grep. It prints nothing and
// always exits 0. It must run as the same remote user as the script.
//
// It exists because sshd ignores "signal" requests on sessions without
// privilege separation, which includes every root login.
func killCommand(spec executor.Spec, loginUser, token, sig string) string {
	cmd := "pids=$(grep -lzx -e " + shellQuote(tokenVar+"="+token) +
		" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); " +
		"[ -z \"$pids\" ] || kill -" + sig + " $pids 2>/dev/null; exit 0"
	if spec.User != "" && spec.User != loginUser {
		return asUser(spec.User, cmd)
	}
	return cmd
}

// envAssignments returns the quoted K=V words for the env prefix: the
// HERD_RUN_ID/HERD_HOST labels, then Spec.Env (which wins), sorted by name.
func envAssignments(spec executor.Spec) []string {
	env := map[string]string{}
	if spec.RunID != "" {
		env["HERD_RUN_ID"] = spec.RunID
	}
	if spec.Host != "" {
		env["HERD_HOST"] = spec.Host
	}
	for k, v := range spec.Env {
		env[k] = v
	}
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	slices.Sort(names)
	words := make([]string, len(names))
	for i, k := range names {
		words[i] = shellQuote(k + "=" + env[k])
	}
	return words
}

// shellQuote quotes s as one word for a POSIX shell: single quotes, with
// each embedded quote written as '\”. Any byte except NUL survives.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-./,:@%+=", c) >= 0) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
