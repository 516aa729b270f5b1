// Package devmesh starts a local herd mesh for development and tests: N real
// `herd agent` processes on loopback, each with its own data dir and ports,
// spread over K IDCs. It is what `herd dev` runs.
package devmesh

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herd-io/herd/node/api"
)

// Options configure a dev mesh.
type Options struct {
	// Binary is the herd executable to run. Required.
	Binary string
	// Nodes is the number of agents (1..200). Default 3.
	Nodes int
	// IDCs spreads the nodes round-robin over this many IDCs named dc1..dcK.
	// Default 1.
	IDCs int
	// Dir holds every node's data dir, logs and cluster.json. Empty: a new
	// temporary directory, removed by Stop.
	Dir string
	// ControlSize is passed to every agent. Zero picks the largest of 3 or 1
	// that every IDC has enough nodes for.
	ControlSize int
	// LogLevel for the agents. Default "info".
	LogLevel string
	// HealthInterval for the agents. Default 2s so the demo shows fresh load.
	HealthInterval time.Duration
	// ReadyTimeout bounds the wait for every node to see its whole IDC.
	// Default 60s.
	ReadyTimeout time.Duration
	// ExtraArgs are appended to every agent's command line.
	ExtraArgs []string
}

// Node is one agent of the mesh.
type Node struct {
	Name   string `json:"name"`
	IDC    string `json:"idc"`
	PID    int    `json:"pid"`
	API    string `json:"api"`
	Gossip string `json:"gossip"`
	P2P    string `json:"p2p"`
	WAN    string `json:"wan"`
	// Swarm is the file-swarm listener. Each node gets its own loopback
	// address: the swarm bans misbehaving peers by IP.
	Swarm   string `json:"swarm"`
	DataDir string `json:"data_dir"`
	FSRoot  string `json:"fs_root"`
	Log     string `json:"log"`

	args []string
	// mu guards the process fields, which Restart replaces.
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// process returns the node's current process and its exit channel.
func (n *Node) process() (*exec.Cmd, chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd, n.done
}

// Exited reports whether the node's process has ended.
func (n *Node) Exited() bool {
	_, done := n.process()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Cluster is a running dev mesh.
type Cluster struct {
	Dir         string  `json:"dir"`
	Token       string  `json:"token"`
	EncryptKey  string  `json:"encrypt_key"`
	ControlSize int     `json:"control_size"`
	Nodes       []*Node `json:"nodes"`

	bin     string
	tempDir bool
	mu      sync.Mutex
	stopped bool
}

// InfoFile is the name of the JSON description written into Dir.
const InfoFile = "cluster.json"

// Start launches the mesh and waits until every node sees every node of its
// IDC alive. On error, whatever was started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	c := &Cluster{Dir: opts.Dir, ControlSize: opts.ControlSize, bin: opts.Binary}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "herd-dev-"); err != nil {
			return nil, fmt.Errorf("dev mesh dir: %w", err)
		}
		c.tempDir = true
	} else if c.Dir, err = filepath.Abs(c.Dir); err != nil {
		return nil, fmt.Errorf("dev mesh dir: %w", err)
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("dev mesh dir: %w", err)
	}
	defer func() {
		if err != nil {
			_ = c.Stop(5 * time.Second)
		}
	}()
	if c.Token, err = randomHex(24); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	c.EncryptKey = base64.StdEncoding.EncodeToString(key)

	for i := 0; i < opts.Nodes; i++ {
		if _, err := c.newNode(i, opts); err != nil {
			return nil, err
		}
	}
	var wanSeeds []string
	for _, n := range c.Nodes {
		wanSeeds = append(wanSeeds, n.WAN)
	}
	firstOfIDC := map[string]*Node{}
	for _, n := range c.Nodes {
		n.args = c.agentArgs(n, opts)
		n.args = append(n.args, "--wan-join", strings.Join(wanSeeds, ","))
		if first, ok := firstOfIDC[n.IDC]; ok {
			n.args = append(n.args, "--join", first.Gossip)
		} else {
			firstOfIDC[n.IDC] = n
			if len(c.Nodes) > 1 {
				// The first node joins its IDC's second, so a restarted
				// first node finds the mesh again.
				for _, o := range c.Nodes {
					if o != n && o.IDC == n.IDC {
						n.args = append(n.args, "--join", o.Gossip)
						break
					}
				}
			}
		}
		if err := c.launch(n); err != nil {
			return nil, err
		}
	}
	if err := c.writeInfo(); err != nil {
		return nil, err
	}
	readyCtx, cancel := context.WithTimeout(ctx, opts.ReadyTimeout)
	defer cancel()
	if err := c.WaitConverged(readyCtx); err != nil {
		return nil, err
	}
	return c, nil
}

