package consensus

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/herd-io/herd/mesh/p2p"
)

func newHost(t *testing.T) *p2p.Host {
	t.Helper()
	cfg := p2p.DefaultConfig()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.DiscardHandler)
	h, err := p2p.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func TestStreamLayer(t *testing.T) {
	a, b := newHost(t), newHost(t)
	resolve := func(id string) (string, bool) {
		if id == b.ID().String() {
			return b.Addr(), true
		}
		return "", false
	}
	la := newStreamLayer(a.Libp2p(), resolve, slog.New(slog.DiscardHandler))
	lb := newStreamLayer(b.Libp2p(), nil, slog.New(slog.DiscardHandler))
	defer la.Close()

	if got := lb.Addr().String(); got != b.ID().String() {
		t.Fatalf("Addr %q, want the peer ID", got)
	}
	c, err := la.Dial(raft.ServerAddress(b.ID().String()), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if c.RemoteAddr().String() != b.ID().String() || c.LocalAddr().String() != a.ID().String() {
		t.Fatalf("addresses %s -> %s", c.LocalAddr(), c.RemoteAddr())
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	s, err := lb.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if s.RemoteAddr().String() != a.ID().String() {
		t.Fatalf("accepted from %s", s.RemoteAddr())
	}
	// Deadlines work, as raft's transport relies on them.
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read past deadline: %v", err)
		}
	}

	// Closed: Accept fails at once and peers can no longer open streams.
	if err := lb.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := lb.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("accept after close: %v", err)
	}
	// libp2p may negotiate the protocol lazily (identify told it b speaks
	// it), so the refusal can surface at the first exchange instead.
	if c2, err := la.Dial(raft.ServerAddress(b.ID().String()), 2*time.Second); err == nil {
		_ = c2.SetDeadline(time.Now().Add(2 * time.Second))
		_, werr := c2.Write([]byte("x"))
		_, rerr := c2.Read(buf)
		if werr == nil && rerr == nil {
			t.Fatal("exchange with a closed layer succeeded")
		}
		_ = c2.Close()
	}
	if _, err := la.Dial("not-a-peer-id", time.Second); err == nil || !strings.Contains(err.Error(), "not a peer ID") {
		t.Fatalf("dial bad address: %v", err)
	}
}

func TestNewTransportLocalAddr(t *testing.T) {
	h := newHost(t)
	tr, err := NewTransport(h, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// raft uses the transport's address as this server's address.
	if got := string(tr.LocalAddr()); got != h.ID().String() {
		t.Fatalf("LocalAddr %q, want %q", got, h.ID())
	}
	_, err = NewTransport(nil, nil, nil)
	if err == nil {
		t.Fatal("nil host accepted")
	}
}

func TestHCLogLevels(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := newHCLogger(logger, "raft")
	l.Info("entering follower state", "term", 2)
	l.Warn("heartbeat timeout reached")
	l.Error("failed to contact", "server-id", "n2")
	l.Named("snapshot").Debug("reaping")
	l.With("peer", "p1").Trace("pipelining")
	l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Print("[WARN] old style")
	out := buf.String()
	for _, want := range []string{
		`level=DEBUG msg="entering follower state" component=raft term=2`,
		`level=WARN msg="heartbeat timeout reached"`,
		`level=ERROR msg="failed to contact" component=raft server-id=n2`,
		`subcomponent=raft.snapshot`,
		`level=DEBUG msg=pipelining component=raft peer=p1`,
		`level=WARN msg="old style"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	quiet := newHCLogger(slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})), "raft")
	if quiet.IsDebug() || quiet.IsInfo() || !quiet.IsWarn() {
		t.Error("level checks do not follow the slog level")
	}
}
