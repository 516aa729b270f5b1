package consensus

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRaftTimingsDefaults(t *testing.T) {
	d := DefaultRaftTimings()
	if got := (RaftTimings{}).withDefaults(); got != d {
		t.Fatalf("zero timings: %+v, want %+v", got, d)
	}
	// A faster heartbeat alone scales the election and lease with it.
	got := RaftTimings{HeartbeatTimeout: 200 * time.Millisecond}.withDefaults()
	if got.ElectionTimeout != 200*time.Millisecond || got.LeaderLeaseTimeout != 100*time.Millisecond {
		t.Fatalf("derived timings %+v", got)
	}
	if _, err := raftConfig("n1", got, nil); err != nil {
		t.Fatalf("derived timings invalid: %v", err)
	}
}

func TestGroupConfigValidation(t *testing.T) {
	n := startNode(t, "node1", filepath.Join(t.TempDir(), "node1"), nodeOpts{controlSize: 1})
	valid := func() GroupConfig {
		c := *DefaultGroupConfig()
		c.Name, c.IDC, c.DataDir = "node1", "dc1", t.TempDir()
		c.Mesh, c.Host, c.FSM = n.mesh, n.host, NewFSM(mustStore(), nil)
		return c
	}
	tests := []struct {
		name string
		mut  func(*GroupConfig)
		want string
	}{
		{"valid", func(*GroupConfig) {}, ""},
		{"no name", func(c *GroupConfig) { c.Name = "" }, "Name is required"},
		{"no FSM", func(c *GroupConfig) { c.FSM = nil }, "FSM is required"},
		{"no mesh", func(c *GroupConfig) { c.Mesh = nil }, "Mesh is required"},
		{"control size too big", func(c *GroupConfig) { c.ControlSize = 8 }, "out of range 1..7"},
		{"negative duration", func(c *GroupConfig) { c.DeadServerTimeout = -1 }, "negative"},
		{"lease above heartbeat", func(c *GroupConfig) { c.Raft.LeaderLeaseTimeout = 2 * time.Second }, "LeaderLeaseTimeout"},
		{"other IDC than the mesh", func(c *GroupConfig) { c.IDC = "dc2" }, "differs from the mesh's IDC"},
		{"other name than the mesh", func(c *GroupConfig) { c.Name = "node9" }, "differs from the mesh's node name"},
		{"other zone than the mesh", func(c *GroupConfig) { c.Zone = "b" }, "differs from the zone the mesh gossips"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mut(&c)
			_, err := NewGroup(c)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
