package p2p

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

const echoProto protocol.ID = "/herd/test/echo/1"

// echo returns "from:<peer>|" + req so the test sees who the handler saw.
func echo(_ context.Context, from peer.ID, req []byte) ([]byte, error) {
	return append([]byte("from:"+from.String()+"|"), req...), nil
}

func TestCallRoundTrip(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, nil)
	b.Handle(echoProto, echo)

	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"small", 100},
		{"at sync write limit", syncWriteMax - 16},
		{"large, written concurrently", 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := bytes.Repeat([]byte{'x'}, tt.size)
			resp, err := a.Call(context.Background(), b.ID(), b.Addr(), echoProto, req)
			if err != nil {
				t.Fatalf("Call: %v", err)
			}
			want := append([]byte("from:"+a.ID().String()+"|"), req...)
			if !bytes.Equal(resp, want) {
				t.Fatalf("response of %d bytes, want %d", len(resp), len(want))
			}
		})
	}
}

func TestCallAddrForms(t *testing.T) {
	b := newTestHost(t, nil)
	b.Handle(echoProto, echo)
	port := b.Addr()[strings.LastIndex(b.Addr(), "/")+1:]

	tests := []struct {
		name string
		addr string
		code Code // "" = success
	}{
		{"multiaddr", b.Addr(), ""},
		{"multiaddr with peer", b.Addr() + "/p2p/" + b.ID().String(), ""},
		{"host:port", "127.0.0.1:" + port, ""},
		{"wrong peer in multiaddr", b.Addr() + "/p2p/" + newTestHost(t, nil).ID().String(), CodeBadRequest},
		{"garbage", "/not/a/multiaddr", CodeBadRequest},
		{"bad port", "127.0.0.1:99999", CodeBadRequest},
		{"nothing listening", "127.0.0.1:1", CodeUnavailable},
		{"no address at all", "", CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestHost(t, nil) // fresh: not connected, empty peerstore
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := a.Call(ctx, b.ID(), tt.addr, echoProto, []byte("hi"))
			if tt.code == "" {
				if err != nil {
					t.Fatalf("Call: %v", err)
				}
				return
			}
			wantCode(t, err, tt.code)
		})
	}
}

func TestCallErrors(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, nil)

	tests := []struct {
		name    string
		handler Handler
		code    Code
		msg     string // substring of the message
	}{
		{"typed error keeps its code",
			func(context.Context, peer.ID, []byte) ([]byte, error) {
				return nil, Errorf(CodeNotFound, "no run %d", 7)
			}, CodeNotFound, "no run 7"},
		{"wrapped typed error keeps its code and context",
			func(context.Context, peer.ID, []byte) ([]byte, error) {
				return nil, fmt.Errorf("lookup: %w", Errorf(CodeForbidden, "not yours"))
			}, CodeForbidden, "lookup: forbidden: not yours"},
		{"plain error becomes internal",
			func(context.Context, peer.ID, []byte) ([]byte, error) {
				return nil, errors.New("disk on fire")
			}, CodeInternal, "disk on fire"},
		{"panic becomes internal",
			func(context.Context, peer.ID, []byte) ([]byte, error) {
				panic("boom")
			}, CodeInternal, "panicked"},
		{"custom code passes through",
			func(context.Context, peer.ID, []byte) ([]byte, error) {
				return nil, &Error{Code: "conflict", Message: "stale index"}
			}, "conflict", "stale index"},
		{"huge message is truncated, not refused",
			func(context.Context, peer.ID, []byte) ([]byte, error) {
				return nil, Errorf(CodeBadRequest, "%s", strings.Repeat("m", 3*maxErrorMessage))
			}, CodeBadRequest, "mmmm"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proto := protocol.ID(fmt.Sprintf("/herd/test/err/%d", i))
			b.Handle(proto, tt.handler)
			_, err := a.Call(context.Background(), b.ID(), b.Addr(), proto, nil)
			e := wantCode(t, err, tt.code)
			if !strings.Contains(e.Message, tt.msg) {
				t.Fatalf("message %q does not contain %q", e.Message, tt.msg)
			}
			if len(e.Message) > maxErrorMessage {
				t.Fatalf("message of %d bytes, want <= %d", len(e.Message), maxErrorMessage)
			}
		})
	}

	// The host survives a panicking handler.
	b.Handle(echoProto, echo)
	if _, err := a.Call(context.Background(), b.ID(), b.Addr(), echoProto, nil); err != nil {
		t.Fatalf("Call after panic: %v", err)
	}
}

