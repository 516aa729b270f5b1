package consensus

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/herd-io/herd/mesh"
)

// WANConfig configures the pool that control members of every IDC join, so
// a request for another IDC crosses the WAN once, straight to its group.
type WANConfig struct {
	// BindAddr and BindPort are where WAN gossip listens. Port 0 picks an
	// ephemeral port. Default: the LAN bind IP with port 7948.
	BindAddr string
	BindPort int
	// AdvertiseAddr and AdvertisePort, if set, are what other IDCs dial.
	AdvertiseAddr string
	AdvertisePort int
	// Join lists WAN addresses of nodes in any IDC. A node joins the WAN
	// only while it is a voter; it retries the list until one answers.
	Join []string
	// ClusterName, SecretKey and Dev as for the LAN pool.
	ClusterName string
	SecretKey   []byte
	Dev         bool
	// Tune adjusts the WAN mesh configuration last (tests).
	Tune func(*mesh.Config)
}

// DefaultWANPort is the WAN gossip port.
const DefaultWANPort = 7948

// wanPoolName is the pool label part that all IDCs' control members share.
const wanPoolName = "wan"

// wanPool keeps this node in the WAN pool exactly while it is a voter.
type wanPool struct {
	s   *Server
	cfg WANConfig

	mu   sync.Mutex
	mesh *mesh.Mesh
	// contacted is set once a join reached a node, or another IDC joined us.
	contacted bool
}

func newWANPool(s *Server, cfg WANConfig) *wanPool {
	return &wanPool{s: s, cfg: cfg}
}

// wanName makes node names unique across IDCs: names are unique per IDC.
func wanName(name, idc string) string { return name + "." + idc }

// run reconciles WAN membership with this node's role until ctx ends.
// While the node is a voter, or still in the pool, it checks every
// quarter second: a new voter is in the WAN pool within a fraction of a
// second, and its meta and seeds are retried as quickly. Any other node
// waits for the group to report a role change, checking once every
// AutopilotInterval as a backstop: in an IDC of thousands, the nodes that
// are not voters need not each wake four times a second.
func (w *wanPool) run(ctx context.Context) {
	const quick = 250 * time.Millisecond
	slow := max(w.s.group.cfg.AutopilotInterval, quick)
	t := time.NewTimer(quick)
	defer t.Stop()
	for {
		wait := slow
		if w.reconcile() {
			wait = quick
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.s.group.adv.changed:
		}
	}
}

// reconcile joins or leaves the WAN pool as the role asks; it reports
// whether the node is or wants to be in the pool.
func (w *wanPool) reconcile() bool {
	role := w.s.group.Status().Role
	want := role == RoleLeader || role == RoleVoter
	w.mu.Lock()
	m := w.mesh
	w.mu.Unlock()
	switch {
	case want && m == nil:
		if err := w.start(); err != nil {
			w.s.log.Warn("joining the WAN pool failed, will retry", "err", err)
		}
	case !want && m != nil:
		w.s.log.Info("no longer a voter: leaving the WAN pool")
		_ = w.leave()
	case want && m != nil:
		w.syncMeta(m)
		if !w.isContacted() && len(w.cfg.Join) > 0 {
			w.join(m)
		}
	}
	return want
}

func (w *wanPool) start() error {
	lan := w.s.cfg.LAN.LocalMember()
	cfg := mesh.DefaultConfig()
	cfg.Name = wanName(w.s.cfg.Name, w.s.cfg.IDC)
	cfg.IDC = w.s.cfg.IDC
	cfg.Pool = wanPoolName
	cfg.Zone = w.s.cfg.Zone
	cfg.Meta = lan.Meta
	cfg.BindAddr, cfg.BindPort = w.cfg.BindAddr, w.cfg.BindPort
	cfg.AdvertiseAddr, cfg.AdvertisePort = w.cfg.AdvertiseAddr, w.cfg.AdvertisePort
	if w.cfg.ClusterName != "" {
		cfg.ClusterName = w.cfg.ClusterName
	}
	cfg.SecretKey, cfg.Dev = w.cfg.SecretKey, w.cfg.Dev
	cfg.HealthInterval = 30 * time.Second // WAN carries roles, not health
	cfg.Logger = w.s.log.With("part", "wan")
	if w.cfg.Tune != nil {
		w.cfg.Tune(cfg)
	}
	m, err := mesh.New(cfg)
	if err != nil {
		return fmt.Errorf("wan pool on %s:%d: %w", cfg.BindAddr, cfg.BindPort, err)
	}
	w.mu.Lock()
	w.mesh, w.contacted = m, false
	w.mu.Unlock()
	w.s.log.Info("joined the WAN pool as a voter", "addr", m.LocalAddr())
	if len(w.cfg.Join) > 0 {
		w.join(m)
	}
	return nil
}

