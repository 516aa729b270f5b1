package sshdtest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// killTree SIGKILLs root and all its descendants. It first SIGSTOPs the tree
// (stopped processes cannot fork) and re-walks it, so a child forked during
// the walk is not missed, then kills everything it found.
func killTree(root int) {
	seen := map[int]bool{}
	for round := 0; round < 3; round++ {
		found := false
		for _, pid := range descendants(root) {
			if !seen[pid] {
				seen[pid] = true
				found = true
			}
			_ = syscall.Kill(pid, syscall.SIGSTOP)
		}
		if !found {
			break
		}
	}
	for pid := range seen {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// descendants returns root and every process below it, from /proc.
func descendants(root int) []int {
	children := map[int][]int{}
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		pid, ppid, ok := parseStat(string(b))
		if ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// parseStat extracts pid and ppid from /proc/PID/stat. The command name is
// in parentheses and may itself contain spaces or parentheses, so fields are
// counted from the last ')'.
func parseStat(s string) (pid, ppid int, ok bool) {
	open := strings.IndexByte(s, '(')
	end := strings.LastIndexByte(s, ')')
	if open < 1 || end < open {
		return 0, 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(s[:open]))
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(s[end+1:]) // state ppid pgrp ...
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return pid, ppid, true
}