func TestCallUnknownProtocol(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, nil)
	_, err := a.Call(context.Background(), b.ID(), b.Addr(), "/herd/nope/1", []byte("x"))
	e := wantCode(t, err, CodeNotFound)
	if !strings.Contains(e.Message, "/herd/nope/1") || !strings.Contains(e.Message, "does not serve") {
		t.Fatalf("message %q should name the protocol and say it is not served", e.Message)
	}
}

func TestTooLarge(t *testing.T) {
	const small, big = 1 << 10, 1 << 20
	var ran atomic.Int32
	handler := func(size int) Handler {
		return func(_ context.Context, _ peer.ID, req []byte) ([]byte, error) {
			ran.Add(1)
			return make([]byte, size), nil
		}
	}

	tests := []struct {
		name               string
		callerMax, peerMax int
		reqSize, respSize  int
		wantRun            bool
	}{
		{"request over caller's limit: refused before sending", small, big, 2 * small, 1, false},
		{"request over peer's limit", big, small, 4 * small, 1, false},
		{"large request over peer's limit, peer answers before reading it", big, small, 512 << 10, 1, false},
		{"response over peer's limit", big, small, 1, 4 * small, true},
		{"response over caller's limit", small, big, 1, 4 * small, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newTestHost(t, func(c *Config) { c.MaxMessageSize = tt.callerMax })
			b := newTestHost(t, func(c *Config) { c.MaxMessageSize = tt.peerMax })
			proto := protocol.ID(fmt.Sprintf("/herd/test/large/%d", i))
			b.Handle(proto, handler(tt.respSize))
			ran.Store(0)

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := a.Call(ctx, b.ID(), b.Addr(), proto, make([]byte, tt.reqSize))
			e := wantCode(t, err, CodeTooLarge)
			if !strings.Contains(e.Message, "exceeds MaxMessageSize") {
				t.Fatalf("message %q should explain the limit", e.Message)
			}
			if got := ran.Load() == 1; got != tt.wantRun {
				t.Fatalf("handler ran = %v, want %v", got, tt.wantRun)
			}
			// The connection stays usable after a refusal.
			b.Handle(echoProto, echo)
			if _, err := a.Call(ctx, b.ID(), b.Addr(), echoProto, []byte("ok")); err != nil {
				t.Fatalf("Call after too-large: %v", err)
			}
		})
	}
}

func TestCallDeadline(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, nil)
	handlerDone := make(chan time.Time, 1)
	b.Handle("/herd/test/slow/1", func(ctx context.Context, _ peer.ID, _ []byte) ([]byte, error) {
		<-ctx.Done()
		handlerDone <- time.Now()
		return nil, ctx.Err()
	})
	// Connect first so the deadline is spent in the handler, not the dial.
	if _, err := a.Ping(context.Background(), b.ID(), b.Addr()); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := a.Call(ctx, b.ID(), b.Addr(), "/herd/test/slow/1", nil)
	wantCode(t, err, CodeTimeout)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("errors.Is(err, DeadlineExceeded) = false for %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Call took %s with a 300ms deadline", took)
	}
	// The caller's budget reached the handler: its context ended too,
	// long before the host's 10s default.
	select {
	case at := <-handlerDone:
		if at.Sub(start) > 3*time.Second {
			t.Fatalf("handler context ended %s after the call started", at.Sub(start))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler context never ended")
	}
}

