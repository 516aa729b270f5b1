package p2p

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

func TestGaterInbound(t *testing.T) {
	a := newTestHost(t, nil)
	var admitA atomic.Bool
	b := newTestHost(t, func(c *Config) {
		c.Allow = func(p peer.ID) bool { return p != a.ID() || admitA.Load() }
	})
	var ran atomic.Int32
	b.Handle(echoProto, func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
		ran.Add(1)
		return echo(ctx, from, req)
	})

	// Refused: A's call fails as retryable, B's handler never runs. Twice,
	// so the second attempt meets libp2p's dial backoff if Call did not
	// bypass it.
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := a.Call(ctx, b.ID(), b.Addr(), echoProto, []byte("hi"))
		cancel()
		e := wantCode(t, err, CodeUnavailable)
		if !e.Retryable() || !strings.Contains(e.Message, "admit") {
			t.Fatalf("attempt %d: %v: want a retryable error that hints at admission", i, e)
		}
	}
	if n := ran.Load(); n != 0 {
		t.Fatalf("handler ran %d times for a refused peer", n)
	}
	waitFor(t, "refused connection to close", 5*time.Second, func() bool {
		return a.Libp2p().Network().Connectedness(b.ID()) != network.Connected
	})

	// Admitted now: the next call goes through at once.
	admitA.Store(true)
	if _, err := a.Call(context.Background(), b.ID(), b.Addr(), echoProto, []byte("hi")); err != nil {
		t.Fatalf("Call after admitting: %v", err)
	}
	if n := ran.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}

	// Revoked while connected: the connection survives, but B refuses
	// each new request.
	admitA.Store(false)
	_, err := a.Call(context.Background(), b.ID(), b.Addr(), echoProto, []byte("hi"))
	wantCode(t, err, CodeUnavailable)
	if n := ran.Load(); n != 1 {
		t.Fatalf("handler ran %d times after revoking, want 1", n)
	}
}

func TestGaterOutbound(t *testing.T) {
	b := newTestHost(t, nil)
	b.Handle(echoProto, echo)
	var admitB atomic.Bool
	a := newTestHost(t, func(c *Config) {
		c.Allow = func(p peer.ID) bool { return p != b.ID() || admitB.Load() }
	})
	_, err := a.Call(context.Background(), b.ID(), b.Addr(), echoProto, nil)
	wantCode(t, err, CodeUnavailable)

	a.SetAllow(func(peer.ID) bool { return true })
	if _, err := a.Call(context.Background(), b.ID(), b.Addr(), echoProto, nil); err != nil {
		t.Fatalf("Call after SetAllow: %v", err)
	}
}
