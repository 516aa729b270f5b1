// Package sshexec runs herd scripts on hosts that do not run herd
// ("agentless" or SSH mode of `herd run`), over golang.org/x/crypto/ssh, with
// the same Spec and Result model as the local executor
// (github.com/herd-io/herd/jobs/executor).
//
// # Delivery
//
// One connection and one pty-less session per Run. The script body goes over
// the session's stdin; the remote command hands that stream to the
// interpreter as a file, /dev/fd/3, and gives the script /dev/null as its
// stdin:
//
//	cd DIR && exec env K=V ... sh /dev/fd/3 ARGS... 3<&0 </dev/null
//
// rather than `sh -s -- ARGS`: a shell reading its script from stdin shares
// that stdin with every command it runs, so any command that reads stdin
// (apt-get, ssh, read, cat) would silently eat the rest of the script. Python
// is started as python3, falling back to python. Arguments, env values and
// the workdir are single-quoted. Env goes through an `env K=V` prefix because
// sshd's AcceptEnv normally refuses "env" requests; otherwise the script sees
// the login environment of the remote account (unlike the local executor,
// herd does not replace it with a minimal one). With no Spec.WorkDir the
// script starts where sshd starts it, the login user's home.
//
// The remote login shell must be POSIX-compatible (sh, dash, bash, ksh, zsh),
// since sshd hands it the command line above, and /dev/fd must exist (Linux,
// macOS).
//
// # Accounts
//
// Scripts run as the target's login user. Registered herd accounts (--user)
// are not switched to with setuid in SSH mode; if Spec.User is set and
// differs from Target.User, the command is wrapped in `sudo -n -u USER -- sh
// -c ...`, so the login user needs passwordless sudo to that account (sudo
// failing is an ordinary failed result with sudo's message in the output).
//
// # Timeout, cancel and background children
//
// On timeout or cancel the Runner sends TERM to the remote command, then
// KILL once it exited or KillGrace passed, each in two ways:
//
//   - a "signal" request on the session: OpenSSH (7.9+) delivers it with
//     killpg on the session's process group. But sshd refuses it on sessions
//     without privilege separation, and root logins never have that, so on
//     its own this does nothing for the most common fleet login;
//   - a second session on the same connection that signals every process
//     whose environment carries HERD_SSH_RUN=<random token of this run>:
//     the command starts the interpreter with that variable, every child and
//     grandchild inherits it, and one `grep -lzx` over /proc/[0-9]*/environ
//     finds them (Linux /proc and a grep with -z: GNU or BusyBox). This also
//     reaches children that moved to their own process group; only a
//     process that scrubs its environment escapes.
//
// The KILL sweep runs even when the shell exited promptly on TERM, for
// children that ignore TERM. When running through sudo, the sweep runs
// through sudo as the same account.
//
// As with the local executor, a normal exit does not kill background
// children: Run watches for the exit status itself and, once it has it,
// waits at most WaitDelay for the output streams to end before closing the
// session, so a `nohup daemon &` that keeps stdout open does not hold the
// run open (plain ssh would hang there).
//
// # Host keys
//
// Host keys are trusted on first use: the first successful key exchange with
// an address records the offered key in Config.HostKeys; later connections
// pin the host key algorithm to the recorded key's type and refuse any other
// key, before authenticating, so nothing runs on a host whose key changed.
//
// # Results
//
// Statuses are those of the local executor plus StatusUnreachable, used for
// every connection-level failure: dial, handshake, host key mismatch,
// authentication, and a connection lost before the exit status arrived
// (e.g. the host died mid-run). Output (stdout and stderr interleaved as
// received) goes through executor.Capture.
package sshexec