func TestCallCancel(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, nil)
	entered := make(chan struct{})
	b.Handle("/herd/test/block/1", func(ctx context.Context, _ peer.ID, _ []byte) ([]byte, error) {
		close(entered)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := a.Call(ctx, b.ID(), b.Addr(), "/herd/test/block/1", nil)
		errc <- err
	}()
	<-entered
	cancel()
	select {
	case err := <-errc:
		wantCode(t, err, CodeUnavailable)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("errors.Is(err, Canceled) = false for %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Call did not return after cancel")
	}
}

// TestConcurrentCalls holds every handler until all calls have arrived, so
// n streams from one peer are open at the same time. libp2p's default
// resource limits fail this at 65 (per protocol per peer) and at 257 (per
// peer memory).
func TestConcurrentCalls(t *testing.T) {
	for _, n := range []int{100, 300} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			a := newTestHost(t, nil)
			b := newTestHost(t, nil)
			var arrived atomic.Int32
			all := make(chan struct{})
			b.Handle(echoProto, func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
				if int(arrived.Add(1)) == n {
					close(all)
				}
				select {
				case <-all:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return echo(ctx, from, req)
			})

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Go(func() {
					req := fmt.Appendf(nil, "req-%d", i)
					resp, err := a.Call(ctx, b.ID(), b.Addr(), echoProto, req)
					if err != nil {
						errs <- fmt.Errorf("call %d: %w", i, err)
						return
					}
					if !bytes.HasSuffix(resp, req) {
						errs <- fmt.Errorf("call %d: got %q", i, resp)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

func TestCallSelf(t *testing.T) {
	a := newTestHost(t, nil)
	a.Handle(echoProto, echo)
	resp, err := a.Call(context.Background(), a.ID(), "", echoProto, []byte("me"))
	if err != nil {
		t.Fatalf("Call self: %v", err)
	}
	if want := "from:" + a.ID().String() + "|me"; string(resp) != want {
		t.Fatalf("resp = %q, want %q", resp, want)
	}
	_, err = a.Call(context.Background(), a.ID(), "", "/herd/nope/1", nil)
	wantCode(t, err, CodeNotFound)
	_, err = a.Call(context.Background(), "", "", echoProto, nil)
	wantCode(t, err, CodeBadRequest)
}

func TestPeerGone(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, nil)
	b.Handle(echoProto, echo)
	addr := b.Addr()
	if _, err := a.Call(context.Background(), b.ID(), addr, echoProto, nil); err != nil {
		t.Fatalf("Call: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, err := a.Call(context.Background(), b.ID(), addr, echoProto, nil)
	e := wantCode(t, err, CodeUnavailable)
	if !e.Retryable() {
		t.Fatal("unavailable should be retryable")
	}
}

func TestClose(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, nil)
	entered := make(chan struct{})
	exited := make(chan error, 1)
	b.Handle("/herd/test/block/1", func(ctx context.Context, _ peer.ID, _ []byte) ([]byte, error) {
		close(entered)
		<-ctx.Done()
		exited <- ctx.Err()
		return nil, ctx.Err()
	})
	errc := make(chan error, 1)
	go func() {
		_, err := a.Call(context.Background(), b.ID(), b.Addr(), "/herd/test/block/1", nil)
		errc <- err
	}()
	<-entered
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Close returned, so the handler has returned: its result is buffered.
	select {
	case err := <-exited:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler ctx err = %v, want Canceled", err)
		}
	default:
		t.Fatal("Close returned while a handler was still running")
	}
	select {
	case err := <-errc:
		wantCode(t, err, CodeUnavailable)
	case <-time.After(5 * time.Second):
		t.Fatal("Call did not fail after the peer closed")
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := b.Call(context.Background(), a.ID(), a.Addr(), echoProto, nil)
	wantCode(t, err, CodeUnavailable)
}

type jsonReq struct {
	N int `json:"n"`
}
type jsonResp struct {
	Double int    `json:"double"`
	From   string `json:"from"`
}

func TestJSON(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, nil)
	const proto protocol.ID = "/herd/test/json/1"
	HandleJSON(b, proto, func(_ context.Context, from peer.ID, req jsonReq) (jsonResp, error) {
		if req.N < 0 {
			return jsonResp{}, Errorf(CodeBadRequest, "negative n")
		}
		return jsonResp{Double: 2 * req.N, From: from.String()}, nil
	})

	resp, err := CallJSON[jsonReq, jsonResp](context.Background(), a, b.ID(), b.Addr(), proto, jsonReq{N: 21})
	if err != nil {
		t.Fatalf("CallJSON: %v", err)
	}
	if resp.Double != 42 || resp.From != a.ID().String() {
		t.Fatalf("resp = %+v", resp)
	}

	_, err = CallJSON[jsonReq, jsonResp](context.Background(), a, b.ID(), b.Addr(), proto, jsonReq{N: -1})
	wantCode(t, err, CodeBadRequest)

	// A body that is not JSON never reaches the typed handler.
	_, err = a.Call(context.Background(), b.ID(), b.Addr(), proto, []byte("{nope"))
	wantCode(t, err, CodeBadRequest)

	// A response that does not decode into Resp.
	_, err = CallJSON[jsonReq, []string](context.Background(), a, b.ID(), b.Addr(), proto, jsonReq{N: 1})
	wantCode(t, err, CodeInternal)
}

func TestPing(t *testing.T) {
	a := newTestHost(t, nil)
	b := newTestHost(t, nil)
	for i := range 3 {
		rtt, err := a.Ping(context.Background(), b.ID(), b.Addr())
		if err != nil {
			t.Fatalf("Ping %d: %v", i, err)
		}
		if rtt <= 0 {
			t.Fatalf("Ping %d: rtt = %s, want > 0", i, rtt)
		}
	}
	if rtt, err := a.Ping(context.Background(), a.ID(), ""); err != nil || rtt <= 0 {
		t.Fatalf("self Ping = %s, %v", rtt, err)
	}
}

func TestAddr(t *testing.T) {
	h := newTestHost(t, nil)
	if !strings.HasPrefix(h.Addr(), "/ip4/127.0.0.1/tcp/") || strings.HasSuffix(h.Addr(), "/tcp/0") {
		t.Fatalf("Addr = %q, want /ip4/127.0.0.1/tcp/<real port>", h.Addr())
	}

	wild := newTestHost(t, func(c *Config) { c.ListenAddr = "0.0.0.0:0" })
	if strings.Contains(wild.Addr(), "0.0.0.0") || strings.HasSuffix(wild.Addr(), "/tcp/0") {
		t.Fatalf("Addr = %q, want a concrete address and port", wild.Addr())
	}
	wild.Handle(echoProto, echo)
	if _, err := h.Call(context.Background(), wild.ID(), wild.Addr(), echoProto, nil); err != nil {
		t.Fatalf("Call to the advertised address %s: %v", wild.Addr(), err)
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"negative size", func(c *Config) { c.MaxMessageSize = -1 }, "MaxMessageSize"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "Timeout"},
		{"no port", func(c *Config) { c.ListenAddr = "127.0.0.1" }, "ListenAddr"},
		{"hostname", func(c *Config) { c.ListenAddr = "localhost:0" }, "not an IP"},
		{"port in use", nil, "start libp2p host"},
	}
	taken := newTestHost(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ListenAddr = "127.0.0.1:0"
			if tt.mut != nil {
				tt.mut(cfg)
			} else {
				cfg.ListenAddr = "127.0.0.1:" + taken.Addr()[strings.LastIndex(taken.Addr(), "/")+1:]
			}
			h, err := New(cfg)
			if err == nil {
				h.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
