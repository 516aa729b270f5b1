// Package executor runs one script on this machine as a real OS process and
// captures its output.
//
// It is the agent-side half of `herd run`: the caller hands it a Spec (language,
// body, args, env, timeout, account) and gets back a Result (status, exit code,
// output summary). It knows nothing of raft, mesh or HTTP; delivery, dedupe and
// reporting live above it.
//
// Every script runs in its own process group so that a timeout or an operator
// cancel reaches the whole tree (SIGTERM, then SIGKILL after a grace period),
// while a normal exit leaves background children alone: operators start daemons
// with `nohup x &` and expect them to survive the run.
//
// Linux only.
package executor