func (o *Options) fill() error {
	if o.Binary == "" {
		return errors.New("dev mesh: no herd binary given")
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.IDCs == 0 {
		o.IDCs = 1
	}
	if o.Nodes < 1 || o.Nodes > 200 {
		return fmt.Errorf("nodes: %d is out of range 1..200", o.Nodes)
	}
	if o.IDCs < 1 || o.IDCs > o.Nodes {
		return fmt.Errorf("idcs: %d is out of range 1..%d (at most one IDC per node)", o.IDCs, o.Nodes)
	}
	smallest := o.Nodes / o.IDCs
	if o.ControlSize == 0 {
		o.ControlSize = 1
		if smallest >= 3 {
			o.ControlSize = 3
		}
	}
	if o.ControlSize > smallest {
		return fmt.Errorf("control-size: %d is more than the %d nodes the smallest IDC gets", o.ControlSize, smallest)
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = 2 * time.Second
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	return nil
}

func (c *Cluster) newNode(i int, opts Options) (*Node, error) {
	ports, err := FreePorts(5)
	if err != nil {
		return nil, err
	}
	name := fmt.Sprintf("node%d", i+1)
	dir := filepath.Join(c.Dir, name)
	n := &Node{
		Name:    name,
		IDC:     fmt.Sprintf("dc%d", i%opts.IDCs+1),
		Gossip:  net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		P2P:     net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
		API:     net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2])),
		WAN:     net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[3])),
		Swarm:   net.JoinHostPort(fmt.Sprintf("127.0.1.%d", i%250+1), strconv.Itoa(ports[4])),
		DataDir: filepath.Join(dir, "data"),
		FSRoot:  filepath.Join(dir, "root"),
		Log:     filepath.Join(dir, "agent.log"),
	}
	c.Nodes = append(c.Nodes, n)
	return n, os.MkdirAll(dir, 0o700)
}

func (c *Cluster) agentArgs(n *Node, opts Options) []string {
	args := []string{"agent",
		"--name", n.Name, "--idc", n.IDC, "--dev",
		"--bind", n.Gossip, "--p2p", n.P2P, "--api", n.API, "--wan-bind", n.WAN, "--swarm", n.Swarm,
		"--primary-idc", "dc1",
		"--data-dir", n.DataDir, "--fs-root", n.FSRoot,
		"--encrypt", c.EncryptKey, "--api-token", c.Token,
		"--control-size", strconv.Itoa(c.ControlSize),
		"--health-interval", opts.HealthInterval.String(),
		"--log-level", opts.LogLevel,
		"--labels", "dev=true,slot=" + strconv.Itoa(len(c.Nodes)),
	}
	return append(args, opts.ExtraArgs...)
}

// launch starts one agent process. It gets its own process group so that a
// Ctrl-C in the terminal reaches `herd dev` only, which then stops the
// agents in order.
func (c *Cluster) launch(n *Node) error {
	logf, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("%s log: %w", n.Name, err)
	}
	cmd := exec.Command(c.bin, n.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "HERD_TOKEN=", "HERD_NODE=")
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", n.Name, err)
	}
	done := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.PID, n.done = cmd, cmd.Process.Pid, done
	n.mu.Unlock()
	go func() {
		_ = cmd.Wait() // the exit shows in Exited and the node's log
		logf.Close()
		close(done)
	}()
	return nil
}

// Restart starts node i again with its original arguments and data dir,
// after it has exited (see Signal and WaitExit).
func (c *Cluster) Restart(i int) error {
	n := c.Nodes[i]
	if !n.Exited() {
		return fmt.Errorf("%s is still running", n.Name)
	}
	return c.launch(n)
}

