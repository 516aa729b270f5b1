package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/herd-io/herd/mesh/p2p"
)

// RaftProtocol is the libp2p protocol raft's RPCs travel on. Each raft
// connection is one long-lived stream: Noise-encrypted, multiplexed over
// the node's single libp2p connection to the peer, and admitted by the
// host's gater only for mesh members.
const RaftProtocol protocol.ID = "/herd/raft/1"

// Transport tuning.
const (
	// transportMaxPool is how many idle connections raft keeps per peer
	// (Consul's value): appends, heartbeats and votes use separate ones.
	transportMaxPool = 3
	// transportTimeout bounds each raft RPC's I/O; InstallSnapshot scales
	// it with the snapshot size.
	transportTimeout = 10 * time.Second
	// acceptBacklog is how many inbound raft streams may wait for raft to
	// accept them before new ones wait, and acceptWait how long they wait
	// before being reset.
	acceptBacklog = 64
	acceptWait    = 5 * time.Second
	// protectTag keeps the connection manager from trimming raft peers.
	protectTag = "herd-raft"
)

// NewTransport returns a raft transport whose connections are streams on
// h's libp2p host under RaftProtocol. Raft server addresses are peer IDs;
// resolve maps one to the multiaddr to dial (normally the peer's gossip
// Meta.P2P). Closing the transport (raft's Shutdown does it) removes the
// protocol handler, so at most one transport per host may be open at once.
func NewTransport(h *p2p.Host, resolve func(peerID string) (multiaddr string, ok bool), logger *slog.Logger) (*raft.NetworkTransport, error) {
	if h == nil {
		return nil, errors.New("consensus: transport: nil host")
	}
	if logger == nil {
		logger = slog.Default()
	}
	sl := newStreamLayer(h.Libp2p(), resolve, logger)
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  sl,
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		Logger:  newHCLogger(logger, "raft-net"),
	}), nil
}

// streamLayer adapts the libp2p host to raft.StreamLayer: Accept hands out
// inbound RaftProtocol streams, Dial opens outbound ones.
type streamLayer struct {
	host    host.Host
	resolve func(string) (string, bool)
	log     *slog.Logger

	accept chan net.Conn
	closed chan struct{}
	once   sync.Once

	mu        sync.Mutex
	protected map[peer.ID]struct{}
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func newStreamLayer(h host.Host, resolve func(string) (string, bool), log *slog.Logger) *streamLayer {
	l := &streamLayer{
		host:      h,
		resolve:   resolve,
		log:       log,
		accept:    make(chan net.Conn, acceptBacklog),
		closed:    make(chan struct{}),
		protected: make(map[peer.ID]struct{}),
	}
	h.SetStreamHandler(RaftProtocol, l.handle)
	return l
}

// handle runs on libp2p's goroutine for each inbound stream and queues it
// for Accept; a full backlog holds the stream back for a while, then drops
// it, so a stalled raft cannot pile up streams without bound.
func (l *streamLayer) handle(s network.Stream) {
	c := newStreamConn(s)
	t := time.NewTimer(acceptWait)
	defer t.Stop()
	select {
	case l.accept <- c:
		// Close may have drained the backlog just before we queued.
		select {
		case <-l.closed:
			l.drain()
		default:
		}
		return
	case <-l.closed:
	case <-t.C:
		l.log.Warn("raft transport: inbound stream dropped: raft is not accepting", "peer", s.Conn().RemotePeer().String())
	}
	_ = s.Reset()
}

// drain resets the streams still waiting in the backlog.
func (l *streamLayer) drain() {
	for {
		select {
		case c := <-l.accept:
			_ = c.(*streamConn).Reset()
		default:
			return
		}
	}
}

// Accept waits for the next inbound raft stream.
func (l *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting: the protocol handler goes away, queued streams are
// reset and Accept returns net.ErrClosed. Open connections are raft's to
// close. It is idempotent.
func (l *streamLayer) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.host.RemoveStreamHandler(RaftProtocol)
		l.drain()
		l.mu.Lock()
		for id := range l.protected {
			l.host.ConnManager().Unprotect(id, protectTag)
		}
		clear(l.protected)
		l.mu.Unlock()
	})
	return nil
}

// Addr is this node's raft address: its peer ID.
func (l *streamLayer) Addr() net.Addr { return peerAddr(l.host.ID().String()) }

// Dial opens a raft stream to the peer whose ID is address.
func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
	}
	id, err := peer.Decode(string(address))
	if err != nil {
		return nil, fmt.Errorf("raft transport: server address %q is not a peer ID: %w", address, err)
	}
	if l.resolve != nil {
		if addr, ok := l.resolve(string(address)); ok && addr != "" {
			maddr, err := dialAddr(addr, id)
			if err != nil {
				return nil, err
			}
			// Temporary: identify records the peer's own listen addresses
			// once connected, and a restarted peer may move.
			l.host.Peerstore().AddAddrs(id, []ma.Multiaddr{maddr}, peerstore.TempAddrTTL)
		}
	}
	if timeout <= 0 {
		timeout = transportTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// libp2p refuses to redial a peer for a while after a failed dial; raft
	// paces its own retries and must reach a restarted peer at once.
	ctx = network.WithForceDirectDial(ctx, "raft paces its own retries")
	s, err := l.host.NewStream(ctx, id, RaftProtocol)
	if err != nil {
		return nil, fmt.Errorf("raft transport: open stream to %s: %w", id, err)
	}
	l.mu.Lock()
	if _, ok := l.protected[id]; !ok {
		l.protected[id] = struct{}{}
		l.host.ConnManager().Protect(id, protectTag)
	}
	l.mu.Unlock()
	return newStreamConn(s), nil
}

// dialAddr parses a peer's multiaddr, dropping a /p2p/<id> suffix that
// must name id.
func dialAddr(addr string, id peer.ID) (ma.Multiaddr, error) {
	m, err := ma.NewMultiaddr(addr)
	if err != nil {
		return nil, fmt.Errorf("raft transport: address %q of %s: %w", addr, id, err)
	}
	transport, named := peer.SplitAddr(m)
	if named != "" && named != id {
		return nil, fmt.Errorf("raft transport: address %q names peer %s, not %s", addr, named, id)
	}
	if transport == nil {
		return nil, fmt.Errorf("raft transport: address %q of %s has no transport part", addr, id)
	}
	return transport, nil
}

// peerAddr is a net.Addr naming a libp2p peer.
type peerAddr string

func (a peerAddr) Network() string { return "libp2p" }
func (a peerAddr) String() string  { return string(a) }

// streamConn makes a libp2p stream look like a net.Conn. Streams already
// have Read, Write, Close and deadlines; only the addresses are missing.
type streamConn struct {
	network.Stream
	local, remote peerAddr
}

var _ net.Conn = (*streamConn)(nil)

func newStreamConn(s network.Stream) *streamConn {
	return &streamConn{
		Stream: s,
		local:  peerAddr(s.Conn().LocalPeer().String()),
		remote: peerAddr(s.Conn().RemotePeer().String()),
	}
}

func (c *streamConn) LocalAddr() net.Addr  { return c.local }
func (c *streamConn) RemoteAddr() net.Addr { return c.remote }
