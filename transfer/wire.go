package transfer

import (
	"bytes"
	"encoding/binary"
	"unsafe"
)

// The BitTorrent wire as herd's swarm connections see it (swarmConn):
// enough of the protocol to follow each direction message by message, read
// the few messages super-seeding and upload slots act on, and pass the rest
// (piece data above all) without copying it.

// BitTorrent wire constants (BEP 3, BEP 6).
const (
	btHandshakeLen    = 68
	btMsgChoke        = 0
	btMsgUnchoke      = 1
	btMsgInterested   = 2
	btMsgUninterested = 3
	btMsgHave         = 4
	btMsgBitfield     = 5
	btMsgPiece        = 7
	btMsgHaveAll      = 0x0e
	btMsgHaveNone     = 0x0f
	// btMaxInspect bounds a message buffered whole to be read: a bitfield
	// of 2^20 pieces. Longer ones are passed on unread.
	btMaxInspect = 1<<17 + 1
)

var btProtocol = []byte("\x13BitTorrent protocol")

// btPieceData returns how many bytes of piece data a message with this id
// and length (id included) carries: a Piece message's length less its id,
// index and offset; 0 for any other message.
func btPieceData(id byte, length int) int64 {
	if id != btMsgPiece || length <= 9 {
		return 0
	}
	return int64(length - 9)
}

// wireCursor follows one direction of a BitTorrent connection: the
// handshake, then length-prefixed messages. Messages that its owner wants
// to read are collected whole; the rest pass in pieces.
type wireCursor struct {
	hs     []byte // the handshake, while it is shorter than btHandshakeLen
	hsDone bool
	hdr    [5]byte // length prefix and id of the current message
	nhdr   int
	left   int    // bytes of the current message still to pass unread
	msg    []byte // the current message, collected whole (prefix included)
	need   int    // total length of msg once complete
	broken bool   // not a BitTorrent stream: everything passes unread
}

// wireEvents are a cursor's callbacks. emit receives every byte to pass on,
// in order (nil when nothing is passed on); handshake the whole handshake;
// collect says whether a message with this id is to be read whole, and
// message receives it and returns what to pass on in its place.
// header, if set, sees the id and length of every message as its header
// is read.
type wireEvents struct {
	emit      func([]byte)
	handshake func([]byte)
	collect   func(id byte) bool
	message   func([]byte) []byte
	header    func(id byte, length int)
}

func (w *wireCursor) atBoundary() bool {
	return w.hsDone && !w.broken && w.nhdr == 0 && w.left == 0 && w.msg == nil
}

func (w *wireCursor) feed(b []byte, ev wireEvents) {
	emit := func(p []byte) {
		if ev.emit != nil && len(p) > 0 {
			ev.emit(p)
		}
	}
	for len(b) > 0 {
		switch {
		case w.broken:
			emit(b)
			return
		case !w.hsDone:
			take := min(btHandshakeLen-len(w.hs), len(b))
			w.hs = append(w.hs, b[:take]...)
			emit(b[:take])
			b = b[take:]
			if n := min(len(w.hs), len(btProtocol)); !bytes.Equal(w.hs[:n], btProtocol[:n]) {
				w.broken = true // an encrypted or foreign stream
				continue
			}
			if len(w.hs) == btHandshakeLen {
				w.hsDone = true
				if ev.handshake != nil {
					ev.handshake(w.hs)
				}
			}
		case w.left > 0:
			take := min(w.left, len(b))
			emit(b[:take])
			w.left -= take
			b = b[take:]
		case w.msg != nil:
			take := min(w.need-len(w.msg), len(b))
			w.msg = append(w.msg, b[:take]...)
			b = b[take:]
			if len(w.msg) == w.need {
				m := w.msg
				w.msg = nil
				emit(ev.message(m))
			}
		default:
			want := 4
			if w.nhdr >= 4 {
				want = 5
			}
			take := min(want-w.nhdr, len(b))
			copy(w.hdr[w.nhdr:], b[:take])
			w.nhdr += take
			b = b[take:]
			if w.nhdr < want {
				continue
			}
			length := int(binary.BigEndian.Uint32(w.hdr[:4]))
			if length == 0 { // keep-alive
				emit(w.hdr[:4])
				w.nhdr = 0
				continue
			}
			if w.nhdr < 5 {
				continue
			}
			w.nhdr = 0
			if ev.header != nil {
				ev.header(w.hdr[4], length)
			}
			if length <= btMaxInspect && ev.collect != nil && ev.collect(w.hdr[4]) {
				w.msg = append(make([]byte, 0, 4+length), w.hdr[:]...)
				w.need = 4 + length
				if len(w.msg) == w.need {
					m := w.msg
					w.msg = nil
					emit(ev.message(m))
				}
				continue
			}
			emit(w.hdr[:])
			w.left = length - 1
		}
	}
}

// splice rebuilds one Write's outgoing bytes from what a wireCursor emits
// for it, without copying the bytes that pass unchanged: while the output
// is the input so far, it only counts; once it differs (a message dropped,
// rewritten or held back), it collects the pieces, referring to the input
// where they come from it and copying the rest.
type splice struct {
	in      []byte
	n       int // bytes of in passed on unchanged so far
	changed bool
	out     [][]byte
}

func (s *splice) emit(b []byte) {
	off, inside := offsetIn(s.in, b)
	if !s.changed {
		if inside && off == s.n {
			s.n += len(b)
			return
		}
		s.changed = true
		if s.n > 0 {
			s.out = append(s.out, s.in[:s.n])
		}
	}
	if !inside {
		b = bytes.Clone(b) // the cursor's own buffer, reused later
	}
	s.out = append(s.out, b)
}

// result returns the output, extra appended.
func (s *splice) result(extra []byte) [][]byte {
	out := s.out
	if !s.changed && s.n > 0 {
		out = append(out, s.in[:s.n])
	}
	if len(extra) > 0 {
		out = append(out, extra)
	}
	return out
}

// offsetIn reports where b lies within p, if it does.
func offsetIn(p, b []byte) (int, bool) {
	if len(p) == 0 || len(b) == 0 {
		return 0, false
	}
	pp, bp := uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if bp < pp || bp+uintptr(len(b)) > pp+uintptr(len(p)) {
		return 0, false
	}
	return int(bp - pp), true
}
