package node

import (
	"fmt"
	"path/filepath"

	"github.com/herd-io/herd/jobs"
)

// newJobs builds the three sides of script execution on this node: the
// worker that executes tasks signed for it, the scheduler that acts while
// this node leads its IDC, and the service the HTTP API calls.
func (a *Agent) newJobs() error {
	scfg := jobs.SchedulerConfig{
		Name: a.cfg.Name, IDC: a.cfg.IDC,
		LAN: a.mesh, Host: a.host, Server: a.control,
		Logger: a.log.With("part", "jobs"),
	}
	if a.cfg.TuneJobs != nil {
		a.cfg.TuneJobs(&scfg)
	}
	sched, err := jobs.NewScheduler(scfg)
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	w, err := jobs.NewWorker(jobs.WorkerConfig{
		Name: a.cfg.Name, IDC: a.cfg.IDC,
		DataDir:         filepath.Join(a.cfg.DataDir, "jobs"),
		OutputRetention: a.cfg.OutputRetention,
		SSHConcurrency:  a.cfg.SSHConcurrency,
		LAN:             a.mesh, Host: a.host, Server: a.control,
		Logger: a.log.With("part", "jobs"),
	})
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	a.scheduler, a.worker = sched, w
	a.jobs = jobs.NewService(jobs.ServiceConfig{
		Name: a.cfg.Name, IDC: a.cfg.IDC, Server: a.control, LAN: a.mesh, Host: a.host, Worker: w,
	})
	return nil
}

// startJobs serves the jobs protocols once the stream host admits members.
func (a *Agent) startJobs() {
	a.scheduler.Start()
	a.worker.Start()
}

// Jobs returns the node's run service (in-process harnesses use it).
func (a *Agent) Jobs() *jobs.Service { return a.jobs }
