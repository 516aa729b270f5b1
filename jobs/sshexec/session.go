package sshexec

import (
	"context"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/herd-io/herd/jobs/executor"
)

// exitInfo is what the server said about how the remote command ended.
type exitInfo struct {
	got    bool   // an exit-status or exit-signal arrived
	code   int    // exit status, -1 if killed by a signal
	signal string // signal name as sent by the server, without "SIG" ("KILL")
}

// session is one pty-less "session" channel, driven at the channel level
// rather than through ssh.Session: ssh.Session.Wait only returns when the
// channel closes, which with a background child holding stdout can be never,
// while we need the exit status the moment it arrives.
type session struct {
	ch     ssh.Channel
	exited chan struct{} // closed when the exit status arrived or the channel closed

	mu   sync.Mutex
	exit exitInfo
}

// openSession opens a session channel and starts reading its requests.
func openSession(c *ssh.Client) (*session, error) {
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		return nil, fmt.Errorf("open ssh session: %w", err)
	}
	s := &session{ch: ch, exited: make(chan struct{})}
	go s.serveRequests(reqs)
	return s, nil
}

// serveRequests records exit-status / exit-signal and signals exited. It
// ends when the channel closes.
func (s *session) serveRequests(reqs <-chan *ssh.Request) {
	var once sync.Once
	markExited := func() { once.Do(func() { close(s.exited) }) }
	defer markExited()
	for req := range reqs {
		switch req.Type {
		case "exit-status":
			var msg struct{ Status uint32 }
			if ssh.Unmarshal(req.Payload, &msg) == nil {
				s.mu.Lock()
				s.exit = exitInfo{got: true, code: int(msg.Status)}
				s.mu.Unlock()
				markExited()
			}
		case "exit-signal":
			var msg struct {
				Signal     string
				CoreDumped bool
				Error      string
				Lang       string
			}
			if ssh.Unmarshal(req.Payload, &msg) == nil {
				s.mu.Lock()
				s.exit = exitInfo{got: true, code: -1, signal: msg.Signal}
				s.mu.Unlock()
				markExited()
			}
		}
		if req.WantReply {
			_ = req.Reply(false, nil)
		}
	}
}

// exitInfo returns what is known about the exit so far.
func (s *session) exitInfo() exitInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exit
}

// start asks sshd to run cmd.
func (s *session) start(cmd string) error {
	ok, err := s.ch.SendRequest("exec", true, ssh.Marshal(struct{ Command string }{cmd}))
	if err != nil {
		return fmt.Errorf("start remote command: %w", err)
	}
	if !ok {
		return fmt.Errorf("start remote command: sshd refused the exec request")
	}
	return nil
}

// signal asks sshd to signal the remote process group (OpenSSH: killpg).
func (s *session) signal(sig ssh.Signal) {
	_, _ = s.ch.SendRequest("signal", false, ssh.Marshal(struct{ Signal string }{string(sig)}))
}

