package node

import (
	"fmt"
	"net"
	"path/filepath"

	"github.com/herd-io/herd/jobs"
	"github.com/herd-io/herd/transfer"
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
	if err := a.startContent(); err != nil {
		return err
	}
	w, err := jobs.NewWorker(jobs.WorkerConfig{
		Name: a.cfg.Name, IDC: a.cfg.IDC,
		DataDir:         filepath.Join(a.cfg.DataDir, "jobs"),
		OutputRetention: a.cfg.OutputRetention,
		SSHConcurrency:  a.cfg.SSHConcurrency,
		LAN:             a.mesh, Host: a.host, Server: a.control,
		Content: a.content, Swarm: a.swarm, SwarmAdvertise: a.swarmAdvertise, Digests: a.digests,
		UploadRate: a.cfg.UploadRate, DownloadRate: a.cfg.DownloadRate,
		FSRoot: a.cfg.FSRoot,
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

// startContent opens the node's content store and starts its file swarm,
// seeding every object the store holds: any holder serves later pushes.
func (a *Agent) startContent() error {
	st, err := transfer.OpenStore(filepath.Join(a.cfg.DataDir, "content"))
	if err != nil {
		return fmt.Errorf("content store: %w", err)
	}
	if a.digests, err = transfer.OpenDigestCache(filepath.Join(a.cfg.DataDir, "content", "digests.db")); err != nil {
		return err
	}
	a.content = st
	if a.cfg.Swarm == SwarmOff {
		return nil
	}
	sw, err := transfer.NewSwarm(transfer.SwarmConfig{
		Store: st, ListenAddr: a.cfg.Swarm,
		UploadRate: a.cfg.UploadRate, DownloadRate: a.cfg.DownloadRate,
		UploadSlots: uploadSlots(a.cfg.UploadSlots),
		Congestion:  a.cfg.SwarmCongestion,
		Logger:      a.log.With("part", "swarm"),
	})
	if err != nil {
		return fmt.Errorf("file swarm on %s: %w", a.cfg.Swarm, err)
	}
	a.swarm = sw
	ip, err := a.advertiseIP()
	if err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(sw.Addr())
	if err != nil {
		return fmt.Errorf("file swarm address %q: %w", sw.Addr(), err)
	}
	if h := net.ParseIP(host); h == nil || h.IsUnspecified() {
		host = ip
	}
	a.swarmAdvertise = net.JoinHostPort(host, port)
	objs, err := st.List()
	if err != nil {
		return fmt.Errorf("content store: %w", err)
	}
	for _, o := range objs {
		if err := sw.Seed(o); err != nil {
			a.log.Warn("cannot seed a stored object", "sha256", o.SHA256, "error", err)
		}
	}
	return nil
}

// startJobs serves the jobs protocols once the stream host admits members.
func (a *Agent) startJobs() {
	transfer.ServeContent(a.host, a.content)
	a.scheduler.Start()
	a.worker.Start()
}

// Jobs returns the node's run service (in-process harnesses use it).
func (a *Agent) Jobs() *jobs.Service { return a.jobs }

// uploadSlots maps the agent's setting (0: every peer) to the swarm's
// (negative: every peer; 0: the default).
func uploadSlots(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
