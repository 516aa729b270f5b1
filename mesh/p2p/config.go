package p2p

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Defaults used by DefaultConfig and by New for zero fields.
const (
	// DefaultListenAddr is the libp2p port next to memberlist's 7946.
	DefaultListenAddr = "0.0.0.0:7947"
	// DefaultMaxMessageSize bounds one request and one response.
	DefaultMaxMessageSize = 4 << 20
	// DefaultTimeout bounds a Call whose context has no deadline.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxConns bounds open connections; a control member holds one
	// per agent of its IDC, so this is sized for fleets, not for agents.
	DefaultMaxConns = 4096
	// DefaultMaxStreams bounds concurrently open streams (one per in-flight
	// Call or handled request, plus raft's).
	DefaultMaxStreams = 2048

	// maxMessageSizeLimit is the largest MaxMessageSize accepted: a whole
	// message is held in memory on both sides.
	maxMessageSizeLimit = 256 << 20
)

// Config configures a Host. Start from DefaultConfig; in every numeric field
// zero means "use the default".
type Config struct {
	// PrivKey is the node's identity (see LoadOrCreateIdentity). Only ed25519
	// keys are accepted. Default nil: a fresh random key, for tests only —
	// the peer ID then changes on every start.
	PrivKey crypto.PrivKey

	// ListenAddr is the TCP "ip:port" to listen on. Port 0 picks a free port
	// (tests); Host.Addr reports the real one. Default DefaultListenAddr.
	ListenAddr string

	// Allow is the admission policy: a connection (either direction) and
	// every inbound request are only accepted from peers for which Allow
	// returns true. It is called on every new connection and every inbound
	// stream, so it must be cheap and safe for concurrent use. Default nil:
	// allow everyone — tests only. Host.SetAllow replaces it later.
	Allow func(peer.ID) bool

	// MaxMessageSize bounds each request body and each response body, in
	// bytes, on both sides of a Call. Default DefaultMaxMessageSize (4 MiB).
	MaxMessageSize int

	// Timeout is the deadline given to a Call whose context has none, and to
	// a handler whose caller did not send one. Default DefaultTimeout (30s).
	Timeout time.Duration

	// MaxConns is the most connections the resource manager admits, inbound
	// and outbound together. Default DefaultMaxConns (4096).
	MaxConns int

	// MaxStreams is the most streams open at once. Each stream reserves a
	// 256 KiB yamux receive window from the resource manager, so the memory
	// budget is derived from it (MaxStreams × 256 KiB + 64 MiB): that is a
	// ceiling on buffered data, not resident memory — buffers are allocated
	// only as data arrives. Default DefaultMaxStreams (2048).
	MaxStreams int

	// Logger receives the host's own logs (refused peers, handler panics).
	// libp2p's internal logging is not routed here. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every default filled in and no
// identity: set PrivKey (and Allow) before calling New.
func DefaultConfig() *Config {
	return &Config{
		ListenAddr:     DefaultListenAddr,
		MaxMessageSize: DefaultMaxMessageSize,
		Timeout:        DefaultTimeout,
		MaxConns:       DefaultMaxConns,
		MaxStreams:     DefaultMaxStreams,
		Logger:         slog.Default(),
	}
}

// withDefaults returns a copy of cfg with zero fields defaulted, or an error
// naming the first invalid field.
func (cfg *Config) withDefaults() (Config, error) {
	if cfg == nil {
		return Config{}, errors.New("p2p: nil config")
	}
	c := *cfg
	def := DefaultConfig()
	if c.ListenAddr == "" {
		c.ListenAddr = def.ListenAddr
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = def.MaxMessageSize
	}
	if c.Timeout == 0 {
		c.Timeout = def.Timeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = def.MaxConns
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = def.MaxStreams
	}
	if c.Logger == nil {
		c.Logger = def.Logger
	}

	switch {
	case c.MaxMessageSize < 0 || c.MaxMessageSize > maxMessageSizeLimit:
		return Config{}, fmt.Errorf("p2p: MaxMessageSize %d outside 1..%d (move bulk data with transfer, not RPC)",
			c.MaxMessageSize, maxMessageSizeLimit)
	case c.Timeout < 0:
		return Config{}, fmt.Errorf("p2p: Timeout %s is negative", c.Timeout)
	case c.MaxConns < 0:
		return Config{}, fmt.Errorf("p2p: MaxConns %d is negative", c.MaxConns)
	case c.MaxStreams < 0:
		return Config{}, fmt.Errorf("p2p: MaxStreams %d is negative", c.MaxStreams)
	}
	if c.PrivKey != nil && c.PrivKey.Type() != crypto.Ed25519 {
		return Config{}, fmt.Errorf("p2p: PrivKey is %s, want Ed25519", c.PrivKey.Type())
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return Config{}, fmt.Errorf("p2p: ListenAddr %q: want ip:port: %w", c.ListenAddr, err)
	}
	return c, nil
}
