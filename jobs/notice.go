package jobs

import (
	"encoding/json"
	"fmt"
	"slices"
)

// noticeEvent is the gossip user event a leader sends for a new run: the
// spread path that reaches targets its direct delivery missed.
const noticeEvent = "herd-run"

// maxNoticeHosts is how many target names a notice lists; a bigger run
// sends an open notice, and every node checks with the leader.
const maxNoticeHosts = 16

// notice tells nodes that a run may have a task for them.
type notice struct {
	RunID string   `json:"r"`
	Hosts []string `json:"h,omitempty"` // executors; empty = any node may be one
}

func (n notice) mayTarget(node string) bool {
	return len(n.Hosts) == 0 || slices.Contains(n.Hosts, node)
}

func encodeNotice(n notice) []byte {
	b, _ := json.Marshal(n) // strings only: cannot fail
	return b
}

func decodeNotice(b []byte) (notice, error) {
	var n notice
	if err := json.Unmarshal(b, &n); err != nil {
		return notice{}, fmt.Errorf("run notice: %w", err)
	}
	if n.RunID == "" {
		return notice{}, fmt.Errorf("run notice without a run id")
	}
	return n, nil
}
