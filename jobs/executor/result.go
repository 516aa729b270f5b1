package executor

import "time"

// Terminal statuses of one execution. The strings are shared with package jobs,
// which adds the host-level states (unreachable, skipped) that only it can know.
const (
	StatusSuccess   = "success"
	StatusFailed    = "failed"
	StatusTimeout   = "timeout"
	StatusCancelled = "cancelled"
)

// Result is the summary of one execution.
type Result struct {
	// Status is one of the Status constants.
	Status string `json:"status"`
	// ExitCode is the main process's exit status; -1 when it was killed by a
	// signal or never started.
	ExitCode int `json:"exit_code"`
	// Signal names the signal that killed the main process, e.g. "killed".
	Signal string `json:"signal,omitempty"`
	// Error says, for humans, why the script could not start or finish.
	Error string `json:"error,omitempty"`
	// Started is when the process was started (or when Run gave up, if never).
	Started time.Time `json:"started"`
	// Finished is when Run was done with the process and its output.
	Finished time.Time `json:"finished"`
	// Output summarizes the combined stdout+stderr stream.
	Output OutputSummary `json:"output"`
}

// OutputSummary describes the combined stdout+stderr stream, interleaved as
// produced.
type OutputSummary struct {
	// Bytes is the total the script produced.
	Bytes int64 `json:"bytes"`
	// Stored is how many of those bytes are on disk (<= MaxStored).
	Stored int64 `json:"stored"`
	// SHA256 is the hex digest of all produced bytes, stored or not, so hosts
	// can be grouped by identical output even past the cap.
	SHA256 string `json:"sha256"`
	// Head is the first HeadBytes bytes.
	Head []byte `json:"head"`
	// Tail is the last TailBytes bytes not already in Head; empty when
	// Bytes <= HeadBytes.
	Tail []byte `json:"tail"`
	// Truncated is set when Bytes > len(Head)+len(Tail): the middle is elided.
	Truncated bool `json:"truncated"`
}
