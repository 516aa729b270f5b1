package transfer

import (
	"fmt"
	"slices"
	"testing"
)

func names(ps []Peer) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func TestPickPeers(t *testing.T) {
	h := func(name, idc string, st HolderState) Holder {
		return Holder{Name: name, IDC: idc, Addr: "10.0.0.1:7948", State: st}
	}
	holders := []Holder{
		h("a-prog1", "a", HolderInProgress),
		h("a-orig", "a", HolderOrigin),
		h("a-fin1", "a", HolderFinished),
		h("a-fin2", "a", HolderFinished),
		h("b-fin", "b", HolderFinished),
		h("b-orig", "b", HolderOrigin),
		h("c-prog", "c", HolderInProgress),
		{Name: "a-noaddr", IDC: "a", State: HolderFinished},
		h("self", "a", HolderInProgress),
	}
	for _, tc := range []struct {
		name             string
		idc              string
		max, cross       int
		gateway          bool
		want             []string // exact, or nil to check sets below
		wantSet, wantNot []string
		trustedN         int
	}{
		{name: "local first, class order, no WAN for non-gateway", idc: "a", max: 10, cross: 2,
			wantSet: []string{"a-fin1", "a-fin2", "a-orig", "a-prog1"}, wantNot: []string{"b-fin", "b-orig", "c-prog", "self", "a-noaddr"}, trustedN: 4},
		{name: "gateway gets cross-IDC finished then origins", idc: "a", max: 10, cross: 2, gateway: true,
			wantSet: []string{"a-fin1", "a-fin2", "a-orig", "a-prog1", "b-fin", "b-orig"}, trustedN: 4},
		{name: "no local bytes: cross-IDC even without gateway", idc: "c", max: 10, cross: 2,
			wantSet: []string{"c-prog"}, wantNot: []string{"a-orig", "b-orig", "a-prog1"}, trustedN: 1},
		{name: "cap keeps cross slots", idc: "a", max: 3, cross: 1, gateway: true,
			want: nil, wantSet: []string{"b-fin"}, trustedN: 2},
		{name: "crossIDC 0", idc: "c", max: 10, cross: 0, want: []string{"c-prog"}},
		{name: "unknown IDC behaves as no local bytes", idc: "z", max: 2, cross: 2, wantNot: []string{"a-orig", "b-orig"}, trustedN: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PickPeers("self", tc.idc, holders, tc.max, tc.cross, 42, tc.gateway)
			gn := names(got)
			if tc.max > 0 && len(got) > tc.max {
				t.Fatalf("%d peers > max %d", len(got), tc.max)
			}
			trusted := 0
			for _, p := range got {
				if p.Trusted {
					trusted++
				}
			}
			if tc.want != nil {
				if !slices.Equal(gn, tc.want) {
					t.Fatalf("got %v, want %v", gn, tc.want)
				}
			}
			for _, w := range tc.wantSet {
				if !slices.Contains(gn, w) {
					t.Errorf("%s missing from %v", w, gn)
				}
			}
			for _, w := range tc.wantNot {
				if slices.Contains(gn, w) {
					t.Errorf("%s present in %v", w, gn)
				}
			}
			if tc.want == nil && trusted != tc.trustedN {
				t.Errorf("trusted = %d, want %d (%v)", trusted, tc.trustedN, got)
			}
			// Classes in order: finished before origin before in-progress within the local part.
			rank := map[string]int{"a-fin1": 0, "a-fin2": 0, "a-orig": 1, "a-prog1": 2}
			last := -1
			for _, p := range got {
				if r, ok := rank[p.Name]; ok && p.Trusted {
					if r < last {
						t.Fatalf("class order broken: %v", gn)
					}
					last = r
				}
			}
		})
	}
}

func TestPickPeersSpreadAndDeterminism(t *testing.T) {
	var holders []Holder
	for i := range 50 {
		holders = append(holders, Holder{Name: fmt.Sprintf("h%02d", i), IDC: "a", Addr: "10.0.0.1:1", State: HolderFinished})
	}
	a := PickPeers("n1", "a", holders, 5, 2, 7, false)
	b := PickPeers("n1", "a", holders, 5, 2, 7, false)
	if !slices.Equal(names(a), names(b)) {
		t.Fatalf("same inputs, different answers: %v %v", names(a), names(b))
	}
	// Different requesters spread over the holders.
	first := map[string]bool{}
	for i := range 20 {
		first[PickPeers(fmt.Sprintf("n%d", i), "a", holders, 5, 2, 7, false)[0].Name] = true
	}
	if len(first) < 8 {
		t.Fatalf("20 requesters start at only %d distinct holders", len(first))
	}
}
