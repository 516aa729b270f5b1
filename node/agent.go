// Package node is the herd daemon: it owns the lifecycle of every part of a
// node (gossip mesh, node-stream host, HTTP API) and starts and stops them
// in order.
package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/herd-io/herd/consensus"
	"github.com/herd-io/herd/jobs"
	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
	"github.com/herd-io/herd/transfer"
)

// Agent is one running herd node.
type Agent struct {
	cfg     *Config
	log     *slog.Logger
	token   string
	started time.Time

	host    *p2p.Host
	mesh    *mesh.Mesh
	control *consensus.Server
	joined  atomic.Bool // the first --join succeeded (see MayBootstrap)
	// jobs: this node's executor side, leader side, and API side of runs.
	worker    *jobs.Worker
	scheduler *jobs.Scheduler
	jobs      *jobs.Service
	// content and swarm hold and move pushed files.
	content        *transfer.Store
	swarm          *transfer.Swarm
	swarmAdvertise string
	digests        *transfer.DigestCache
	api            *apiServer

	// fatal carries errors that end the agent after Start returned, such as
	// a join that timed out.
	fatal chan error

	cancel context.CancelFunc
	wg     sync.WaitGroup

	stopOnce sync.Once
	stopErr  error
}

// New validates cfg and prepares the data directory. Nothing listens until
// Start.
func New(cfg *Config, logger *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data-dir: %w", err)
	}
	if cfg.FSRoot != "" {
		if err := os.MkdirAll(cfg.FSRoot, 0o755); err != nil {
			return nil, fmt.Errorf("fs-root: %w", err)
		}
	}
	token, err := loadToken(cfg, logger)
	if err != nil {
		return nil, err
	}
	return &Agent{
		cfg:   cfg,
		log:   logger.With("node", cfg.Name),
		token: token,
		fatal: make(chan error, 1),
	}, nil
}

// Start brings the node up in dependency order: identity and node-stream
// host, gossip mesh, HTTP API, then the background join. On error every
// part already started is stopped again.
func (a *Agent) Start(ctx context.Context) (err error) {
	a.started = time.Now()
	defer func() {
		if err != nil {
			a.closeParts()
		}
	}()

	key, err := p2p.LoadOrCreateIdentity(a.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	advertiseIP, err := a.advertiseIP()
	if err != nil {
		return err
	}

	pcfg := p2p.DefaultConfig()
	pcfg.PrivKey = key
	pcfg.ListenAddr = a.cfg.P2P
	pcfg.Logger = a.log.With("part", "p2p")
	// The gater admits mesh members only; the mesh needs this host's
	// address first, so admit nobody until it exists (SetAllow below).
	pcfg.Allow = func(peer.ID) bool { return false }
	if a.host, err = p2p.New(pcfg); err != nil {
		return fmt.Errorf("node streams on %s: %w", a.cfg.P2P, err)
	}

	apiLn, err := net.Listen("tcp", a.cfg.API)
	if err != nil {
		return fmt.Errorf("api listen on %s: %w", a.cfg.API, err)
	}
	a.api = newAPIServer(a, apiLn)

	mcfg := mesh.DefaultConfig()
	mcfg.Name = a.cfg.Name
	mcfg.IDC = a.cfg.IDC
	mcfg.Zone = a.cfg.Zone
	mcfg.Labels = a.cfg.Labels
	mcfg.ClusterName = a.cfg.ClusterName
	mcfg.SecretKey = a.cfg.EncryptKey
	mcfg.Dev = a.cfg.Dev
	mcfg.HealthInterval = a.cfg.HealthInterval
	mcfg.DataDir = a.cfg.DataDir
	mcfg.Logger = a.log.With("part", "mesh")
	mcfg.BindAddr, mcfg.BindPort, _ = splitHostPort("bind", a.cfg.Bind)
	if a.cfg.Advertise != "" {
		mcfg.AdvertiseAddr, mcfg.AdvertisePort, _ = splitHostPort("advertise", a.cfg.Advertise)
	}
	mcfg.Meta = mesh.Meta{
		ID:      a.host.ID().String(),
		API:     advertisedAddr(apiLn.Addr(), advertiseIP),
		P2P:     replaceMultiaddrIP(a.host.Addr(), advertiseIP),
		Version: Version,
	}
	if a.cfg.TuneMesh != nil {
		a.cfg.TuneMesh(mcfg)
	}
	if a.mesh, err = mesh.New(mcfg); err != nil {
		return fmt.Errorf("gossip on %s: %w", a.cfg.Bind, err)
	}
	if err := a.startControl(); err != nil {
		return err
	}
	lan, control := a.mesh, a.control
	a.host.SetAllow(func(id peer.ID) bool {
		return lan.IsAlivePeer(id.String()) || control.IsAlivePeer(id.String())
	})
	a.registerStreams()
	a.startJobs()

	runCtx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.api.serve()
	}()
	if len(a.cfg.Join) > 0 {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.joinLoop(runCtx)
		}()
	}
	a.log.Info("agent started", "idc", a.cfg.IDC, "gossip", a.mesh.LocalAddr(),
		"api", apiLn.Addr().String(), "p2p", a.host.Addr(), "peer_id", a.host.ID().String(),
		"encrypted", a.mesh.EncryptionEnabled())
	return ctx.Err()
}

