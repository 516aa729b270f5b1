package transfer

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/anacrolix/torrent"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// Swarm defaults, used by DefaultSwarmConfig and for zero fields.
const (
	// DefaultSwarmListenAddr is the BitTorrent port next to libp2p's 7947.
	DefaultSwarmListenAddr = "0.0.0.0:7949"
	// DefaultMaxConnsPerTorrent bounds established connections per object.
	// The control group hands each node at most a few dozen peers, so 64
	// leaves room for inbound connections from nodes that were handed us,
	// while an origin facing 2,000 leechers keeps only the 64 best (the
	// others fetch from each other).
	DefaultMaxConnsPerTorrent = 64
	// DefaultMaxUnverifiedBytes lets 32 of the largest (16 MiB) pieces be in
	// flight at once. anacrolix's default (64 MiB) allows a handful of big
	// pieces and stalls a fast link. Unverified bytes live in the partial
	// file, not in memory.
	DefaultMaxUnverifiedBytes = 32 * maxPieceLen
	// DefaultSwarmCongestion is the TCP congestion control of swarm
	// connections. A push runs many bulk flows into each link at once, and
	// BBR (v1), a common system default, kept 5-8 % of their segments
	// retransmitted on 100 Mbit links with 50 ms queues: 200 MB to 20 hosts
	// took 29.5 s with it and 27.0 s with cubic, in the same hour.
	DefaultSwarmCongestion = "cubic"
	// SystemCongestion leaves swarm connections to the kernel's default.
	SystemCongestion = "system"
)

// SwarmConfig configures a Swarm. Start from DefaultSwarmConfig.
type SwarmConfig struct {
	// Store holds complete objects and partial downloads. Required.
	Store *Store
	// ListenAddr is the "ip:port" the swarm listens on, and the source
	// address of its outgoing connections when ip is not unspecified. Port
	// 0 picks a free port (tests). Default DefaultSwarmListenAddr.
	ListenAddr string
	// UploadRate and DownloadRate cap the swarm's bytes per second across
	// all objects. Zero means unlimited. SetRates changes them at runtime.
	UploadRate, DownloadRate int64
	// MaxConnsPerTorrent: default DefaultMaxConnsPerTorrent.
	MaxConnsPerTorrent int
	// MaxUnverifiedBytes: default DefaultMaxUnverifiedBytes.
	MaxUnverifiedBytes int64
	// UploadSlots is how many peers the swarm uploads to at once (see
	// slots.go): default DefaultUploadSlots; negative lets anacrolix serve
	// every interested peer at once.
	UploadSlots int
	// Congestion is the TCP congestion control of swarm connections:
	// default DefaultSwarmCongestion; SystemCongestion keeps the kernel's.
	Congestion string
	// Logger receives the swarm's logs and anacrolix's. Default slog.Default().
	Logger *slog.Logger
}

// DefaultSwarmConfig returns a config with every default filled in and no
// Store.
func DefaultSwarmConfig() *SwarmConfig {
	return &SwarmConfig{
		ListenAddr:         DefaultSwarmListenAddr,
		MaxConnsPerTorrent: DefaultMaxConnsPerTorrent,
		MaxUnverifiedBytes: DefaultMaxUnverifiedBytes,
		UploadSlots:        DefaultUploadSlots,
		Congestion:         DefaultSwarmCongestion,
		Logger:             slog.Default(),
	}
}

