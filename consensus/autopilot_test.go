package consensus

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herd-io/herd/mesh"
)

func TestPlanAutopilot(t *testing.T) {
	now := time.Unix(10_000, 0)
	long := now.Add(-time.Hour)
	recent := now.Add(-time.Second)
	alive := mesh.StatusAlive
	// srv builds a server: voter?, zone, gossip status and since when,
	// healthy since (zero: unhealthy).
	srv := func(id string, voter bool, zone string, st mesh.Status, since, healthy time.Time) apServer {
		return apServer{ID: id, Addr: "p-" + id, PeerID: "p-" + id, Voter: voter, Zone: zone, Status: st, Since: since,
			Healthy: !healthy.IsZero(), HealthySince: healthy}
	}
	leader := func(s apServer) apServer { s.Leader = true; return s }
	cand := func(name, zone string) apCandidate { return apCandidate{Name: name, PeerID: "p-" + name, Zone: zone} }

	tests := []struct {
		name       string
		servers    []apServer
		candidates []apCandidate
		want       []string // "kind id" (invite: "invite a,b,c")
	}{
		{
			name: "steady",
			servers: []apServer{
				leader(srv("n1", true, "", alive, long, long)), srv("n2", true, "", alive, long, long), srv("n3", true, "", alive, long, long),
			},
			candidates: []apCandidate{cand("n4", "")},
			want:       nil,
		},
		{
			name: "dead voter removed, replacement invited from its zone",
			servers: []apServer{
				leader(srv("n1", true, "a", alive, long, long)), srv("n2", true, "b", mesh.StatusFailed, long, time.Time{}), srv("n3", true, "c", alive, long, long),
			},
			candidates: []apCandidate{cand("n5", "a"), cand("n4", "b"), cand("n6", "c")},
			want:       []string{"remove n2", "invite n4,n5,n6"},
		},
		{
			name: "failed but not for long enough",
			servers: []apServer{
				leader(srv("n1", true, "", alive, long, long)), srv("n2", true, "", mesh.StatusFailed, recent, time.Time{}), srv("n3", true, "", alive, long, long),
			},
			candidates: []apCandidate{cand("n4", "")},
			want:       nil,
		},
		{
			name: "two dead of three: only one removed per round",
			servers: []apServer{
				leader(srv("n1", true, "", alive, long, long)), srv("n2", true, "", mesh.StatusFailed, long, time.Time{}), srv("n3", true, "", mesh.StatusLeft, long, time.Time{}),
			},
			want: []string{"remove n2"},
		},
		{
			name: "unknown to gossip counts as dead, the leader never",
			servers: []apServer{
				leader(srv("n1", true, "", mesh.StatusFailed, long, long)), srv("n2", true, "", "", long, time.Time{}), srv("n3", true, "", alive, long, long),
			},
			want: []string{"remove n2"},
		},
		{
			name: "dead non-voters go regardless of quorum",
			servers: []apServer{
				leader(srv("n1", true, "", alive, long, long)), srv("n2", false, "", mesh.StatusFailed, long, time.Time{}), srv("n3", false, "", mesh.StatusLeft, long, time.Time{}),
			},
			want: []string{"remove n2", "remove n3"},
		},
		{
			name: "too many voters: demote from crowded zones, then drop the extras",
			servers: []apServer{
				leader(srv("n1", true, "a", alive, long, long)), srv("n2", true, "a", alive, long, long), srv("n3", true, "a", alive, long, long),
				srv("n4", true, "b", alive, long, long), srv("n5", true, "c", alive, long, long),
			},
			want: []string{"demote n3", "demote n2", "remove n3", "remove n2"},
		},
		{
			name: "promote the stable non-voter of the zone with fewest voters",
			servers: []apServer{
				leader(srv("n1", true, "a", alive, long, long)), srv("n2", true, "b", alive, long, long),
				srv("n3", false, "a", alive, long, long), srv("n4", false, "c", alive, long, long),
			},
			want: []string{"promote n4", "remove n3"},
		},
		{
			name: "non-voter not stable yet: wait, no invite",
			servers: []apServer{
				leader(srv("n1", true, "", alive, long, long)), srv("n2", true, "", alive, long, long), srv("n3", false, "", alive, long, recent),
			},
			candidates: []apCandidate{cand("n4", "")},
			want:       nil,
		},
		{
			name: "unhealthy non-voter never promoted",
			servers: []apServer{
				leader(srv("n1", true, "", alive, long, long)), srv("n2", true, "", alive, long, long), srv("n3", false, "", alive, long, time.Time{}),
			},
			want: nil,
		},
		{
			name: "a non-voter beyond the target is removed",
			servers: []apServer{
				leader(srv("n1", true, "", alive, long, long)), srv("n2", true, "", alive, long, long), srv("n3", true, "", alive, long, long),
				srv("n4", false, "", alive, long, long),
			},
			want: []string{"remove n4"},
		},
		{
			name: "peer ID changed and raft not running",
			servers: []apServer{
				leader(srv("n1", true, "", alive, long, long)),
				func() apServer { s := srv("n2", true, "", alive, long, long); s.PeerID = "p-new"; return s }(),
				func() apServer { s := srv("n3", true, "", alive, long, time.Time{}); s.NeedsOpen = true; return s }(),
			},
			want: []string{"update-address n2", "reopen n3"},
		},
		{
			name:       "single-node group stays alone",
			servers:    []apServer{leader(srv("n1", true, "", alive, long, long))},
			candidates: nil,
			want:       nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := 3
			if len(tt.servers) == 1 {
				target = 1
			}
			in := apInput{Now: now, Target: target, DeadServerTimeout: 20 * time.Second, StabilizationTime: 5 * time.Second,
				Servers: tt.servers, Candidates: tt.candidates}
			var got []string
			for _, a := range planAutopilot(in) {
				if a.Kind == apInvite {
					var names []string
					for _, c := range a.Invite {
						names = append(names, c.Name)
					}
					got = append(got, "invite "+strings.Join(names, ","))
					continue
				}
				got = append(got, a.Kind.String()+" "+a.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("plan %q, want %q", got, tt.want)
			}
			// Pure: the same input gives the same plan, whatever the order.
			rev := slices.Clone(in.Servers)
			slices.Reverse(rev)
			in.Servers = rev
			if again := planAutopilot(in); len(again) != len(got) {
				t.Fatalf("order-dependent plan: %v", again)
			}
		})
	}
}
