// Package mesh is herd's gossip membership: one memberlist LAN pool per IDC,
// encrypted with the cluster key and labelled ClusterName+"/"+IDC so pools
// never mix. On top of memberlist it keeps a member table (meta, labels,
// health, status), spreads Serf-style user events, and delivers membership
// changes to subscribers.
//
// What travels where:
//   - Meta (peer ID, addresses, roles, version) rides in memberlist's node
//     metadata, 512 bytes at most (meta.go).
//   - Labels and health ride in a versioned node-state message, gossiped on
//     change and every HealthInterval, and carried by push/pull
//     (nodestate.go).
//   - User events carry a Lamport time and are deduplicated (userevent.go).
package mesh

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// defaultLeaveTimeout applies when Leave is given no positive timeout.
const defaultLeaveTimeout = 5 * time.Second

// updateMetaTimeout bounds how long UpdateMeta waits for memberlist to send
// the new meta once. memberlist would wait forever with a zero timeout.
const updateMetaTimeout = 5 * time.Second

var errShutdown = errors.New("mesh: shut down")

// Mesh is a node's membership in its IDC's gossip pool. Its methods are
// safe for concurrent use.
type Mesh struct {
	cfg *Config
	log *slog.Logger

	ml *memberlist.Memberlist
	// localAddr is the advertised gossip address, fixed at creation: read
	// from memberlist's node record later, it would race with UpdateMeta.
	localAddr  string
	broadcasts *memberlist.TransmitLimitedQueue
	table      *memberTable
	events     *eventHub
	health     *healthCollector // owned by healthLoop once New returns
	clock      lamportClock     // user-event Lamport clock
	userLog    userEventLog
	encrypted  bool

	metaMu    sync.Mutex // serialises UpdateMeta
	meta      Meta
	metaBytes atomic.Pointer[[]byte] // what NodeMeta hands to memberlist

	localMu sync.Mutex // serialises changes to our node state and their broadcast

	lifeMu sync.Mutex // serialises Leave and Shutdown
	closed atomic.Bool
	stop   chan struct{} // closed by Shutdown; stops healthLoop
	wg     sync.WaitGroup
}

// New validates cfg, creates the memberlist (listening, not yet joined)
// and starts the health loop. cfg is not modified or retained.
func New(cfg *Config) (*Mesh, error) {
	if cfg == nil {
		return nil, errors.New("mesh: nil config")
	}
	c := cfg.clone()
	if err := c.validate(); err != nil {
		return nil, err
	}
	m := &Mesh{
		cfg:    c,
		log:    c.Logger,
		events: newEventHub(),
		stop:   make(chan struct{}),
	}
	m.table = newMemberTable(c.Name, m.events, m.log)
	m.meta = c.Meta
	m.meta.IDC, m.meta.Zone = c.IDC, c.Zone
	meta, err := EncodeMeta(m.meta)
	if err != nil {
		return nil, err
	}
	m.metaBytes.Store(&meta)
	if err := m.checkStateSize(c.Labels); err != nil {
		return nil, err
	}

	started := time.Now()
	m.health = newHealthCollector(c.DataDir, c.Meta.Version, started)
	h, err := m.health.collect(started)
	if err != nil {
		m.log.Debug("health sample incomplete", "err", err)
	}
	labels := c.Labels
	if len(labels) == 0 {
		labels = nil
	}

	mlc := m.memberlistConfig()
	var own *transport
	if mlc.Transport == nil {
		if own, err = newTransport(mlc.BindAddr, mlc.BindPort, m.log); err != nil {
			return nil, fmt.Errorf("mesh: start gossip on %s:%d: %w", c.BindAddr, c.BindPort, err)
		}
		if mlc.BindPort == 0 {
			// What memberlist does with a port its own transport picked.
			mlc.BindPort, mlc.AdvertisePort = own.port(), own.port()
		}
		mlc.Transport = own
	}
	m.broadcasts = &memberlist.TransmitLimitedQueue{NumNodes: m.table.numLive, RetransmitMult: mlc.RetransmitMult}
	ml, err := memberlist.Create(mlc)
	if err != nil {
		if own != nil {
			_ = own.Shutdown()
		}
		return nil, fmt.Errorf("mesh: start gossip on %s:%d: %w", c.BindAddr, c.BindPort, err)
	}
	m.ml = ml
	m.localAddr = ml.LocalNode().Address()
	m.encrypted = mlc.EncryptionEnabled()
	m.publishLocal(func(st *nodeStateMsg) { st.Labels, st.Health = labels, h }, nil)

	m.wg.Add(1)
	go m.healthLoop()
	return m, nil
}

