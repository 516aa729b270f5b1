package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	msmux "github.com/multiformats/go-multistream"
)

// Handler serves one request. from is the authenticated caller. ctx ends at
// the caller's deadline or when the Host closes; a handler must return
// promptly then, since Close waits for running handlers. A returned *Error
// (also wrapped) keeps its Code on the caller's side; any other error
// arrives as CodeInternal, a panic too. req is owned by the handler.
type Handler func(ctx context.Context, from peer.ID, req []byte) ([]byte, error)

// syncWriteMax is the largest request frame Call writes before reading the
// response. yamux grants every new stream a 256 KiB send window, so a frame
// this size never blocks on the peer reading it; a bigger one is written
// from a second goroutine, because a peer that refuses the request early
// (too large, not admitted) answers without reading it and the write would
// otherwise wait for a window that never opens.
const syncWriteMax = 192 << 10

// replyGrace is how long a reply may take to write once the handler
// returned, when the caller's budget is already (nearly) spent.
const replyGrace = time.Second

// Handle serves proto with fn, replacing any earlier handler for proto.
// Inbound requests are admitted only while Allow(from) holds, and bounded
// by MaxMessageSize both ways.
func (h *Host) Handle(proto protocol.ID, fn Handler) {
	h.mu.Lock()
	h.handlers[proto] = fn
	h.mu.Unlock()
	h.host.SetStreamHandler(proto, func(s network.Stream) { h.serve(s, fn) })
}

// serve runs one inbound RPC on its own stream. The goroutine belongs to
// libp2p (one per inbound stream); track lets Close wait for it.
func (h *Host) serve(s network.Stream, fn Handler) {
	if !h.track() {
		_ = s.Reset()
		return
	}
	defer h.inflight.Done()

	start := time.Now()
	from := s.Conn().RemotePeer()
	proto := s.Protocol()
	// Our own Timeout bounds reading the request; the caller's budget is
	// only known once the header has arrived.
	_ = s.SetDeadline(start.Add(h.cfg.Timeout))

	// The gater only saw the connection; membership may have changed since.
	if !h.gater.allowed(from) {
		h.gater.refused(from, "inbound stream", s.Conn().RemoteMultiaddr())
		h.replyError(s, CodeUnavailable, "peer "+from.String()+" not admitted by "+h.ID().String())
		return
	}

	payload, err := readFrame(bufio.NewReaderSize(s, 16), h.cfg.MaxMessageSize+maxRequestHeader)
	if err != nil {
		var tooLarge *errFrameTooLarge // declared here: errors.As makes it escape
		switch {
		case errors.As(err, &tooLarge):
			h.replyError(s, CodeTooLarge, fmt.Sprintf("request frame of %d bytes exceeds MaxMessageSize %d of %s",
				tooLarge.size, h.cfg.MaxMessageSize, h.ID()))
		case errors.Is(err, errBadFrame):
			h.replyError(s, CodeBadRequest, err.Error())
		default:
			h.log.Debug("p2p: read request", "protocol", proto, "peer", from, "err", err)
			_ = s.Reset()
		}
		return
	}
	timeout, body, err := decodeRequest(payload)
	if err != nil {
		h.replyError(s, CodeBadRequest, err.Error())
		return
	}
	if len(body) > h.cfg.MaxMessageSize {
		h.replyError(s, CodeTooLarge, fmt.Sprintf("request of %d bytes exceeds MaxMessageSize %d of %s",
			len(body), h.cfg.MaxMessageSize, h.ID()))
		return
	}
	if timeout <= 0 {
		timeout = h.cfg.Timeout
	}
	deadline := start.Add(timeout)
	_ = s.SetDeadline(deadline)
	ctx, cancel := context.WithDeadline(h.ctx, deadline)
	resp, herr := h.invoke(ctx, proto, fn, from, body)
	cancel()
	// A handler that used the whole budget still tells the caller why (a
	// timeout), rather than leaving it a stream reset at the deadline: the
	// caller's own timer may not have fired yet, since this side's budget
	// was counted from the moment the stream opened.
	if late := time.Now().Add(replyGrace); late.After(deadline) {
		_ = s.SetWriteDeadline(late)
	}

	if herr != nil {
		code, msg := toWire(herr)
		h.replyError(s, code, msg)
		return
	}
	if len(resp) > h.cfg.MaxMessageSize {
		h.log.Warn("p2p: response too large", "protocol", proto, "peer", from,
			"size", len(resp), "limit", h.cfg.MaxMessageSize)
		h.replyError(s, CodeTooLarge, fmt.Sprintf("response of %d bytes exceeds MaxMessageSize %d of %s",
			len(resp), h.cfg.MaxMessageSize, h.ID()))
		return
	}
	if err := writeFrame(s, okHeader, resp); err != nil {
		h.log.Debug("p2p: write response", "protocol", proto, "peer", from, "err", err)
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// replyError sends an error response and closes the stream gracefully, so
// the caller reads the reply even when it is still sending its request.
func (h *Host) replyError(s network.Stream, code Code, msg string) {
	if err := writeFrame(s, errorPayload(code, msg), nil); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// invoke runs fn, turning a panic into CodeInternal.
func (h *Host) invoke(ctx context.Context, proto protocol.ID, fn Handler, from peer.ID, req []byte) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("p2p: handler panicked", "protocol", proto, "peer", from,
				"panic", r, "stack", string(debug.Stack()))
			resp, err = nil, Errorf(CodeInternal, "handler for %s panicked", proto)
		}
	}()
	return fn(ctx, from, req)
}

