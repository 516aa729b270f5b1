package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Executor runs scripts on this machine. It holds no per-run state, so one
// Executor serves any number of concurrent Runs.
type Executor struct {
	cfg Config
	// geteuid is os.Geteuid; a field so tests can play a non-root agent.
	geteuid func() int
}

// New validates cfg, fills in defaults and makes sure WorkRoot exists.
func New(cfg Config) (*Executor, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ensureWorkRoot(cfg.WorkRoot); err != nil {
		return nil, err
	}
	return &Executor{cfg: cfg, geteuid: os.Geteuid}, nil
}

// Run executes spec, writing its combined output through a Capture at
// outputPath, and blocks until the script has ended and its output is
// drained (at most WaitDelay after the main process exits).
//
// Cancelling ctx is an operator cancel: the whole process group gets SIGTERM,
// then SIGKILL after KillGrace, and the status is cancelled. Spec.Timeout does
// the same with status timeout. Run never panics: every failure, including
// one to even start (unknown user, missing interpreter or workdir, a non-root
// agent asked to switch users), is a Result with Status failed, ExitCode -1
// and Error set.
func (e *Executor) Run(ctx context.Context, spec Spec, outputPath string) (res Result) {
	res.Started = time.Now()
	res.ExitCode = -1
	defer func() {
		// A panic here would take down the agent and every other run on the
		// host with it; one failed run is the better outcome.
		if p := recover(); p != nil {
			res.Status = StatusFailed
			res.ExitCode = -1
			res.Error = fmt.Sprintf("internal error in executor: %v", p)
			res.Finished = time.Now()
		}
	}()

	capt, err := NewCapture(outputPath, e.cfg.Limits)
	if err != nil {
		return e.failed(res, nil, err.Error())
	}
	if err := spec.Validate(); err != nil {
		return e.failed(res, capt, err.Error())
	}
	if ctx.Err() != nil {
		res = e.failed(res, capt, "cancelled before the script started")
		res.Status = StatusCancelled
		return res
	}

	p, err := e.prepare(spec)
	if err != nil {
		return e.failed(res, capt, err.Error())
	}
	defer os.RemoveAll(p.runDir)
	defer p.script.Close() // execute closes it once the child has it; this covers early returns

	return e.execute(ctx, spec, p, capt, res)
}

// drainGrace bounds the wait for the rest of the output once the whole
// process group has exited.
const drainGrace = 30 * time.Second

// prepared is everything resolved on this host before the process starts.
type prepared struct {
	acct   *account
	argv   []string
	env    []string
	dir    string
	runDir string
	// script is the script file, open for reading; the child gets it as fd
	// 3 and the interpreter reads /dev/fd/3. The account may not be able
	// to traverse the agent's data directory to the file's path (it is
	// 0700 in most setups), but an inherited descriptor needs no path.
	script *os.File
}

// scriptFD is the descriptor the script reaches the interpreter on.
const scriptFD = "/dev/fd/3"

// prepare resolves the account, interpreter and workdir and writes the script
// file. Each error is phrased for the operator reading a per-host result.
func (e *Executor) prepare(spec Spec) (*prepared, error) {
	lang, _ := ParseLang(string(spec.Lang)) // validated already
	acct, err := resolveAccount(spec.User, e.geteuid())
	if err != nil {
		return nil, err
	}
	env := buildEnv(acct, spec)
	interp, err := interpreter(lang, env["PATH"])
	if err != nil {
		return nil, err
	}
	dir, err := workDir(spec.WorkDir, acct)
	if err != nil {
		return nil, err
	}
	runDir, script, err := writeScript(e.cfg.WorkRoot, lang, spec.Script, acct)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(script)
	if err != nil {
		os.RemoveAll(runDir)
		return nil, fmt.Errorf("open script file: %w", err)
	}
	argv := append(interp, scriptFD)
	argv = append(argv, spec.Args...)
	return &prepared{acct: acct, argv: argv, env: envList(env), dir: dir, runDir: runDir, script: f}, nil
}

// workDir picks the directory the script starts in.
func workDir(dir string, a *account) (string, error) {
	if dir == "" {
		if a.home != "" {
			if fi, err := os.Stat(a.home); err == nil && fi.IsDir() {
				return a.home, nil
			}
		}
		return "/", nil
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("workdir %q does not exist on this host", dir)
	case err != nil:
		return "", fmt.Errorf("workdir %q: %w", dir, err)
	case !fi.IsDir():
		return "", fmt.Errorf("workdir %q is not a directory", dir)
	}
	return dir, nil
}

