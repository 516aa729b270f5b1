package p2p

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/x/rate"
)

// streamWindow is the receive window yamux reserves from the resource
// manager for every new stream (go-yamux's initialStreamWindow).
const streamWindow = 256 << 10

// newResourceManager builds the resource manager from the Config.
//
// libp2p's default limits suit a public DHT node and break a fleet; each of
// these was hit in tests and is replaced here:
//   - 64 inbound streams per protocol per peer (plus 4 per GiB of an
//     eighth of RAM): the 65th concurrent call from one peer is reset with
//     "stream reset by remote, error code: 4098". herd bounds streams
//     per peer and system-wide, not per protocol.
//   - 64 MiB of memory per peer: yamux reserves a 256 KiB window per stream
//     from the peer scope, so the 257th concurrent stream to one peer fails
//     with "resource limit exceeded".
//   - 64 inbound connections system-wide at the base scale: a control member
//     holds one per agent of its IDC.
//
// The connection rate limiter is loosened for the same reason; see connRate.
func newResourceManager(cfg *Config) (network.ResourceManager, error) {
	scaling := rcmgr.DefaultLimits
	// Keeps identify's own small per-peer limits; identify is the one libp2p
	// service still running besides ours.
	libp2p.SetDefaultServiceLimits(&scaling)
	base := scaling.Scale(0, 0) // below 128 MiB Scale returns the base limits

	conns := rcmgr.LimitVal(cfg.MaxConns)
	streams := rcmgr.LimitVal(cfg.MaxStreams)
	memory := rcmgr.LimitVal64(int64(cfg.MaxStreams)*streamWindow + 64<<20)
	peerStreams := rcmgr.LimitVal(max(cfg.MaxStreams/2, 1))
	peerMemory := rcmgr.LimitVal64(int64(peerStreams)*streamWindow + 16<<20)
	transientStreams := rcmgr.LimitVal(max(cfg.MaxStreams/4, 1))

	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Conns: conns, ConnsInbound: conns, ConnsOutbound: conns, FD: conns,
			Streams: streams, StreamsInbound: streams, StreamsOutbound: streams,
			Memory: memory,
		},
		// Transient covers connections still in their handshake and streams
		// not yet bound to a protocol: a mass reconnect after a control
		// member restarts lands here.
		Transient: rcmgr.ResourceLimits{
			Conns: conns / 2, ConnsInbound: conns / 2, ConnsOutbound: conns / 2, FD: conns / 2,
			Streams: transientStreams, StreamsInbound: transientStreams, StreamsOutbound: transientStreams,
			Memory: rcmgr.LimitVal64(int64(transientStreams)*streamWindow + 16<<20),
		},
		PeerDefault: rcmgr.ResourceLimits{
			Streams: peerStreams, StreamsInbound: peerStreams, StreamsOutbound: peerStreams,
			Memory: peerMemory,
		},
		ProtocolDefault: rcmgr.ResourceLimits{
			Streams: rcmgr.Unlimited, StreamsInbound: rcmgr.Unlimited, StreamsOutbound: rcmgr.Unlimited,
			Memory: rcmgr.Unlimited64,
		},
		ProtocolPeerDefault: rcmgr.ResourceLimits{
			Streams: rcmgr.Unlimited, StreamsInbound: rcmgr.Unlimited, StreamsOutbound: rcmgr.Unlimited,
			Memory: rcmgr.Unlimited64,
		},
	}
	limits := partial.Build(base)
	mgr, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits),
		// libp2p.DisableMetrics does not reach a resource manager built by
		// the caller: without this, every stream and memory reservation is
		// traced under a global lock with a formatted timestamp — over a
		// third of the allocations of a Call.
		rcmgr.WithMetricsDisabled(),
		rcmgr.WithConnRateLimiters(connRate()),
		rcmgr.WithLimitPerSubnet(
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: 64}},
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 56, ConnCount: 64}, {PrefixLength: 48, ConnCount: 512}},
		),
	)
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	return mgr, nil
}

// connRate is the rate limit on new connections per remote IP, applied by
// the resource manager to dials as well as to accepts.
//
// libp2p's default allows a burst of 16 and then one connection per five
// seconds per IPv4 address. Callers that retry after a gater refusal (a node
// not yet known to its peer's gossip) burn through that in seconds and then
// cannot even dial; agents reconnecting after a restart do too. Access
// control here is the gater, so the limiter only needs to stop floods.
func connRate() *rate.Limiter {
	per := rate.Limit{RPS: 10, Burst: 128}
	return &rate.Limiter{
		NetworkPrefixLimits: []rate.PrefixLimit{
			{Prefix: netip.MustParsePrefix("127.0.0.0/8")}, // zero Limit: unlimited
			{Prefix: netip.MustParsePrefix("::1/128")},
		},
		SubnetRateLimiter: rate.SubnetLimiter{
			IPv4SubnetLimits: []rate.SubnetLimit{{PrefixLength: 32, Limit: per}},
			IPv6SubnetLimits: []rate.SubnetLimit{{PrefixLength: 56, Limit: per}},
			GracePeriod:      time.Minute,
		},
	}
}
