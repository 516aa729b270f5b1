package p2p

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// refusalLogEvery is how often a refusal of the same peer is logged at Info;
// repeats in between go to Debug so a retrying ex-member cannot flood logs.
const refusalLogEvery = time.Minute

// gater adapts the Allow policy to libp2p's connection gater. Peers are only
// known once the security handshake has authenticated them, so the decision
// is made in InterceptPeerDial (outbound) and InterceptSecured (inbound);
// address-level hooks admit everything.
type gater struct {
	allow *atomic.Pointer[func(peer.ID) bool]
	log   *slog.Logger

	mu     sync.Mutex
	logged map[peer.ID]time.Time // last Info-level refusal per peer
}

var _ connmgr.ConnectionGater = (*gater)(nil)

func newGater(allow *atomic.Pointer[func(peer.ID) bool], log *slog.Logger) *gater {
	return &gater{allow: allow, log: log, logged: make(map[peer.ID]time.Time)}
}

// allowed applies the current policy; a nil policy admits everyone.
func (g *gater) allowed(p peer.ID) bool {
	fn := g.allow.Load()
	return fn == nil || *fn == nil || (*fn)(p)
}

// InterceptPeerDial stops us from dialing a peer we would not accept.
func (g *gater) InterceptPeerDial(p peer.ID) bool {
	if g.allowed(p) {
		return true
	}
	g.refused(p, "outbound", nil)
	return false
}

// InterceptAddrDial admits every address; the peer was already checked.
func (g *gater) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }

// InterceptAccept admits every inbound connection until the handshake
// tells us who it is.
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

// InterceptSecured decides once the remote peer is authenticated.
func (g *gater) InterceptSecured(dir network.Direction, p peer.ID, addrs network.ConnMultiaddrs) bool {
	if g.allowed(p) {
		return true
	}
	g.refused(p, dir.String(), addrs.RemoteMultiaddr())
	return false
}

// InterceptUpgraded admits every connection that got this far.
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

// refused logs a refusal: at Info the first time in refusalLogEvery for a
// peer, at Debug otherwise.
func (g *gater) refused(p peer.ID, dir string, remote ma.Multiaddr) {
	level := slog.LevelDebug
	now := time.Now()
	g.mu.Lock()
	if last, ok := g.logged[p]; !ok || now.Sub(last) >= refusalLogEvery {
		if len(g.logged) >= 4096 { // bound memory under a flood of identities
			clear(g.logged)
		}
		g.logged[p] = now
		level = slog.LevelInfo
	}
	g.mu.Unlock()
	attrs := []any{"peer", p.String(), "direction", dir}
	if remote != nil {
		attrs = append(attrs, "remote", remote.String())
	}
	g.log.Log(context.Background(), level, "p2p: connection refused: peer not admitted", attrs...)
}
