// Package p2p is herd's node-to-node transport: a libp2p host (TCP, Noise,
// yamux; no relay, QUIC, mDNS or NAT traversal) whose connection gater
// admits only current members, and a small request/response RPC on top of
// it — one stream per call, length-prefixed frames, typed errors.
//
// It imports nothing of herd; the node wires Config.Allow to the gossip
// membership.
package p2p

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Host is a running libp2p host plus the RPC layer. All methods are safe for
// concurrent use.
type Host struct {
	cfg   Config
	host  host.Host
	log   *slog.Logger
	allow atomic.Pointer[func(peer.ID) bool]
	gater *gater

	// ctx is the parent of every handler's context; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.RWMutex
	closed   bool
	handlers map[protocol.ID]Handler
	// inflight counts running handlers so Close can wait for them. Add is
	// only called under mu.RLock with closed false, so it never races Wait.
	inflight sync.WaitGroup
}

// New starts a host listening on cfg.ListenAddr. Register handlers with
// Handle before the address is advertised to other nodes: a peer calling a
// protocol that is not registered yet gets CodeNotFound.
func New(cfg *Config) (*Host, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	key := c.PrivKey
	if key == nil {
		if key, _, err = crypto.GenerateEd25519Key(rand.Reader); err != nil {
			return nil, fmt.Errorf("p2p: generate key: %w", err)
		}
	}
	listen, err := listenMultiaddr(c.ListenAddr)
	if err != nil {
		return nil, err
	}

	h := &Host{
		cfg:      c,
		log:      c.Logger,
		handlers: make(map[protocol.ID]Handler),
	}
	h.allow.Store(&c.Allow)
	h.gater = newGater(&h.allow, c.Logger)
	h.ctx, h.cancel = context.WithCancel(context.Background())

	rm, err := newResourceManager(&c)
	if err != nil {
		return nil, err
	}
	// Trimming starts well above any IDC's size and well below the resource
	// manager's ceiling (libp2p warns when high water exceeds it). Raft and
	// later stream layers can Protect their peers via Libp2p().ConnManager().
	cm, err := connmgr.NewConnManager(c.MaxConns/2, c.MaxConns*7/8, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		_ = rm.Close()
		return nil, fmt.Errorf("p2p: connection manager: %w", err)
	}

	lh, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrs(listen),
		// Without DisableReuseport libp2p binds with SO_REUSEPORT: a second
		// process on the same port starts fine and the kernel splits
		// incoming connections between the two. We want "address in use".
		libp2p.Transport(tcp.NewTCPTransport, tcp.DisableReuseport()),
		// libp2p builds its QUIC connection manager whatever the transports;
		// with reuseport on it keeps two UDP-reuse goroutines per host
		// collecting garbage every 30 s. TCP is our only transport.
		libp2p.QUICReuse(quicreuse.NewConnManager, quicreuse.DisableReuseport()),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ConnectionGater(h.gater),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.DisableRelay(),
		// Our own /herd/ping/1 replaces libp2p's ping service.
		libp2p.Ping(false),
		// Prometheus collectors cost memory and register globally; the node
		// exports its own metrics.
		libp2p.DisableMetrics(),
		// Peers' observations of our address only matter behind NAT, which
		// a fleet's LAN is not; skipping them saves a manager and its timers.
		libp2p.DisableIdentifyAddressDiscovery(),
		libp2p.UserAgent("herd"),
	)
	if err != nil {
		_ = cm.Close()
		_ = rm.Close()
		return nil, fmt.Errorf("p2p: start libp2p host on %s: %w", c.ListenAddr, err)
	}
	h.host = lh
	h.Handle(PingProtocol, pingHandler)
	return h, nil
}

// listenMultiaddr turns "ip:port" into a TCP multiaddr.
func listenMultiaddr(hostport string) (ma.Multiaddr, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("p2p: listen address %q: %w", hostport, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("p2p: listen address %q: %q is not an IP address", hostport, host)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("p2p: listen address %q: bad port %q", hostport, port)
	}
	addr, err := manet.FromNetAddr(&net.TCPAddr{IP: ip, Port: int(n)})
	if err != nil {
		return nil, fmt.Errorf("p2p: listen address %q: %w", hostport, err)
	}
	return addr, nil
}

// ID returns the host's peer ID.
func (h *Host) ID() peer.ID { return h.host.ID() }

// Addr returns the multiaddr the host listens on with the real port, e.g.
// "/ip4/127.0.0.1/tcp/40123", for other nodes to dial (mesh Meta.P2P).
// When bound to an unspecified IP (0.0.0.0 or ::) it reports one of the
// host's interface addresses instead, preferring a private non-loopback
// one, the way memberlist picks its advertise address.
func (h *Host) Addr() string {
	var bound ma.Multiaddr
	for _, a := range h.host.Network().ListenAddresses() {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			bound = a
			break
		}
	}
	if bound == nil {
		return ""
	}
	if !manet.IsIPUnspecified(bound) {
		return bound.String()
	}
	port, _ := bound.ValueForProtocol(ma.P_TCP)
	var best ma.Multiaddr
	bestRank := 99
	for _, a := range h.host.Addrs() {
		if p, err := a.ValueForProtocol(ma.P_TCP); err != nil || p != port || manet.IsIPUnspecified(a) {
			continue
		}
		if r := addrRank(a); r < bestRank {
			best, bestRank = a, r
		}
	}
	if best == nil {
		return bound.String()
	}
	return best.String()
}

// addrRank orders candidate advertise addresses: private, public, loopback.
func addrRank(a ma.Multiaddr) int {
	switch {
	case manet.IsIPLoopback(a):
		return 2
	case manet.IsPrivateAddr(a):
		return 0
	default:
		return 1
	}
}

// Libp2p returns the underlying libp2p host, for stream layers that need
// more than request/response (raft). Do not Close it; close the Host.
// Streams opened on it pass the connection gater but, unlike Handle's,
// are not re-checked against Allow one by one; to cut off a peer that
// left, close its connections (Network().ClosePeer).
func (h *Host) Libp2p() host.Host { return h.host }

// SetAllow replaces the admission policy (see Config.Allow). It exists
// because the membership that decides admission usually needs this host's
// address before it can be created. It affects new connections and new
// inbound requests; established connections stay open.
func (h *Host) SetAllow(fn func(peer.ID) bool) { h.allow.Store(&fn) }

// Close stops listening, closes every connection, cancels the contexts of
// running handlers and waits for them to return. It is idempotent.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()

	h.cancel()
	err := h.host.Close()
	h.inflight.Wait()
	if err != nil {
		return fmt.Errorf("p2p: close: %w", err)
	}
	return nil
}

// track registers a handler run; it reports false once the host is closed.
func (h *Host) track() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return false
	}
	h.inflight.Add(1)
	return true
}

// isClosed reports whether Close has been called.
func (h *Host) isClosed() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.closed
}