func (c SwarmConfig) withDefaults() (SwarmConfig, netip.AddrPort, error) {
	def := DefaultSwarmConfig()
	if c.ListenAddr == "" {
		c.ListenAddr = def.ListenAddr
	}
	if c.MaxConnsPerTorrent == 0 {
		c.MaxConnsPerTorrent = def.MaxConnsPerTorrent
	}
	if c.MaxUnverifiedBytes == 0 {
		c.MaxUnverifiedBytes = def.MaxUnverifiedBytes
	}
	if c.UploadSlots == 0 {
		c.UploadSlots = def.UploadSlots
	}
	if c.Congestion == "" {
		c.Congestion = def.Congestion
	}
	if !ValidCongestion(c.Congestion) {
		return c, netip.AddrPort{}, fmt.Errorf("transfer: swarm congestion control %q: want a kernel algorithm name such as cubic, or %q", c.Congestion, SystemCongestion)
	}
	if c.Logger == nil {
		c.Logger = def.Logger
	}
	if c.Store == nil {
		return c, netip.AddrPort{}, fmt.Errorf("transfer: swarm config: Store is nil")
	}
	ap, err := netip.ParseAddrPort(c.ListenAddr)
	if err != nil {
		return c, ap, fmt.Errorf("transfer: swarm ListenAddr %q: want ip:port: %w", c.ListenAddr, err)
	}
	if c.UploadRate < 0 || c.DownloadRate < 0 || c.MaxConnsPerTorrent < 0 || c.MaxUnverifiedBytes < 0 {
		return c, ap, fmt.Errorf("transfer: swarm config: negative rate or limit")
	}
	return c, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// rateLimit converts bytes/s (0 = unlimited) to a limiter rate.
func rateLimit(bps int64) rate.Limit {
	if bps <= 0 {
		return rate.Inf
	}
	return rate.Limit(bps)
}

// limiterBurst is the burst of both limiters. anacrolix needs the upload
// burst to hold one 16 KiB chunk and the download burst to exceed one read
// (it truncates reads to the burst). It is set explicitly: left at 0 with
// an Inf limit, anacrolix picks MaxInt, and a later SetLimit then never
// throttles anything.
const limiterBurst = 256 << 10

// clientConfig builds the anacrolix config: private (no DHT, trackers,
// PEX, webtorrent, webseeds, UPnP, uTP), seeding, TCP on the given address
// only, file storage through s.
func (s *Swarm) clientConfig(c SwarmConfig, ap netip.AddrPort) *torrent.ClientConfig {
	cc := torrent.NewDefaultClientConfig()
	cc.Seed = true
	cc.NoUpload = false
	cc.NoDHT = true
	cc.DisableTrackers = true
	cc.DisablePEX = true // peers come from the control group only
	cc.DisableWebtorrent = true
	cc.DisableWebseeds = true
	cc.NoDefaultPortForwarding = true
	cc.DisableUTP = true // datacenter links: TCP only, one socket type to firewall
	// The TCP listener is the Swarm's own (see NewSwarm), so that every
	// connection passes through super-seeding.
	cc.DisableTCP = true
	if ap.Addr().Is4() {
		cc.DisableIPv6 = true
	} else {
		cc.DisableIPv4 = true
	}
	cc.DataDir = s.store.partialDir() // unused: DefaultStorage is ours
	cc.DefaultStorage = swarmStorage{s}
	cc.UploadRateLimiter = s.up
	cc.DownloadRateLimiter = s.down
	cc.MaxUnverifiedBytes = c.MaxUnverifiedBytes
	cc.EstablishedConnsPerTorrent = c.MaxConnsPerTorrent
	cc.HalfOpenConnsPerTorrent = max(c.MaxConnsPerTorrent/2, 8)
	cc.TotalHalfOpenConns = 4 * cc.HalfOpenConnsPerTorrent
	cc.TorrentPeersHighWater = 4096
	cc.DialRateLimiter = rate.NewLimiter(100, 50)
	cc.NominalDialTimeout = 10 * time.Second
	cc.MinDialTimeout = 3 * time.Second
	// Plain BitTorrent only, both ways. MSE/RC4 obfuscation is not
	// security and costs CPU; worse, anacrolix retries a failed plain
	// handshake obfuscated unless plain is required, and an obfuscated
	// stream is opaque to swarmConn: super-seeding, upload slots and
	// download yielding silently stop on it. Such retries happened at the
	// start of pushes (a peer that had not yet loaded the object turned
	// the first attempt away).
	cc.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{Preferred: false, RequirePreferred: true}
	// anacrolix counts a failed incoming handshake (a peer that gave up
	// mid-handshake, one asking for an object not loaded yet) against the
	// sender's whole /24, and then refuses every incoming connection from
	// it until a timer clears the count, up to 15 minutes later. In a
	// datacenter a /24 is a rack of peers that the control group handed
	// out itself: a node would be cut off from all of them at once.
	cc.DisableAcceptRateLimiting = true
	cc.Slogger = c.Logger
	// Outgoing connections come from the listen address (see boundDialer).
	cc.DialForPeerConns = false
	cc.Callbacks.ReceivedUsefulData = append(cc.Callbacks.ReceivedUsefulData, s.onUsefulData)
	return cc
}

// boundDialer dials TCP from the swarm's own IP, so that peers see (and
// account, and ban) the address the control group handed out, even on a
// multi-homed host.
type boundDialer struct {
	network string
	d       net.Dialer
	s       *Swarm
}

func newBoundDialer(ap netip.AddrPort, s *Swarm) boundDialer {
	bd := boundDialer{network: "tcp4", d: net.Dialer{KeepAlive: -1}, s: s}
	if ap.Addr().Is6() {
		bd.network = "tcp6"
	}
	if !ap.Addr().IsUnspecified() {
		bd.d.LocalAddr = &net.TCPAddr{IP: ap.Addr().AsSlice()}
	}
	return bd
}

func (b boundDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := b.d.DialContext(ctx, b.network, addr)
	if err != nil {
		return nil, err
	}
	return newSwarmConn(c, b.s), nil
}

func (b boundDialer) DialerNetwork() string { return b.network }

var _ torrent.Dialer = boundDialer{}

// SetRates changes the upload and download caps (bytes/s, 0 = unlimited)
// at runtime.
func (s *Swarm) SetRates(up, down int64) {
	s.up.SetLimit(rateLimit(up))
	s.down.SetLimit(rateLimit(down))
}

// ValidCongestion accepts a kernel congestion control name (TCP_CA_NAME_MAX
// is 16 with the NUL) or SystemCongestion.
func ValidCongestion(name string) bool {
	if name == "" || len(name) > 15 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// congestionFor returns the algorithm swarm sockets are set to, "" to
// leave them as they are: SystemCongestion, or an algorithm this kernel
// lacks (warned about once, here).
func congestionFor(name string, logger *slog.Logger) string {
	if name == SystemCongestion {
		return ""
	}
	avail, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
	if err != nil || !slices.Contains(strings.Fields(string(avail)), name) {
		logger.Warn("transfer: TCP congestion control not available; swarm connections keep the system's", "want", name, "available", strings.TrimSpace(string(avail)))
		return ""
	}
	return name
}

// swarmNotSentLowat bounds the bytes a swarm socket holds that TCP has not
// sent yet (TCP_NOTSENT_LOWAT). Without it the kernel's send buffer may grow
// to megabytes on every connection, so a chunk anacrolix has written is
// already queued for seconds behind others on a 100 Mbit link: the peer,
// tired of waiting, asks another node for it (request stealing), and the
// cancel comes too late to stop the first copy. Kept in the writer instead,
// a cancelled chunk is never sent. One chunk (swarmChunkSize) keeps the
// link busy between two writes without waking the writer for every few
// segments on a fast link.
//
// Measured, 200 MB to 20 hosts on 100 Mbit links, runs alternating in the
// same hour: without it 25.9, 25.9, 26.1 s, 1.5-1.7 copies of the file
// received twice; with 64 KiB 24.5, 25.2, 25.8 s, 0.7-0.9 copies (16 KiB
// did as well). On loopback, where CPU is the limit (BenchmarkSwarm), it
// costs nothing: 572 against 567 MB/s delivered, mean of 3 runs each.
const swarmNotSentLowat = swarmChunkSize

// tuneSocket sets a swarm socket's congestion control (name, "" to keep
// the system's) and its unsent-bytes bound. Failing (an algorithm not
// allowed to this process, say) leaves the system's.
func tuneSocket(c net.Conn, name string) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		if name != "" {
			unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, name)
		}
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, swarmNotSentLowat)
	})
}
