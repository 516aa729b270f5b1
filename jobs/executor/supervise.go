package executor

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// groupPoll is how often a killed group is checked for survivors during the
// grace period, so Run does not always wait the full KillGrace.
const groupPoll = 25 * time.Millisecond

// supervisor kills a script's process group on timeout or cancel.
type supervisor struct {
	pgid  int
	grace time.Duration

	mu     sync.Mutex
	exited bool   // the main process has been reaped
	reason string // StatusTimeout or StatusCancelled once a kill started

	exitc chan struct{} // closed when the main process has been reaped
	done  chan struct{} // closed when watch returns
}

func newSupervisor(pgid int, grace time.Duration) *supervisor {
	return &supervisor{pgid: pgid, grace: grace, exitc: make(chan struct{}), done: make(chan struct{})}
}

// watch waits for the main process to exit, ctx to be cancelled or the
// timeout to pass. In the last two cases it sends SIGTERM to the group, then
// SIGKILL after the grace period unless the group is gone by then.
func (s *supervisor) watch(ctx context.Context, timeout time.Duration) {
	defer close(s.done)
	var timeoutC <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timeoutC = t.C
	}
	var reason string
	select {
	case <-s.exitc:
		return
	case <-ctx.Done():
		reason = StatusCancelled
	case <-timeoutC:
		reason = StatusTimeout
	}

	s.mu.Lock()
	if s.exited {
		// Exited normally just as the deadline hit: the survivors are
		// background children of a finished script, not ours to kill.
		s.mu.Unlock()
		return
	}
	s.reason = reason
	// Signalling while the main process is unreaped also guarantees the
	// pgid (its pid) cannot have been recycled.
	syscall.Kill(-s.pgid, syscall.SIGTERM)
	s.mu.Unlock()

	grace := time.NewTimer(s.grace)
	defer grace.Stop()
	poll := time.NewTicker(groupPoll)
	defer poll.Stop()
	for {
		select {
		case <-grace.C:
			syscall.Kill(-s.pgid, syscall.SIGKILL)
			return
		case <-poll.C:
			if groupGone(s.pgid) {
				return
			}
		}
	}
}

// mainExited records that the main process has been reaped, waits for any
// kill sequence to finish, and returns why the group was killed ("" if it
// was not).
func (s *supervisor) mainExited() string {
	s.mu.Lock()
	s.exited = true
	reason := s.reason
	s.mu.Unlock()
	close(s.exitc)
	<-s.done
	return reason
}

// groupGone reports whether no live process is left in the group. Zombies do
// not count: orphans are reaped by init, which in containers may never
// happen, and a zombie holds no pipe and runs no code.
func groupGone(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	return !groupHasLiveMember(pgid)
}

// groupHasLiveMember scans /proc for a non-zombie process in group pgid. On
// any doubt it says yes, so the caller falls back to SIGKILL.
func groupHasLiveMember(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, ent := range entries {
		if _, err := strconv.Atoi(ent.Name()); err != nil {
			continue
		}
		state, pg, ok := procStat(ent.Name())
		if ok && pg == pgid && state != 'Z' && state != 'X' {
			return true
		}
	}
	return false
}

// procStat returns the state and process group of /proc/<pid>/stat. The
// command name may contain spaces and parentheses, so fields are counted from
// the last ')'.
func procStat(pid string) (state byte, pgrp int, ok bool) {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := bytes.Fields(data[i+1:])
	// fields: state ppid pgrp ...
	if len(fields) < 3 || len(fields[0]) != 1 {
		return 0, 0, false
	}
	pg, err := strconv.Atoi(string(fields[2]))
	if err != nil {
		return 0, 0, false
	}
	return fields[0][0], pg, true
}