// WaitConverged blocks until every running node reports every running node
// of its IDC alive, or ctx ends. A node that exits early fails the wait
// with the tail of its log.
func (c *Cluster) WaitConverged(ctx context.Context) error {
	want := map[string]int{}
	for _, n := range c.Nodes {
		if !n.Exited() {
			want[n.IDC]++
		}
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		pending := 0
		for _, n := range c.Nodes {
			if n.Exited() {
				continue
			}
			ok, err := c.nodeSees(ctx, n, want[n.IDC])
			if err != nil {
				lastErr = fmt.Errorf("%s: %w", n.Name, err)
			}
			if !ok {
				pending++
			}
		}
		for _, n := range c.Nodes {
			if n.Exited() && !c.isStopped() {
				return fmt.Errorf("%s exited early; its log:\n%s", n.Name, tail(n.Log, 20))
			}
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dev mesh did not converge: %d nodes still waiting (last error: %v)", pending, lastErr)
		case <-tick.C:
		}
	}
}

func (c *Cluster) nodeSees(ctx context.Context, n *Node, want int) (bool, error) {
	client, err := api.NewClient(n.API, c.Token)
	if err != nil {
		return false, err
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ms, err := client.Members(rctx, api.MembersQuery{Status: "alive"})
	if err != nil {
		return false, err
	}
	return len(ms.Members) == want, nil
}

// Client returns an API client for node i.
func (c *Cluster) Client(i int) (*api.Client, error) {
	return api.NewClient(c.Nodes[i].API, c.Token)
}

// Signal sends sig to node i.
func (c *Cluster) Signal(i int, sig syscall.Signal) error {
	n := c.Nodes[i]
	cmd, _ := n.process()
	if cmd == nil || cmd.Process == nil {
		return fmt.Errorf("%s is not running", n.Name)
	}
	return cmd.Process.Signal(sig)
}

// WaitExit waits for node i's process to end.
func (c *Cluster) WaitExit(ctx context.Context, i int) error {
	_, done := c.Nodes[i].process()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s did not exit: %w", c.Nodes[i].Name, ctx.Err())
	}
}

// Stop sends SIGTERM to every node (a graceful leave), waits up to timeout,
// then SIGKILLs stragglers. A temporary Dir is removed.
func (c *Cluster) Stop(timeout time.Duration) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	c.mu.Unlock()
	for _, n := range c.Nodes {
		if cmd, _ := n.process(); cmd != nil && !n.Exited() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var errs []error
	for _, n := range c.Nodes {
		cmd, done := n.process()
		if cmd == nil {
			continue
		}
		select {
		case <-done:
		case <-deadline.C:
			deadline.Reset(time.Second)
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			errs = append(errs, fmt.Errorf("%s did not stop within %s and was killed", n.Name, timeout))
		}
	}
	if c.tempDir {
		errs = append(errs, os.RemoveAll(c.Dir))
	}
	return errors.Join(errs...)
}

func (c *Cluster) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// writeInfo writes Dir/cluster.json for scripts.
func (c *Cluster) writeInfo() error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(c.Dir, InfoFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// FreePorts finds n distinct ports free for TCP and UDP on loopback (gossip
// uses both on one port). There is a window before the agent binds them,
// so they are drawn from below the kernel's ephemeral range: a port the
// kernel hands out for ":0" or to an outgoing connection could be taken by
// any process in that window (a test run failed on "address already in
// use" that way). A port another FreePorts caller drew can still collide;
// drawing at random from some 22,000 ports makes that unlikely.
func FreePorts(n int) ([]int, error) {
	lo, hi := quietPortRange()
	var ports []int
	var hold []net.Listener
	defer func() {
		for _, l := range hold {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100*n {
			return nil, fmt.Errorf("finding a free port: none free in %d..%d after %d tries", lo, hi, tries)
		}
		port := 0 // the kernel's choice, when no quiet range exists
		if hi > lo {
			port = lo + mrand.IntN(hi-lo)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			if port == 0 {
				return nil, fmt.Errorf("finding a free port: %w", err)
			}
			continue
		}
		port = l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			l.Close()
			continue
		}
		u.Close()
		hold = append(hold, l)
		ports = append(ports, port)
	}
	return ports, nil
}

// quietPortRange returns ports [lo, hi) that the kernel does not hand out
// on its own: from 10000 to the start of net.ipv4.ip_local_port_range.
// hi <= lo when there is no such range (then FreePorts takes ":0").
func quietPortRange() (lo, hi int) {
	lo = 10000
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, 0
	}
	start, err := strconv.Atoi(f[0])
	if err != nil || start-lo < 1000 {
		return lo, 0
	}
	return lo, start
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := 0
	for i := len(data) - 1; i >= 0; i-- {
		if data[i] == '\n' {
			lines++
			if lines > n {
				return string(data[i+1:])
			}
		}
	}
	return string(data)
}