// writeScript stores body in a fresh 0700 directory under root, as a 0500
// file. Both belong to the target account when it is not the agent's, so the
// script can read itself and nobody else can read it. The caller removes the
// directory after the run.
func writeScript(root string, lang Lang, body []byte, a *account) (dir, path string, err error) {
	dir, err = os.MkdirTemp(root, "run-")
	if err != nil {
		return "", "", fmt.Errorf("create run directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	ext := ".sh"
	if lang == LangPython {
		ext = ".py" // so tracebacks name a file that looks like what it is
	}
	path = filepath.Join(dir, "script"+ext)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o500)
	if err != nil {
		return "", "", fmt.Errorf("create script file: %w", err)
	}
	_, werr := f.Write(body)
	var cerr error
	if a.cred != nil {
		cerr = f.Chown(int(a.cred.Uid), int(a.cred.Gid))
	}
	if err := errors.Join(werr, cerr, f.Close()); err != nil {
		return "", "", fmt.Errorf("write script file: %w", err)
	}
	if a.cred != nil {
		if err := os.Chown(dir, int(a.cred.Uid), int(a.cred.Gid)); err != nil {
			return "", "", fmt.Errorf("chown run directory: %w", err)
		}
	}
	return dir, path, nil
}

// execute starts the prepared process and supervises it to the end.
func (e *Executor) execute(ctx context.Context, spec Spec, p *prepared, capt *Capture, res Result) Result {
	// One pipe for both stdout and stderr keeps the interleaving exact. It is
	// our own pipe, not exec's, so that Wait returns the moment the main
	// process exits: timeout and cancel then apply to the script's lifetime
	// only, never to a background child still holding the pipe after a normal
	// exit.
	r, w, err := os.Pipe()
	if err != nil {
		return e.failed(res, capt, fmt.Sprintf("create output pipe: %v", err))
	}
	cmd := &exec.Cmd{
		Path:       p.argv[0],
		Args:       p.argv,
		Env:        p.env,
		Dir:        p.dir,
		Stdout:     w,
		Stderr:     w,
		ExtraFiles: []*os.File{p.script},
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:    true,
			Credential: p.acct.cred,
		},
	}
	res.Started = time.Now()
	err = cmd.Start()
	w.Close() // the child has its copy; ours would keep the pipe open forever
	p.script.Close()
	if err != nil {
		r.Close()
		return e.failed(res, capt, fmt.Sprintf("start %s as user %q: %v", p.argv[0], p.acct.name, err))
	}

	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				capt.Write(buf[:n]) // never fails for want of space
			}
			if err != nil {
				return
			}
		}
	}()

	sup := newSupervisor(cmd.Process.Pid, e.cfg.KillGrace)
	go sup.watch(ctx, spec.Timeout)
	waitErr := cmd.Wait()
	reason := sup.mainExited()

	// Background children may still hold the pipe. Give them WaitDelay, then
	// cut them off: Run must return, and they are not ours to kill.
	// When nothing of the script's process group is left, nobody else can
	// hold the pipe: the reader only needs to be scheduled to see EOF, so
	// a loaded machine gets a long grace instead of losing output.
	// groupGone asks the kernel first and reads /proc only when some of
	// the group is left: a scan of every process per finished script made
	// a fan-out quadratic in the scripts running at once.
	delay := e.cfg.WaitDelay
	if groupGone(cmd.Process.Pid) {
		delay = max(delay, drainGrace)
	}
	wd := time.NewTimer(delay)
	select {
	case <-copied:
	case <-wd.C:
		if err := r.SetReadDeadline(time.Now()); err != nil {
			r.Close()
		}
		<-copied
	}
	wd.Stop()
	r.Close()

	var msgs []string
	var ws syscall.WaitStatus
	if cmd.ProcessState != nil { // nil only if wait4 itself failed
		ws, _ = cmd.ProcessState.Sys().(syscall.WaitStatus)
	} else {
		ws = syscall.WaitStatus(0xff << 8) // exit status 255: never report success
	}
	if ws.Signaled() {
		res.ExitCode = -1
		res.Signal = ws.Signal().String()
	} else {
		res.ExitCode = ws.ExitStatus()
	}
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		msgs = append(msgs, fmt.Sprintf("wait: %v", waitErr))
	}
	switch {
	case reason == StatusTimeout:
		res.Status = StatusTimeout
		msgs = append(msgs, fmt.Sprintf("timed out after %s; process group killed", spec.Timeout))
	case reason == StatusCancelled:
		res.Status = StatusCancelled
		msgs = append(msgs, "cancelled by operator; process group killed")
	case res.ExitCode == 0 && res.Signal == "" && waitErr == nil:
		res.Status = StatusSuccess
	default:
		res.Status = StatusFailed
	}
	if err := capt.Close(); err != nil {
		msgs = append(msgs, fmt.Sprintf("output not fully stored: %v", err))
	}
	res.Error = strings.Join(msgs, "; ")
	res.Output = capt.Summary()
	res.Finished = time.Now()
	return res
}

// failed finishes res as a run that could not start.
func (e *Executor) failed(res Result, capt *Capture, msg string) Result {
	res.Status = StatusFailed
	res.ExitCode = -1
	res.Error = msg
	if capt != nil {
		if err := capt.Close(); err != nil {
			res.Error += fmt.Sprintf("; output: %v", err)
		}
		res.Output = capt.Summary()
	}
	res.Finished = time.Now()
	if res.Started.After(res.Finished) {
		res.Started = res.Finished
	}
	return res
}