// Call sends req to peer to on proto and returns the response body.
//
// addr ("/ip4/…/tcp/…" or "ip:port") is used to dial when there is no
// connection yet; it may be empty when the peer is connected or known. If
// ctx has no deadline, Config.Timeout applies; the remaining budget travels
// with the request and bounds the handler. Every error is an *Error:
// CodeUnavailable for dial failures, gater refusals (on either side) and lost
// connections, CodeTimeout when the deadline passes, CodeNotFound when the
// peer does not serve proto, CodeTooLarge when either side's MaxMessageSize
// is exceeded, otherwise the code the handler chose.
//
// A call to the host's own ID runs the local handler directly.
func (h *Host) Call(ctx context.Context, to peer.ID, addr string, proto protocol.ID, req []byte) ([]byte, error) {
	if len(req) > h.cfg.MaxMessageSize {
		return nil, Errorf(CodeTooLarge, "request of %d bytes exceeds MaxMessageSize %d", len(req), h.cfg.MaxMessageSize)
	}
	if err := to.Validate(); err != nil {
		return nil, Errorf(CodeBadRequest, "peer ID %q: %v", string(to), err)
	}
	if h.isClosed() {
		return nil, Errorf(CodeUnavailable, "host closed")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.cfg.Timeout)
		defer cancel()
	}
	if to == h.ID() {
		return h.callLocal(ctx, proto, req)
	}
	if err := h.connect(ctx, to, addr); err != nil {
		return nil, err
	}
	return h.call(ctx, to, proto, req)
}

// connect makes sure there is a connection to the peer, dialing addr if
// needed.
func (h *Host) connect(ctx context.Context, to peer.ID, addr string) error {
	if h.host.Network().Connectedness(to) == network.Connected {
		return nil
	}
	if addr != "" {
		maddr, err := dialMultiaddr(addr, to)
		if err != nil {
			return err
		}
		// TempAddrTTL: identify replaces it with the peer's own listen
		// addresses once connected; a stale addr must not linger.
		h.host.Peerstore().AddAddrs(to, []ma.Multiaddr{maddr}, peerstore.TempAddrTTL)
	}
	// Force a fresh dial past libp2p's dial backoff: after one failure it
	// refuses to redial a peer for 5s, growing to 5 minutes, which would keep
	// failing a peer our gossip just admitted. Callers pace their own retries.
	dctx := network.WithForceDirectDial(ctx, "herd rpc: caller paces retries")
	if err := h.host.Connect(dctx, peer.AddrInfo{ID: to}); err != nil {
		return streamErr(ctx, err, "dial %s", to)
	}
	return nil
}

// call runs one RPC over a new stream.
func (h *Host) call(ctx context.Context, to peer.ID, proto protocol.ID, req []byte) ([]byte, error) {
	s, err := h.host.NewStream(ctx, to, proto)
	if err != nil {
		// A peer whose gater refuses us completes the handshake and then
		// drops the connection, which libp2p reports as "connection failed".
		if ctx.Err() == nil && h.host.Network().Connectedness(to) != network.Connected {
			return nil, wrapErr(CodeUnavailable, err,
				"open %s stream to %s: connection closed by the peer (does it admit us yet?)", proto, to)
		}
		return nil, streamErr(ctx, err, "open %s stream to %s", proto, to)
	}
	// A deadline alone does not cover cancellation; resetting the stream
	// unblocks any read or write in progress.
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	deadline, _ := ctx.Deadline()
	if err := s.SetDeadline(deadline); err != nil {
		_ = s.Reset()
		return nil, streamErr(ctx, err, "set deadline")
	}

	head := requestHeader(time.Until(deadline))
	br := bufio.NewReaderSize(s, 16)
	if len(head)+len(req) <= syncWriteMax {
		if err := writeFrame(s, head, req); err != nil {
			_ = s.Reset()
			return nil, streamErr(ctx, err, "send %s request to %s", proto, to)
		}
		_ = s.CloseWrite()
		return h.readResponse(ctx, s, br, to, proto)
	}

	werr := make(chan error, 1)
	go func() {
		err := writeFrame(s, head, req)
		if err == nil {
			err = s.CloseWrite()
		}
		werr <- err
	}()
	resp, err := h.readResponse(ctx, s, br, to, proto)
	select {
	case <-werr:
	default:
		// The peer answered without reading the whole request; unblock
		// the writer.
		_ = s.Reset()
		<-werr
	}
	return resp, err
}

