package mesh

import (
	"context"
	"log"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// memberlist logs through a *log.Logger with lines like
// "[WARN] memberlist: Got ping for unexpected node b from=10.0.0.2:7946".
// logWriter turns each line into a slog record at the matching level, and
// turns the cryptic lines that mean "that node has another key or label"
// into one clear, rate-limited warning.
type logWriter struct {
	log *slog.Logger

	mu     sync.Mutex
	warned map[string]time.Time // mismatch kind + peer -> last warning
}

// mismatchWarnEvery limits the clear warning to one per peer host and kind
// per interval: a misconfigured node retries every probe interval.
const mismatchWarnEvery = time.Minute

func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(&logWriter{log: l, warned: make(map[string]time.Time)}, "", 0)
}

// Write receives one log line per call from log.Logger.
func (w *logWriter) Write(p []byte) (int, error) {
	for line := range strings.Lines(string(p)) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			continue
		}
		level, msg := parseMemberlistLine(line)
		// Our own failed joins are explained by Join's error instead.
		ownJoin := strings.HasPrefix(msg, "failed to join ")
		if kind := classifyMismatch(msg); kind != mismatchNone && !ownJoin {
			w.warnMismatch(kind, msg)
			level = slog.LevelDebug // the clear warning replaces it
		}
		w.log.Log(context.Background(), level, msg, "component", "memberlist")
	}
	return len(p), nil
}

// parseMemberlistLine splits "[LEVEL] memberlist: msg" into a slog level and
// the message. Lines without a level prefix are logged at Info.
func parseMemberlistLine(line string) (slog.Level, string) {
	level := slog.LevelInfo
	msg := line
	if strings.HasPrefix(line, "[") {
		if end := strings.IndexByte(line, ']'); end > 0 {
			switch strings.ToUpper(line[1:end]) {
			case "TRACE", "DEBUG":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			msg = strings.TrimSpace(line[end+1:])
		}
	}
	msg = strings.TrimPrefix(msg, "memberlist: ")
	return level, msg
}

type mismatchKind int

const (
	mismatchNone mismatchKind = iota
	mismatchKey
	mismatchLabel
)

// keyMismatchHints are the memberlist errors that mean the two ends do not
// share an encryption key (or one end has none).
var keyMismatchHints = []string{
	"no installed keys could decrypt",
	"decrypt packet failed",
	"encryption is configured but remote state is not encrypted",
	"remote state is encrypted and encryption is not configured",
}

func classifyMismatch(msg string) mismatchKind {
	lower := strings.ToLower(msg)
	if strings.Contains(lower, "unacceptable label") {
		return mismatchLabel
	}
	for _, h := range keyMismatchHints {
		if strings.Contains(lower, h) {
			return mismatchKey
		}
	}
	return mismatchNone
}

// peerOf extracts memberlist's "from=ADDR" suffix.
func peerOf(msg string) string {
	i := strings.LastIndex(msg, "from=")
	if i < 0 {
		return "unknown"
	}
	f := strings.Fields(msg[i+len("from="):])
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}

func (w *logWriter) warnMismatch(kind mismatchKind, msg string) {
	peer := peerOf(msg)
	// Key on the host: streams come from a new ephemeral port each time.
	host := peer
	if h, _, err := net.SplitHostPort(peer); err == nil {
		host = h
	}
	key := host + "/" + strconv.Itoa(int(kind))
	now := time.Now()
	w.mu.Lock()
	if last, ok := w.warned[key]; ok && now.Sub(last) < mismatchWarnEvery {
		w.mu.Unlock()
		return
	}
	if len(w.warned) >= 1024 { // bound memory if many peers misbehave
		clear(w.warned)
	}
	w.warned[key] = now
	w.mu.Unlock()
	switch kind {
	case mismatchKey:
		w.log.Warn("rejected gossip that could not be decrypted: the peer probably uses a different encryption key, or none (check --encrypt on both nodes)",
			"peer", peer, "detail", msg)
	case mismatchLabel:
		w.log.Warn("rejected gossip from another pool: the peer's cluster name or IDC differs (check --idc on both nodes)",
			"peer", peer, "detail", msg)
	}
}
