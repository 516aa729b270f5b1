package p2p

import (
	"bytes"
	"context"
	"crypto/rand"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// PingProtocol is the protocol of Host.Ping; every Host serves it.
const PingProtocol protocol.ID = "/herd/ping/1"

// pingNonce is the size of the random payload a ping echoes.
const pingNonce = 8

// pingHandler echoes the nonce back.
func pingHandler(_ context.Context, _ peer.ID, req []byte) ([]byte, error) {
	if len(req) > pingNonce {
		return nil, Errorf(CodeBadRequest, "ping payload of %d bytes, want at most %d", len(req), pingNonce)
	}
	return req, nil
}

// Ping measures the round trip of one small request/response to the peer
// over an established connection (dialing addr first if needed, which is
// not counted). The result is always positive on success.
func (h *Host) Ping(ctx context.Context, to peer.ID, addr string) (time.Duration, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.Timeout)
		defer cancel()
	}
	if to != h.ID() {
		if err := h.connect(ctx, to, addr); err != nil {
			return 0, err
		}
	}
	nonce := make([]byte, pingNonce)
	_, _ = rand.Read(nonce) // never fails, see crypto/rand
	start := time.Now()
	echo, err := h.Call(ctx, to, addr, PingProtocol, nonce)
	rtt := time.Since(start)
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(echo, nonce) {
		return 0, Errorf(CodeInternal, "ping %s: echo does not match", to)
	}
	return max(rtt, time.Nanosecond), nil
}
