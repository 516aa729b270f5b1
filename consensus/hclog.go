package consensus

import (
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter sends raft's hclog output to slog. Raft narrates every
// election, pipeline and snapshot at Info; herd logs its own one-line
// summaries of what matters (leadership gained or lost, servers added and
// removed), so raft's Trace, Debug and Info all land at slog Debug and only
// its warnings and errors keep their level.
type hclogAdapter struct {
	log   *slog.Logger
	name  string
	args  []any // implied args from With, for ImpliedArgs
	level hclog.Level
}

var _ hclog.Logger = (*hclogAdapter)(nil)

// newHCLogger returns an hclog.Logger writing to logger under name.
func newHCLogger(logger *slog.Logger, name string) hclog.Logger {
	if logger == nil {
		logger = slog.Default()
	}
	return &hclogAdapter{log: logger.With("component", name), name: name, level: hclog.Trace}
}

// slogLevel maps an hclog level to the slog level it is logged at.
func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default: // Trace, Debug, Info, NoLevel
		return slog.LevelDebug
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || (level != hclog.NoLevel && level < a.level) {
		return
	}
	a.log.Log(context.Background(), slogLevel(level), msg, args...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	return l >= a.level && a.log.Enabled(context.Background(), slogLevel(l))
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.args }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	out := *a
	out.log = a.log.With(args...)
	out.args = append(append([]any(nil), a.args...), args...)
	return &out
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return a.ResetNamed(name)
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	out := *a
	out.name = name
	out.log = a.log.With("subcomponent", name)
	return &out
}

func (a *hclogAdapter) SetLevel(l hclog.Level) { a.level = l }
func (a *hclogAdapter) GetLevel() hclog.Level  { return a.level }

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	infer := opts != nil && (opts.InferLevels || opts.InferLevelsWithTimestamp)
	return &hclogWriter{a: a, infer: infer}
}

// hclogWriter turns standard-library log lines into records, reading
// "[WARN]"-style prefixes when asked to infer levels.
type hclogWriter struct {
	a     *hclogAdapter
	infer bool
}

func (w *hclogWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	level := hclog.Info
	if w.infer {
		for _, c := range []struct {
			tag string
			l   hclog.Level
		}{{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info}, {"[WARN]", hclog.Warn}, {"[ERR]", hclog.Error}, {"[ERROR]", hclog.Error}} {
			if i := strings.Index(line, c.tag); i >= 0 {
				level = c.l
				line = strings.TrimSpace(line[i+len(c.tag):])
				break
			}
		}
	}
	w.a.Log(level, line)
	return len(p), nil
}
