package model

import "time"

// File is an object of the cluster's content store: content-addressed by
// SHA-256, with its MD5 and the piece layout of its swarm.
type File struct {
	SHA256      string `json:"sha256"`
	MD5         string `json:"md5"`
	Size        int64  `json:"size"`
	Name        string `json:"name"`
	PieceLength int64  `json:"piece_length"`
	InfoHash    string `json:"info_hash"`
	// Origins are the nodes that had the file added to their store; they
	// seed it to pushes in any IDC.
	Origins []FileHolder `json:"origins"`
	Added   time.Time    `json:"added"`
	// Holders is filled by reads: nodes of the reader's IDC that keep a
	// copy from an earlier push.
	Holders     []FileHolder `json:"holders,omitempty"`
	ModifyIndex uint64       `json:"modify_index"`
}

// FileHolder is a node that keeps a file in its content store.
type FileHolder struct {
	Node  string `json:"node"`
	IDC   string `json:"idc"`
	Swarm string `json:"swarm,omitempty"` // its swarm listener host:port
}

// FileList is GET /v1/files.
type FileList struct {
	Files []File `json:"files"`
}

// PushSpec is what a push run installs on each host.
type PushSpec struct {
	File  File   `json:"file"`            // the object (Origins say where it starts)
	Dest  string `json:"dest"`            // absolute; a directory receives the file under File.Name
	Mode  string `json:"mode,omitempty"`  // octal, default 0644
	Owner string `json:"owner,omitempty"` // user[:group]; "" = the agent's user
	Mkdir bool   `json:"mkdir,omitempty"` // create missing parent directories
	// Rate caps each host's download, bytes per second (0 = the agent's cap).
	Rate int64 `json:"rate,omitempty"`
	// NoSwarm fetches every host straight from an origin over node streams
	// (central push); the default swarms files of SmallFileLimit and more.
	NoSwarm bool `json:"no_swarm,omitempty"`
	// Timeout bounds each host, waiting for a restarted host included.
	Timeout Duration `json:"timeout,omitempty"`
}

// TransferStats tells where a host's bytes came from.
type TransferStats struct {
	Bytes       int64            `json:"bytes"`               // bytes received for this push
	FromOrigin  int64            `json:"from_origin"`         // of them, from an origin
	FromPeers   int64            `json:"from_peers"`          // of them, from other hosts
	Resumed     int64            `json:"resumed,omitempty"`   // verified bytes kept from before a restart
	Wasted      int64            `json:"wasted,omitempty"`    // received twice or failing verification, discarded
	ByIDC       map[string]int64 `json:"by_idc,omitempty"`    // received bytes by the sender's IDC
	FromNode    map[string]int64 `json:"from_node,omitempty"` // received bytes by sender
	MD5         string           `json:"md5"`                 // of the installed file
	Dest        string           `json:"dest"`                // the path installed
	Swarm       string           `json:"swarm,omitempty"`     // the host's swarm listener (it now seeds)
	Identical   bool             `json:"identical,omitempty"` // skipped: the destination already matched
	DurationSec float64          `json:"duration_sec"`
}

// PushProgress is the live byte count of a push's hosts still fetching
// (GET /v1/runs/ID/progress), as their last peer requests told the leader.
type PushProgress struct {
	Hosts map[string]int64 `json:"hosts"` // host → verified bytes so far
	Size  int64            `json:"size"`  // the file's size
}