// memberlistConfig builds the memberlist configuration and applies the
// caller's hook.
func (m *Mesh) memberlistConfig() *memberlist.Config {
	c := m.cfg
	mlc := memberlist.DefaultLANConfig()
	// herd's LAN profile: a dead node must be declared within ~6 s at 20
	// nodes. LAN defaults (1 s probes, SuspicionMult 4) give a minimum
	// suspicion of 4*log10(20)*1s = 5.2 s on top of the probe that first
	// notices; 800 ms probes and SuspicionMult 3 give 3.1 s, while
	// Lifeguard's awareness still stretches timeouts on a starved host.
	mlc.ProbeInterval = 800 * time.Millisecond
	mlc.SuspicionMult = 3
	mlc.Name = c.Name
	mlc.BindAddr, mlc.BindPort = c.BindAddr, c.BindPort
	mlc.AdvertiseAddr, mlc.AdvertisePort = c.AdvertiseAddr, c.AdvertisePort
	if mlc.AdvertisePort == 0 {
		// memberlist would advertise port 0 next to an explicit address.
		mlc.AdvertisePort = c.BindPort
	}
	mlc.Label = c.poolLabel()
	if len(c.SecretKey) > 0 {
		// The key length was validated, so NewKeyring cannot fail.
		mlc.Keyring, _ = memberlist.NewKeyring(nil, c.SecretKey)
	}
	mlc.GossipVerifyIncoming = true
	mlc.GossipVerifyOutgoing = true
	mlc.Delegate = &delegate{m}
	mlc.Events = &eventDelegate{m}
	mlc.Logger = newMemberlistLogger(m.log)
	if c.Memberlist != nil {
		c.Memberlist(mlc)
		// Without our delegates the mesh would silently see nothing.
		mlc.Delegate = &delegate{m}
		mlc.Events = &eventDelegate{m}
	}
	return mlc
}

// Join contacts the given gossip addresses ("host:port", or a host alone
// for this node's own port) and merges state with each. It returns how many answered;
// the error is nil if at least one did. When the peers refuse us because
// our encryption key or pool label differs, the error says so.
func (m *Mesh) Join(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, errors.New("mesh: join: no addresses given")
	}
	if m.closed.Load() {
		return 0, errShutdown
	}
	// A node alone is joining for the first time (or after a partition):
	// it must not replay the pool's past user events.
	first := !m.table.othersLive()
	if first {
		m.userLog.beginJoin()
	}
	n, err := m.ml.Join(addrs)
	if first {
		for _, h := range m.userLog.endJoin() {
			m.deliverUserEvent(h.msg, h.raw)
		}
	}
	if err != nil {
		return n, &joinError{addrs: addrs, err: err, mismatch: looksLikeMismatch(err.Error())}
	}
	return n, nil
}

// joinError explains a failed join in one line.
type joinError struct {
	addrs    []string
	err      error
	mismatch bool
}

func (e *joinError) Error() string {
	msg := "mesh: join " + strings.Join(e.addrs, ", ") + ": " + flattenError(e.err)
	if e.mismatch {
		msg += ": the peer refused or could not read our gossip: the encryption key or the cluster/IDC label probably differs (check --encrypt and --idc)"
	}
	return msg
}

func (e *joinError) Unwrap() error { return e.err }

// looksLikeMismatch recognises join failures caused by a different key or
// label. A label mismatch shows only as the peer hanging up (EOF or reset):
// memberlist drops the stream without a word.
func looksLikeMismatch(msg string) bool {
	if classifyMismatch(msg) != mismatchNone {
		return true
	}
	lower := strings.ToLower(msg)
	for _, h := range []string{"eof", "connection reset", "broken pipe"} {
		if strings.Contains(lower, h) {
			return true
		}
	}
	return false
}

