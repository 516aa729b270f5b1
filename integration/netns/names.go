package netns

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Address plan. All of it is pure so it can be table-tested without root.
const (
	// slotCount is the number of /24 slots in 198.18.0.0/15.
	slotCount = 512
	// maxGroup is the largest aligned run of slots one fleet leases (a /20).
	maxGroup = 16
	// reservedLow leaves .2-.10 free for test-owned extras (a fake router,
	// a second listener) so host N always sits at .N+10.
	reservedLow = 10
)

// fleetRange is the only range the package ever assigns (RFC 2544
// benchmarking). Nothing outside it is ever configured.
var fleetRange = netip.MustParsePrefix("198.18.0.0/15")

// groupSize returns how many consecutive /24 slots a fleet of hosts needs:
// 1, 2, 4, 8 or 16.
func groupSize(hosts int) (int, error) {
	for g := 1; g <= maxGroup; g *= 2 {
		if hosts <= g*256-reservedLow-2 {
			return g, nil
		}
	}
	return 0, fmt.Errorf("netns: %d hosts do not fit in a /20", hosts)
}

// layout is the address and name plan of one fleet.
type layout struct {
	slot  int    // first slot of the lease; every name derives from it
	group int    // number of slots leased
	hosts int    // number of hosts
	pfx   string // Config.Prefix
}

// base returns the first address of slot s.
func slotBase(s int) netip.Addr {
	b := fleetRange.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(s) * 256
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// bits is the prefix length of the fleet subnet: /24 for one slot, /20 for 16.
func (l layout) bits() int {
	b := 24
	for g := l.group; g > 1; g /= 2 {
		b--
	}
	return b
}

// subnet is the fleet's on-link prefix.
func (l layout) subnet() netip.Prefix {
	return netip.PrefixFrom(slotBase(l.slot), l.bits())
}

// nth returns the address at offset n from the start of the subnet.
func (l layout) nth(n int) netip.Addr {
	b := slotBase(l.slot).As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// gateway is the bridge address in the root namespace.
func (l layout) gateway() netip.Addr { return l.nth(1) }

// hostAddr is host n's address (n counts from 1).
func (l layout) hostAddr(n int) netip.Addr { return l.nth(reservedLow + n) }

// fleetPrefix is the part of every namespace name before "-h<N>".
func (l layout) fleetPrefix() string { return fmt.Sprintf("%s-s%d", l.pfx, l.slot) }

func (l layout) bridge() string    { return bridgeName(l.slot) }
func (l layout) veth(n int) string { return vethName(l.slot, n) }
func (l layout) ns(n int) string   { return nsName(l.pfx, l.slot, n) }

// bridgeMAC is fixed per slot so the bridge does not adopt (and later change
// to) the lowest port MAC, which would invalidate the hosts' ARP entries for
// the gateway. 02: marks it locally administered.
func (l layout) bridgeMAC() string {
	return fmt.Sprintf("02:68:6e:62:%02x:%02x", l.slot>>8, l.slot&0xff)
}

// Interface names stay well under IFNAMSIZ-1 (15): "hn511h4084" is 10.
func bridgeName(slot int) string            { return "hnbr" + strconv.Itoa(slot) }
func vethName(slot, n int) string           { return fmt.Sprintf("hn%dh%d", slot, n) }
func nsName(pfx string, slot, n int) string { return fmt.Sprintf("%s-s%d-h%d", pfx, slot, n) }

// parseLinkName reports the slot of a root-namespace link this package
// names: "hnbr<slot>" (host 0) or "hn<slot>h<N>". It never panics.
func parseLinkName(name string) (slot, host int, ok bool) {
	if rest, found := strings.CutPrefix(name, "hnbr"); found {
		s, ok := parseNum(rest)
		return s, 0, ok && s < slotCount
	}
	rest, found := strings.CutPrefix(name, "hn")
	if !found {
		return 0, 0, false
	}
	ss, hs, found := strings.Cut(rest, "h")
	if !found {
		return 0, 0, false
	}
	s, ok1 := parseNum(ss)
	h, ok2 := parseNum(hs)
	if !ok1 || !ok2 || s >= slotCount || h < 1 {
		return 0, 0, false
	}
	return s, h, true
}

// parseNSName reports the slot and host of a namespace this package names:
// "<prefix>-s<slot>-h<N>" with a prefix that Config.validate accepts.
func parseNSName(name string) (pfx string, slot, host int, ok bool) {
	i := strings.LastIndex(name, "-h")
	if i < 0 {
		return "", 0, 0, false
	}
	h, okH := parseNum(name[i+2:])
	j := strings.LastIndex(name[:i], "-s")
	if j < 0 {
		return "", 0, 0, false
	}
	s, okS := parseNum(name[j+2 : i])
	pfx = name[:j]
	if !okH || !okS || h < 1 || s >= slotCount || !prefixRE.MatchString(pfx) {
		return "", 0, 0, false
	}
	return pfx, s, h, true
}

// parseNum accepts only canonical decimal (no sign, no leading zero, at
// most 5 digits) so that a name parses back to exactly one string.
func parseNum(s string) (int, bool) {
	if s == "" || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// tbfArgs returns the tc arguments for a token bucket of rateMbit.
// The bucket holds 10ms of traffic but never less than 32 KiB: tbf drops
// any packet larger than the bucket, and veth hands it GSO super-packets of
// up to 64 KiB that it has to split, so a tiny burst collapses throughput
// far below the rate. The 50ms latency bounds the queue so a cut link does
// not leave seconds of stale data behind.
func tbfArgs(rateMbit int) []string {
	bytesPerSec := rateMbit * 1_000_000 / 8
	burst := max(bytesPerSec/100, 32<<10)
	return []string{"tbf", "rate", strconv.Itoa(rateMbit) + "mbit",
		"burst", strconv.Itoa(burst), "latency", "50ms"}
}
