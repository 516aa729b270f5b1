package transfer

import (
	"hash/fnv"
	"math/rand/v2"
)

// HolderState is how far a holder of an object has got.
type HolderState int

// Holder states, in the order PickPeers prefers them.
const (
	// HolderFinished: fetched the whole object during this run and seeds it.
	HolderFinished HolderState = iota
	// HolderOrigin: had the object before the run (the source, or a store
	// holder from an earlier push).
	HolderOrigin
	// HolderInProgress: fetching; has some pieces and serves them.
	HolderInProgress
)

func (s HolderState) hasAll() bool { return s == HolderFinished || s == HolderOrigin }

// Holder is a node that has, or is getting, an object.
type Holder struct {
	Name  string // node name
	IDC   string
	Addr  string // swarm listen host:port
	State HolderState
}

// PickPeers returns the peers node self (in idc) should connect to for an
// object, from the control group's holder list. It is a pure function.
//
// Policy (Kraken's hand-out order, made IDC-aware so that bytes cross each
// WAN link about once):
//
//   - Same-IDC holders come first, marked Trusted: finished holders, then
//     origins, then holders still in progress. Finished hosts come before
//     origins so the origins' uplinks are spared once copies exist; hosts
//     in progress still have pieces to trade. Within a class the order is
//     random but determined by seed and self, so concurrent requesters
//     spread over different holders and a retry with the same seed gets the
//     same answer.
//   - At most crossIDC holders from other IDCs follow (untrusted, in the
//     same class order), and only if the requester is one of its IDC's
//     designated WAN gateways, or if no same-IDC holder has the whole
//     object yet (nobody local to fetch from). Other nodes of the IDC then
//     get the bytes from the gateways, not over the WAN.
//   - self and holders without an address are skipped; the result holds at
//     most max peers (max <= 0: no cap), and slots for the cross-IDC peers
//     are kept even when the same IDC alone could fill max.
func PickPeers(self string, idc string, holders []Holder, max, crossIDC int, seed uint64, gateway bool) []Peer {
	var local, remote [3][]Holder
	localHasAll := false
	for _, h := range holders {
		if h.Name == self || h.Addr == "" || h.State < HolderFinished || h.State > HolderInProgress {
			continue
		}
		if h.IDC == idc {
			local[h.State] = append(local[h.State], h)
			if h.State.hasAll() {
				localHasAll = true
			}
		} else {
			remote[h.State] = append(remote[h.State], h)
		}
	}
	hs := fnv.New64a()
	hs.Write([]byte(self))
	rng := rand.New(rand.NewPCG(seed, hs.Sum64()))
	order := func(classes [3][]Holder) []Holder {
		var out []Holder
		for _, c := range classes {
			c = append([]Holder(nil), c...)
			rng.Shuffle(len(c), func(i, j int) { c[i], c[j] = c[j], c[i] })
			out = append(out, c...)
		}
		return out
	}

	var cross []Holder
	if crossIDC > 0 && (gateway || !localHasAll) {
		cross = order(remote)
		if len(cross) > crossIDC {
			cross = cross[:crossIDC]
		}
	}
	same := order(local)
	if max > 0 {
		if len(cross) > max {
			cross = cross[:max]
		}
		if room := max - len(cross); len(same) > room {
			same = same[:room]
		}
	}
	out := make([]Peer, 0, len(same)+len(cross))
	for _, h := range same {
		out = append(out, Peer{Addr: h.Addr, Trusted: true, Name: h.Name})
	}
	for _, h := range cross {
		out = append(out, Peer{Addr: h.Addr, Trusted: false, Name: h.Name})
	}
	return out
}