// readResponse reads and decodes the response frame, then closes s.
func (h *Host) readResponse(ctx context.Context, s network.Stream, br *bufio.Reader, to peer.ID, proto protocol.ID) ([]byte, error) {
	// Error frames may be bigger than a tiny MaxMessageSize.
	payload, err := readFrame(br, max(h.cfg.MaxMessageSize+1, maxErrorFrame))
	if err != nil {
		_ = s.Reset()
		var tooLarge *errFrameTooLarge
		if errors.As(err, &tooLarge) {
			return nil, Errorf(CodeTooLarge, "response of %d bytes from %s exceeds MaxMessageSize %d",
				tooLarge.size-1, to, h.cfg.MaxMessageSize)
		}
		return nil, streamErr(ctx, err, "read %s response from %s", proto, to)
	}
	body, rerr, err := decodeResponse(payload)
	if err != nil {
		_ = s.Reset()
		return nil, wrapErr(CodeInternal, err, "%s response from %s", proto, to)
	}
	_ = s.Close()
	if rerr != nil {
		if rerr.Code == CodeTimeout {
			// As for a local timeout, errors.Is(err, DeadlineExceeded) holds.
			rerr.cause = context.DeadlineExceeded
		}
		return nil, rerr
	}
	if len(body) > h.cfg.MaxMessageSize {
		return nil, Errorf(CodeTooLarge, "response of %d bytes from %s exceeds MaxMessageSize %d",
			len(body), to, h.cfg.MaxMessageSize)
	}
	return body, nil
}

// callLocal serves a call to ourselves without the network, with the same
// contract as a remote call: the caller sees only code and message.
func (h *Host) callLocal(ctx context.Context, proto protocol.ID, req []byte) ([]byte, error) {
	h.mu.RLock()
	fn, ok := h.handlers[proto]
	h.mu.RUnlock()
	if !ok {
		return nil, Errorf(CodeNotFound, "protocol %s not served by %s", proto, h.ID())
	}
	if !h.track() {
		return nil, Errorf(CodeUnavailable, "host closed")
	}
	defer h.inflight.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(h.ctx, cancel)
	defer stop()

	resp, err := h.invoke(ctx, proto, fn, h.ID(), slices.Clone(req))
	if err != nil {
		code, msg := toWire(err)
		return nil, &Error{Code: code, Message: msg}
	}
	if len(resp) > h.cfg.MaxMessageSize {
		return nil, Errorf(CodeTooLarge, "response of %d bytes exceeds MaxMessageSize %d", len(resp), h.cfg.MaxMessageSize)
	}
	return slices.Clone(resp), nil
}

// streamErr classifies a dial or stream error. The context decides first:
// when it is done, that is the cause whatever libp2p reported. So does its
// deadline once passed, before the context's timer has fired: the handler
// got the same budget, and its side may reset the stream at the deadline
// a moment before this side's timer runs.
func streamErr(ctx context.Context, err error, format string, args ...any) *Error {
	what := fmt.Sprintf(format, args...)
	var notSupported msmux.ErrNotSupported[protocol.ID]
	deadline, ok := ctx.Deadline()
	expired := ok && !time.Now().Before(deadline)
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return &Error{Code: CodeUnavailable, Message: what + ": " + context.Canceled.Error(), cause: context.Canceled}
	case ctx.Err() != nil || expired || isTimeout(err):
		return &Error{Code: CodeTimeout, Message: what + ": " + err.Error(), cause: context.DeadlineExceeded}
	case errors.As(err, &notSupported):
		return wrapErr(CodeNotFound, err, "%s: peer does not serve the protocol", what)
	default:
		return wrapErr(CodeUnavailable, err, "%s", what)
	}
}

// isTimeout reports whether err is a deadline expiry of some layer.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// dialMultiaddr parses a peer address given as a multiaddr (optionally
// ending in /p2p/<id>, which must be to) or as "host:port".
func dialMultiaddr(addr string, to peer.ID) (ma.Multiaddr, error) {
	if strings.HasPrefix(addr, "/") {
		m, err := ma.NewMultiaddr(addr)
		if err != nil {
			return nil, Errorf(CodeBadRequest, "address %q: %v", addr, err)
		}
		transport, id := peer.SplitAddr(m)
		if id != "" && id != to {
			return nil, Errorf(CodeBadRequest, "address %q names peer %s, not %s", addr, id, to)
		}
		if transport == nil {
			return nil, Errorf(CodeBadRequest, "address %q has no transport part", addr)
		}
		return transport, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, Errorf(CodeBadRequest, "address %q: %v", addr, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, Errorf(CodeBadRequest, "address %q: bad port", addr)
	}
	if ip := net.ParseIP(host); ip != nil {
		m, err := manet.FromNetAddr(&net.TCPAddr{IP: ip, Port: int(n)})
		if err != nil {
			return nil, Errorf(CodeBadRequest, "address %q: %v", addr, err)
		}
		return m, nil
	}
	m, err := ma.NewMultiaddr("/dns/" + host + "/tcp/" + port)
	if err != nil {
		return nil, Errorf(CodeBadRequest, "address %q: %v", addr, err)
	}
	return m, nil
}