// execute runs cmd on client, feeding spec.Script on stdin and capturing
// output, and turns the outcome into res.
func (r *Runner) execute(ctx context.Context, client *ssh.Client, t Target, spec executor.Spec, rr run, capt *executor.Capture, res executor.Result) executor.Result {
	s, err := openSession(client)
	if err != nil {
		return finish(res, capt, StatusUnreachable, err.Error())
	}
	if r.sessionHook != nil {
		r.sessionHook(1)
		defer r.sessionHook(-1)
	}
	defer s.ch.Close()

	res.Started = time.Now()
	if err := s.start(rr.cmd); err != nil {
		return finish(res, capt, StatusUnreachable, err.Error())
	}

	// Script in, output out. The interpreter reads the script as it runs;
	// the write ends with EOF so it sees the end of the file.
	go func() {
		if _, err := s.ch.Write(spec.Script); err == nil {
			_ = s.ch.CloseWrite()
		}
	}()
	var copiers sync.WaitGroup
	for _, src := range []io.Reader{s.ch, s.ch.Stderr()} {
		copiers.Add(1)
		go func() {
			defer copiers.Done()
			_, _ = io.Copy(capt, src) // capt never fails a write
		}()
	}
	copied := make(chan struct{})
	go func() { copiers.Wait(); close(copied) }()

	var timeoutC <-chan time.Time
	if spec.Timeout > 0 {
		tm := time.NewTimer(spec.Timeout)
		defer tm.Stop()
		timeoutC = tm.C
	}
	reason := ""
	select {
	case <-s.exited:
	case <-timeoutC:
		reason = executor.StatusTimeout
	case <-ctx.Done():
		reason = executor.StatusCancelled
	}
	if reason != "" {
		r.kill(client, s, func(sig string) string { return killCommand(spec, t.User, rr.token, sig) })
	}

	// After the exit, background children may hold the output open: give
	// them WaitDelay, then cut them off by closing the connection.
	wd := time.NewTimer(r.cfg.WaitDelay)
	select {
	case <-copied:
	case <-wd.C:
		_ = client.Close()
		<-copied
	}
	wd.Stop()

	ex := s.exitInfo()
	res.ExitCode = ex.code
	if ex.signal != "" {
		res.Signal = signalName(ex.signal)
	}
	var status, msg string
	switch {
	case reason == executor.StatusTimeout:
		status, msg = reason, fmt.Sprintf("timed out after %s; remote process group killed", spec.Timeout)
	case reason == executor.StatusCancelled:
		status, msg = reason, "cancelled by operator; remote process group killed"
	case !ex.got:
		status, msg = StatusUnreachable, fmt.Sprintf("ssh connection to %s lost before the script finished", t.Addr)
		res.ExitCode = -1
	case ex.code == 0 && ex.signal == "":
		status = executor.StatusSuccess
	default:
		status = executor.StatusFailed
	}
	if reason != "" && !ex.got {
		res.ExitCode = -1
		msg = joinMsg(msg, "no exit status received after the kill")
	}
	return finish(res, capt, status, msg)
}

// kill ends the remote command on timeout or cancel: TERM to all its
// processes, then, once it exited or KillGrace passed, KILL to whatever is
// left. Each signal goes two ways: a "signal" request (OpenSSH killpg's the
// session's process group, but only on privilege-separated sessions, so not
// for root) and a second session running killCmd(sig), which finds the run's
// processes by their HERD_SSH_RUN tag. It waits up to another KillGrace for
// the exit status, as the connection may be dead.
func (r *Runner) kill(c *ssh.Client, s *session, killCmd func(sig string) string) {
	signal := func(sig ssh.Signal) {
		s.signal(sig)
		r.runQuiet(c, killCmd(string(sig)))
	}
	signal(ssh.SIGTERM)
	grace := time.NewTimer(r.cfg.KillGrace)
	defer grace.Stop()
	select {
	case <-s.exited:
	case <-grace.C:
	}
	// Also after a prompt exit: children that ignore TERM may outlive the
	// shell.
	signal(ssh.SIGKILL)
	grace.Reset(r.cfg.KillGrace)
	select {
	case <-s.exited:
	case <-grace.C:
	}
}

// runQuiet runs cmd in a new session on c, discarding its output, and waits
// for it at most KillGrace.
func (r *Runner) runQuiet(c *ssh.Client, cmd string) {
	s, err := openSession(c)
	if err != nil {
		return
	}
	defer s.ch.Close()
	go func() { _, _ = io.Copy(io.Discard, s.ch) }()
	go func() { _, _ = io.Copy(io.Discard, s.ch.Stderr()) }()
	if s.start(cmd) != nil {
		return
	}
	_ = s.ch.CloseWrite()
	t := time.NewTimer(r.cfg.KillGrace)
	defer t.Stop()
	select {
	case <-s.exited:
	case <-t.C:
	}
}

// signalName maps an SSH signal name ("KILL") to the name the local
// executor reports (syscall.Signal's String, "killed"), so results read the
// same in both modes.
func signalName(ssh string) string {
	if sig, ok := sshSignals[ssh]; ok {
		return sig.String()
	}
	return "SIG" + ssh
}

var sshSignals = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "FPE": syscall.SIGFPE,
	"HUP": syscall.SIGHUP, "ILL": syscall.SIGILL, "INT": syscall.SIGINT,
	"KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE, "QUIT": syscall.SIGQUIT,
	"SEGV": syscall.SIGSEGV, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}