// join tries the WAN seeds once; reconcile calls it again until one
// answers. Seeds that are not voters do not listen: that is expected.
func (w *wanPool) join(m *mesh.Mesh) {
	seeds := slices.DeleteFunc(slices.Clone(w.cfg.Join), func(a string) bool { return a == m.LocalAddr() })
	if len(seeds) == 0 {
		return
	}
	n, err := m.Join(seeds)
	if n > 0 || len(m.Members()) > 1 {
		w.mu.Lock()
		w.contacted = true
		w.mu.Unlock()
		return
	}
	w.s.log.Debug("no WAN seed answered yet", "seeds", seeds, "err", err)
}

func (w *wanPool) isContacted() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mesh != nil && len(w.mesh.Members()) > 1 {
		w.contacted = true
	}
	return w.contacted
}

// syncMeta keeps the WAN copy of this node's roles current.
func (w *wanPool) syncMeta(m *mesh.Mesh) {
	roles := w.s.cfg.LAN.LocalMember().Meta.Roles
	if slices.Equal(m.LocalMember().Meta.Roles, roles) {
		return
	}
	_ = m.UpdateMeta(func(meta *mesh.Meta) { meta.Roles = slices.Clone(roles) })
}

func (w *wanPool) current() *mesh.Mesh {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mesh
}

func (w *wanPool) joined() bool { return w.current() != nil }

func (w *wanPool) isAlivePeer(peerID string) bool {
	m := w.current()
	return m != nil && m.IsAlivePeer(peerID)
}

// membersOf lists alive WAN members of idc, leaders first.
func (w *wanPool) membersOf(idc string) []mesh.Member {
	m := w.current()
	if m == nil {
		return nil
	}
	var out []mesh.Member
	for _, mem := range m.Members() {
		if mem.Meta.IDC == idc && alive(mem) {
			out = append(out, mem)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return slices.Contains(out[i].Meta.Roles, RoleLeader) && !slices.Contains(out[j].Meta.Roles, RoleLeader)
	})
	return out
}

// idcs lists the IDCs with an alive member in the WAN pool.
func (w *wanPool) idcs() []string {
	m := w.current()
	if m == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, mem := range m.Members() {
		if alive(mem) {
			seen[mem.Meta.IDC] = true
		}
	}
	out := make([]string, 0, len(seen))
	for idc := range seen {
		out = append(out, idc)
	}
	sort.Strings(out)
	return out
}

func (w *wanPool) members() []WANMember {
	m := w.current()
	if m == nil {
		return nil
	}
	var out []WANMember
	for _, mem := range m.Members() {
		out = append(out, WANMember{Name: mem.Name, IDC: mem.Meta.IDC, Status: string(mem.Status), Roles: mem.Meta.Roles})
	}
	return out
}

// leave departs the WAN pool gracefully.
func (w *wanPool) leave() error {
	m := w.take()
	if m == nil {
		return nil
	}
	_ = m.Leave(2 * time.Second)
	return m.Shutdown()
}

// shutdown stops the WAN pool without telling its members.
func (w *wanPool) shutdown() error {
	if m := w.take(); m != nil {
		return m.Shutdown()
	}
	return nil
}

// take detaches the current WAN mesh, if any, for stopping.
func (w *wanPool) take() *mesh.Mesh {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.mesh
	w.mesh = nil
	return m
}
