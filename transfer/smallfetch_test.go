package transfer

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/herd-io/herd/mesh/p2p"
)

func newTestHost(t testing.TB) *p2p.Host {
	t.Helper()
	cfg := p2p.DefaultConfig()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Timeout = 10 * time.Second
	h, err := p2p.New(cfg)
	if err != nil {
		t.Fatalf("p2p.New: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestFetchSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src := newStore(t)
	server := newTestHost(t)
	ServeContent(server, src)
	client := newTestHost(t)
	dst := newStore(t)

	// Sizes: empty, tiny, exactly one range, several ranges plus a tail.
	for _, n := range []int{0, 5, MaxRangeLength, 3*MaxRangeLength + 777} {
		data := randomBytes(n, uint64(n)+20)
		obj := addBytes(t, src, "conf.bin", data)
		var last int64
		got, err := FetchSmall(ctx, client, dst, server.ID(), server.Addr(), obj, func(d, _ int64) { last = d })
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if got != obj || (n > 0 && last != int64(n)) {
			t.Fatalf("n=%d: got %+v (progress %d), want %+v", n, got, last, obj)
		}
		fileEquals(t, dst.Path(obj.SHA256), data)
	}

	// An object the server lacks, a lying record, a bad hash.
	missing := Object{SHA256: strings.Repeat("a", 64), MD5: strings.Repeat("b", 32), Size: 10, Name: "x"}
	if _, err := FetchSmall(ctx, client, dst, server.ID(), server.Addr(), missing, nil); p2p.CodeOf(err) != p2p.CodeNotFound {
		t.Fatalf("missing object: %v", err)
	}
	real := addBytes(t, src, "real", []byte("real bytes"))
	liar := real
	liar.MD5 = strings.Repeat("0", 32)
	if _, err := FetchSmall(ctx, client, newStore(t), server.ID(), server.Addr(), liar, nil); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("wrong md5: %v", err)
	}
	short := real
	short.Size = 5
	if _, err := FetchSmall(ctx, client, newStore(t), server.ID(), server.Addr(), short, nil); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("wrong size: %v", err)
	}
	bad := real
	bad.SHA256 = "../../../etc/passwd"
	if _, err := FetchSmall(ctx, client, dst, server.ID(), server.Addr(), bad, nil); !errors.Is(err, ErrBadHash) {
		t.Fatalf("bad hash: %v", err)
	}
	// The handler refuses oversized and malformed ranges itself.
	_, err := p2p.CallJSON[rangeRequest, rangeResponse](ctx, client, server.ID(), server.Addr(), ContentProtocol,
		rangeRequest{SHA256: real.SHA256, Offset: 0, Length: MaxRangeLength + 1})
	if p2p.CodeOf(err) != p2p.CodeBadRequest {
		t.Fatalf("oversized range: %v", err)
	}
}