// startControl creates and starts this node's part in the control plane.
func (a *Agent) startControl() error {
	wanHost, wanPort, _ := splitHostPort("wan-bind", a.cfg.WANBind)
	wan := consensus.WANConfig{
		BindAddr: wanHost, BindPort: wanPort,
		Join:        a.cfg.WANJoin,
		ClusterName: a.cfg.ClusterName,
		SecretKey:   a.cfg.EncryptKey,
		Dev:         a.cfg.Dev,
		Tune:        a.cfg.TuneMesh,
	}
	if a.cfg.WANAdvertise != "" {
		wan.AdvertiseAddr, wan.AdvertisePort, _ = splitHostPort("wan-advertise", a.cfg.WANAdvertise)
	}
	srv, err := consensus.NewServer(consensus.ServerConfig{
		Name:        a.cfg.Name,
		IDC:         a.cfg.IDC,
		Zone:        a.cfg.Zone,
		DataDir:     a.cfg.DataDir,
		ControlSize: a.cfg.ControlSize,
		PrimaryIDC:  a.cfg.PrimaryIDC,
		LAN:         a.mesh,
		Host:        a.host,
		WAN:         wan,
		// A node told to join others must not found a group of its own
		// before it has seen them.
		MayBootstrap: func() bool { return len(a.cfg.Join) == 0 || a.joined.Load() },
		TuneGroup: func(g *consensus.GroupConfig) {
			g.DeadServerTimeout = a.cfg.DeadServerTimeout
			if a.cfg.TuneControl != nil {
				a.cfg.TuneControl(g)
			}
		},
		Logger: a.log.With("part", "control"),
	})
	if err != nil {
		return fmt.Errorf("control group: %w", err)
	}
	a.control = srv
	// The scheduler hooks the control group's leadership, so it must exist
	// before the group can elect anyone.
	if err := a.newJobs(); err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("control group: %w", err)
	}
	return nil
}

// Control returns the node's control-plane server.
func (a *Agent) Control() *consensus.Server { return a.control }

// Fatal reports errors that should stop the agent after Start succeeded.
func (a *Agent) Fatal() <-chan error { return a.fatal }

// Leave announces a graceful departure to the mesh and then stops every
// part. Peers mark the node "left" rather than "failed".
func (a *Agent) Leave(ctx context.Context) error {
	return a.stop(ctx, true)
}

// Kill stops every part without telling peers, as a crash would; peers
// detect the node as failed. Tests use it.
func (a *Agent) Kill() error {
	return a.stop(context.Background(), false)
}

func (a *Agent) stop(ctx context.Context, leave bool) error {
	a.stopOnce.Do(func() {
		var errs []error
		if a.cancel != nil {
			a.cancel()
		}
		if a.api != nil {
			errs = append(errs, a.api.shutdown(ctx))
		}
		if a.worker != nil {
			a.worker.Stop()
		}
		if leave && a.control != nil {
			if err := a.control.Leave(ctx); err != nil {
				errs = append(errs, fmt.Errorf("control group leave: %w", err))
			}
		}
		if leave && a.mesh != nil {
			timeout := 5 * time.Second
			if dl, ok := ctx.Deadline(); ok {
				timeout = time.Until(dl)
			}
			if err := a.mesh.Leave(timeout); err != nil {
				errs = append(errs, fmt.Errorf("leave: %w", err))
			}
		}
		errs = append(errs, a.closeParts())
		a.wg.Wait()
		a.stopErr = errors.Join(errs...)
		a.log.Info("agent stopped", "graceful", leave)
	})
	return a.stopErr
}

// closeParts stops what Start created, in reverse order.
func (a *Agent) closeParts() error {
	var errs []error
	if a.api != nil {
		a.api.close()
	}
	if a.worker != nil {
		a.worker.Stop()
	}
	if a.swarm != nil {
		errs = append(errs, a.swarm.Close())
	}
	if a.digests != nil {
		errs = append(errs, a.digests.Close())
	}
	if a.control != nil {
		errs = append(errs, a.control.Shutdown())
	}
	if a.mesh != nil {
		errs = append(errs, a.mesh.Shutdown())
	}
	if a.host != nil {
		errs = append(errs, a.host.Close())
	}
	return errors.Join(errs...)
}

// ReloadLabels replaces the node's labels and gossips them at once.
func (a *Agent) ReloadLabels(labels map[string]string) error {
	if err := a.mesh.SetLabels(labels); err != nil {
		return err
	}
	a.log.Info("labels reloaded", "labels", labels)
	return nil
}

// Name returns the node's name.
func (a *Agent) Name() string { return a.cfg.Name }

// IDC returns the node's IDC.
func (a *Agent) IDC() string { return a.cfg.IDC }

