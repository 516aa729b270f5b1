// Package jobs is what work is: runs of scripts and file pushes on sets of
// hosts, from the request to every host's terminal status.
//
// The parts, by where they run:
//
//   - Service (service.go, service_catalog.go, files.go) is what the HTTP
//     API calls on any node: it creates runs through the leader of the
//     run's IDC, reads them with blocking queries, and keeps the global
//     catalog (scripts, accounts, groups, SSH hosts, files) in the control
//     group's KV under the reserved prefix herd/ (keys.go).
//   - Scheduler (scheduler.go, create.go, dispatch.go, collector.go,
//     peers.go) works while its node leads the IDC: it resolves targets
//     (targets.go, pure), signs one task per host (task.go), delivers tasks
//     directly and by a gossip notice, commits host results in batches, and
//     its watchdog settles every host so that no run stays running. It
//     keeps no state a new leader needs: everything is in the store.
//   - Worker (worker.go, push.go, localstore.go) runs on every node: it
//     executes tasks signed by a current control member at most once (a
//     bbolt store that survives restarts), through jobs/executor locally or
//     jobs/sshexec for agentless hosts, or moves a pushed file with
//     transfer; it keeps full outputs on disk and reports until the
//     control group has the result.
//
// The raft commands (commands.go) and reads (queries.go) are registered
// with consensus, which never imports jobs. jobs imports transfer for the
// byte-moving half of pushes; transfer never imports jobs.
package jobs
