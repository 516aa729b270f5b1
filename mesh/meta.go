package mesh

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
)

// Meta rides in memberlist's node metadata, so every member learns it with
// the node's alive message. Its encoding must stay within
// memberlist.MetaMaxSize (512 bytes): memberlist panics on larger metadata.
type Meta struct {
	ID      string   `json:"id"`              // libp2p peer ID (base58 string)
	IDC     string   `json:"idc"`             // gossip pool; set by New from Config.IDC
	Zone    string   `json:"zone,omitempty"`  // failure domain inside the IDC; set by New from Config.Zone
	Roles   []string `json:"roles,omitempty"` // e.g. "voter", "nonvoter"
	API     string   `json:"api,omitempty"`   // host:port of the node's HTTP API
	P2P     string   `json:"p2p,omitempty"`   // multiaddr of the node's libp2p host
	Version string   `json:"ver,omitempty"`   // herd version
}

// Meta wire format, version 1:
//
//	version  byte (1)
//	ID, IDC, Zone, API, P2P, Version: each uvarint length + UTF-8 bytes
//	roles:   uvarint count, then each role as uvarint length + UTF-8 bytes
//
// Later versions may only append fields, so a decoder that meets a version
// greater than it knows reads the version-1 prefix and ignores the rest;
// version 1 itself must be exact. Binary rather than JSON because the budget
// is 512 bytes and a peer ID plus a multiaddr already take ~120.
const metaVersion1 = 1

// metaMaxSize is the largest encoded Meta memberlist accepts.
const metaMaxSize = memberlist.MetaMaxSize

// EncodeMeta encodes m in the versioned compact format. It fails if a field
// is not valid UTF-8 or if the result exceeds memberlist.MetaMaxSize (512
// bytes), naming the size.
func EncodeMeta(m Meta) ([]byte, error) {
	fields := []struct{ name, v string }{
		{"id", m.ID}, {"idc", m.IDC}, {"zone", m.Zone},
		{"api", m.API}, {"p2p", m.P2P}, {"version", m.Version},
	}
	b := make([]byte, 1, 128)
	b[0] = metaVersion1
	for _, f := range fields {
		if !utf8.ValidString(f.v) {
			return nil, fmt.Errorf("mesh: node meta field %s is not valid UTF-8", f.name)
		}
		b = appendString(b, f.v)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Roles)))
	for i, r := range m.Roles {
		if !utf8.ValidString(r) {
			return nil, fmt.Errorf("mesh: node meta role %d is not valid UTF-8", i)
		}
		b = appendString(b, r)
	}
	if len(b) > metaMaxSize {
		return nil, fmt.Errorf("mesh: node meta encodes to %d bytes, more than memberlist's limit of %d: shorten the ID, addresses, roles or version", len(b), metaMaxSize)
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeMeta decodes metadata written by EncodeMeta. It never panics; on
// malformed input it returns an error saying what is wrong and where.
func DecodeMeta(b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{}, errors.New("mesh: node meta is empty (the node is not a herd node, or runs a build without meta)")
	}
	if len(b) > metaMaxSize {
		return Meta{}, fmt.Errorf("mesh: node meta is %d bytes, more than the limit of %d", len(b), metaMaxSize)
	}
	if b[0] == 0 {
		return Meta{}, fmt.Errorf("mesh: node meta has invalid version 0")
	}
	d := metaDecoder{b: b, off: 1}
	var m Meta
	for _, f := range []*string{&m.ID, &m.IDC, &m.Zone, &m.API, &m.P2P, &m.Version} {
		*f = d.string()
	}
	n := d.uvarint()
	// Each role takes at least one byte, which bounds the allocation.
	if d.err == nil && n > uint64(len(b)-d.off) {
		d.fail("role count %d exceeds the remaining %d bytes", n, len(b)-d.off)
	}
	if d.err == nil && n > 0 {
		m.Roles = make([]string, 0, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			m.Roles = append(m.Roles, d.string())
		}
	}
	if d.err != nil {
		return Meta{}, d.err
	}
	if b[0] == metaVersion1 && d.off != len(b) {
		return Meta{}, fmt.Errorf("mesh: node meta version 1 has %d trailing bytes at offset %d", len(b)-d.off, d.off)
	}
	return m, nil
}

type metaDecoder struct {
	b   []byte
	off int
	err error
}

func (d *metaDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("mesh: malformed node meta at offset %d: %s", d.off, fmt.Sprintf(format, args...))
	}
}

func (d *metaDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad length prefix")
		return 0
	}
	// One value, one encoding: a padded varint (0x80 0x00 for 0) is not
	// what any encoder writes, so it is corruption, not meta.
	if n != uvarintLen(v) {
		d.fail("non-minimal length prefix")
		return 0
	}
	d.off += n
	return v
}

// uvarintLen is the size of v's minimal uvarint encoding.
func uvarintLen(v uint64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], v)
}

func (d *metaDecoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail("field of %d bytes overruns the %d remaining", n, len(d.b)-d.off)
		return ""
	}
	s := string(d.b[d.off : d.off+int(n)])
	if !utf8.ValidString(s) {
		d.fail("field is not valid UTF-8")
		return ""
	}
	d.off += int(n)
	return s
}