// Mesh returns the node's gossip mesh.
func (a *Agent) Mesh() *mesh.Mesh { return a.mesh }

// Host returns the node's stream host.
func (a *Agent) Host() *p2p.Host { return a.host }

// APIAddr returns the address the HTTP API listens on.
func (a *Agent) APIAddr() string { return a.api.addr() }

// GossipAddr returns the bound gossip address.
func (a *Agent) GossipAddr() string { return a.mesh.LocalAddr() }

// Token returns the API token this node accepts.
func (a *Agent) Token() string { return a.token }

// joinLoop retries the configured join addresses with jittered exponential
// backoff until one answers, as Consul's retry_join does.
func (a *Agent) joinLoop(ctx context.Context) {
	var deadline <-chan time.Time
	if a.cfg.JoinTimeout > 0 {
		t := time.NewTimer(a.cfg.JoinTimeout)
		defer t.Stop()
		deadline = t.C
	}
	backoff := joinBackoffBase
	for attempt := 1; ; attempt++ {
		n, err := a.mesh.Join(a.cfg.Join)
		if err == nil && n > 0 {
			a.joined.Store(true)
			a.log.Info("joined the mesh", "contacted", n, "attempt", attempt)
			return
		}
		if err == nil {
			err = errors.New("no node answered")
		}
		a.log.Warn("join failed, will retry", "join", strings.Join(a.cfg.Join, ","),
			"attempt", attempt, "retry_in", backoff.Round(time.Millisecond), "err", err)
		wait := time.NewTimer(jitter(backoff))
		select {
		case <-ctx.Done():
			wait.Stop()
			return
		case <-deadline:
			wait.Stop()
			a.fatal <- fmt.Errorf("join: no node of %s answered within %s: %w",
				strings.Join(a.cfg.Join, ", "), a.cfg.JoinTimeout, err)
			return
		case <-wait.C:
		}
		backoff = min(backoff*2, joinBackoffMax)
	}
}

// Join backoff bounds: quick first retries for nodes started together,
// capped like Consul's retry_interval.
var (
	joinBackoffBase = 500 * time.Millisecond
	joinBackoffMax  = 30 * time.Second
)

// jitter returns d ± 25%, so nodes started together do not retry in step.
func jitter(d time.Duration) time.Duration {
	quarter := int64(d / 4)
	if quarter <= 0 {
		return d
	}
	n, err := rand.Int(rand.Reader, big.NewInt(2*quarter))
	if err != nil {
		return d
	}
	return d - time.Duration(quarter) + time.Duration(n.Int64())
}

// advertiseIP picks the IP other nodes should use for this node's API and
// stream addresses: the advertise address, else a specific bind address,
// else the first private IP of the machine (memberlist's own choice).
func (a *Agent) advertiseIP() (string, error) {
	if a.cfg.Advertise != "" {
		host, _, err := splitHostPort("advertise", a.cfg.Advertise)
		return host, err
	}
	host, _, err := splitHostPort("bind", a.cfg.Bind)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return host, nil
	}
	priv, err := sockaddr.GetPrivateIP()
	if err != nil || priv == "" {
		return "", fmt.Errorf("advertise: bind is %s and no private IP was found; set --advertise", a.cfg.Bind)
	}
	return priv, nil
}

// advertisedAddr turns a listener address into one peers can dial,
// substituting the advertise IP for an unspecified listen IP.
func advertisedAddr(addr net.Addr, ip string) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = ip
	}
	return net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}

// replaceMultiaddrIP swaps an unspecified IPv4 in "/ip4/0.0.0.0/tcp/N" for ip.
func replaceMultiaddrIP(ma, ip string) string {
	const unspecified = "/ip4/0.0.0.0/"
	if strings.HasPrefix(ma, unspecified) {
		return "/ip4/" + ip + "/" + strings.TrimPrefix(ma, unspecified)
	}
	return ma
}

// loadToken returns the API token: the configured one, the token file's, or
// a new random management token written to DataDir/api-token (0600).
func loadToken(cfg *Config, log *slog.Logger) (string, error) {
	if cfg.APIToken != "" {
		return cfg.APIToken, nil
	}
	path := cfg.APITokenFile
	generated := false
	if path == "" {
		path = filepath.Join(cfg.DataDir, TokenFileName)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			buf := make([]byte, 24)
			if _, err := rand.Read(buf); err != nil {
				return "", fmt.Errorf("api token: %w", err)
			}
			if err := writeFileAtomic(path, []byte(hex.EncodeToString(buf)+"\n"), 0o600); err != nil {
				return "", fmt.Errorf("api token: %w", err)
			}
			generated = true
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("api-token-file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("api-token-file: %s is empty", path)
	}
	if generated {
		log.Info("wrote a new management token", "path", path)
	}
	return token, nil
}

// TokenFileName is the file in the data dir that holds a generated token.
const TokenFileName = "api-token"

// writeFileAtomic writes data to a temp file beside path, fsyncs it and
// renames it into place, so readers never see a partial file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