// flattenError prints memberlist's multi-line multierror on one line.
func flattenError(err error) string {
	if w, ok := err.(interface{ WrappedErrors() []error }); ok {
		parts := make([]string, 0, len(w.WrappedErrors()))
		for _, e := range w.WrappedErrors() {
			parts = append(parts, e.Error())
		}
		return strings.Join(parts, "; ")
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// Members returns every member known, including failed and left ones until
// their tombstone expires, sorted by name.
func (m *Mesh) Members() []Member { return m.table.members() }

// RangeMembers calls fn with each member, in name order, until fn returns
// false: Members without the copy, for callers that scan a large pool
// often. fn runs under the table's read lock: it must be quick, must not
// keep the pointer, and must not call back into the Mesh.
func (m *Mesh) RangeMembers(fn func(*Member) bool) { m.table.rangeMembers(fn) }

// RangeRoled is RangeMembers over only the members whose Meta.Roles is not
// empty, kept in an index: finding who holds a role costs the few that do,
// not the whole pool.
func (m *Mesh) RangeRoled(fn func(*Member) bool) { m.table.rangeRoled(fn) }

// Member returns the named member.
func (m *Mesh) Member(name string) (Member, bool) { return m.table.member(name) }

// MemberByPeerID returns the member whose Meta.ID is id, preferring a live
// one if a stale record shares the ID.
func (m *Mesh) MemberByPeerID(id string) (Member, bool) { return m.table.memberByPeerID(id) }

// LocalMember returns this node as the table sees it.
func (m *Mesh) LocalMember() Member {
	me, _ := m.table.member(m.cfg.Name)
	return me
}

// IsAlivePeer reports whether an alive or suspect member has Meta.ID ==
// peerID. The libp2p connection gater asks it for every connection.
func (m *Mesh) IsAlivePeer(peerID string) bool {
	me, ok := m.table.memberByPeerID(peerID)
	return ok && isLive(me.Status)
}

// SetLabels replaces this node's labels and gossips them at once. l is
// validated (see ValidateLabels) and copied.
func (m *Mesh) SetLabels(l map[string]string) error {
	if err := ValidateLabels(l); err != nil {
		return err
	}
	if err := m.checkStateSize(l); err != nil {
		return err
	}
	if m.closed.Load() {
		return errShutdown
	}
	labels := maps.Clone(l)
	if len(labels) == 0 {
		labels = nil
	}
	m.publishLocal(func(st *nodeStateMsg) { st.Labels = labels }, nil)
	return nil
}

// UpdateMeta changes this node's Meta with fn and advertises it. The IDC
// cannot change (it selects the gossip pool); the result must encode to at
// most 512 bytes, or nothing changes and the error gives the size.
func (m *Mesh) UpdateMeta(fn func(*Meta)) error {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	if m.closed.Load() {
		return errShutdown
	}
	next := m.meta
	next.Roles = append([]string(nil), m.meta.Roles...)
	fn(&next)
	if next.IDC != m.meta.IDC {
		return fmt.Errorf("mesh: the IDC cannot change at run time (%q to %q): it selects the gossip pool", m.meta.IDC, next.IDC)
	}
	b, err := EncodeMeta(next)
	if err != nil {
		return err
	}
	m.meta = next
	m.metaBytes.Store(&b)
	if err := m.ml.UpdateNode(updateMetaTimeout); err != nil {
		// The update is applied and queued; push/pull spreads it anyway.
		m.log.Debug("meta update not yet gossiped", "err", err)
	}
	return nil
}

// Subscribe returns a new subscription to membership and user events.
// Events that happen before Subscribe are not replayed: read Members
// after subscribing to start from a consistent view.
func (m *Mesh) Subscribe() *Subscription { return m.events.subscribe() }

// Leave announces that this node is leaving, so peers record it as left
// rather than failed, and waits up to timeout (default 5s when not
// positive) for the announcement to go out. The node keeps gossiping until
// Shutdown, which callers should call next.
func (m *Mesh) Leave(timeout time.Duration) error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.closed.Load() {
		// memberlist panics on Leave after Shutdown.
		return errors.New("mesh: leave after shutdown")
	}
	if timeout <= 0 {
		timeout = defaultLeaveTimeout
	}
	deadline := time.Now().Add(timeout)
	// memberlist's leave does not say "left" to our event delegate (see
	// NotifyLeave), so first gossip our own "leaving" state and give it
	// up to half the time to spread before memberlist's dead message.
	sent := make(chan struct{})
	m.publishLocal(func(st *nodeStateMsg) { st.Leaving = true }, sent)
	if m.table.othersLive() {
		t := time.NewTimer(timeout / 2)
		select {
		case <-sent:
		case <-t.C:
		}
		t.Stop()
	}
	if err := m.ml.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		return fmt.Errorf("mesh: leave: %w", err)
	}
	return nil
}

// Shutdown stops gossip and every goroutine of the mesh and closes all
// subscriptions. Without a prior Leave, peers will see this node fail.
// It is idempotent; the member table stays readable afterwards.
func (m *Mesh) Shutdown() error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.closed.Swap(true) {
		return nil
	}
	close(m.stop)
	m.wg.Wait()
	err := m.ml.Shutdown()
	m.table.freeze()
	m.events.close()
	if err != nil {
		return fmt.Errorf("mesh: shutdown: %w", err)
	}
	return nil
}

// LocalAddr returns the gossip address peers reach this node at: the
// advertised ip:port, with the real port after an ephemeral bind. It is
// what other nodes pass to Join.
func (m *Mesh) LocalAddr() string { return m.localAddr }

// EncryptionEnabled reports whether gossip is encrypted.
func (m *Mesh) EncryptionEnabled() bool { return m.encrypted }
