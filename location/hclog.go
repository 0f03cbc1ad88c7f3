package location

import (
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/rs/zerolog"
)

// hclogAdapter routes hashicorp/raft's hclog output into the controller's zerolog logger.
// raft is chatty at info (every election, every snapshot); those lines go to zerolog's
// debug level so a controller's log shows Sibyl's own events; raft's warnings and errors
// become warnings.
type hclogAdapter struct {
	zl      zerolog.Logger
	name    string
	implied []any
}

func newHclogAdapter(zl zerolog.Logger) hclog.Logger {
	return &hclogAdapter{zl: zl, name: "raft"}
}

func (h *hclogAdapter) event(level hclog.Level) *zerolog.Event {
	// raft's errors are about peers it cannot reach or RPCs that failed: from a
	// controller's point of view they are warnings, and they repeat while a peer is down.
	if level >= hclog.Warn {
		return h.zl.Warn()
	}
	return h.zl.Debug() // Trace, Debug, Info

}

func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	e := h.event(level)
	if e == nil { // level disabled
		return
	}
	e = e.Str("component", h.name)
	all := append(append([]any{}, h.implied...), args...)
	for i := 0; i < len(all); i += 2 {
		key := fmt.Sprint(all[i])
		if i+1 >= len(all) {
			e = e.Str("extra", key)
			break
		}
		switch v := all[i+1].(type) {
		case error:
			e = e.AnErr(key, v)
		case fmt.Stringer:
			e = e.Str(key, v.String())
		default:
			e = e.Interface(key, v)
		}
	}
	e.Msg(msg)
}

func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogAdapter) enabled(level zerolog.Level) bool { return h.zl.GetLevel() <= level }

func (h *hclogAdapter) IsTrace() bool { return h.enabled(zerolog.DebugLevel) }
func (h *hclogAdapter) IsDebug() bool { return h.enabled(zerolog.DebugLevel) }
func (h *hclogAdapter) IsInfo() bool  { return h.enabled(zerolog.DebugLevel) }
func (h *hclogAdapter) IsWarn() bool  { return h.enabled(zerolog.WarnLevel) }
func (h *hclogAdapter) IsError() bool { return h.enabled(zerolog.WarnLevel) }

func (h *hclogAdapter) ImpliedArgs() []any { return h.implied }

func (h *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{zl: h.zl, name: h.name, implied: append(append([]any{}, h.implied...), args...)}
}

func (h *hclogAdapter) Name() string { return h.name }

func (h *hclogAdapter) Named(name string) hclog.Logger {
	return &hclogAdapter{zl: h.zl, name: h.name + "." + name, implied: h.implied}
}

func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{zl: h.zl, name: name, implied: h.implied}
}

// SetLevel is ignored: the level is the zerolog logger's.
func (h *hclogAdapter) SetLevel(hclog.Level) {}

func (h *hclogAdapter) GetLevel() hclog.Level {
	switch {
	case h.IsDebug():
		return hclog.Debug
	case h.IsWarn():
		return hclog.Warn
	case h.IsError():
		return hclog.Error
	}
	return hclog.Off
}

func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return lineWriter{h}
}

// lineWriter turns standard-library log lines (the TCP transport's) into warn events.
type lineWriter struct{ h *hclogAdapter }

func (w lineWriter) Write(p []byte) (int, error) {
	w.h.Warn(strings.TrimSpace(string(p)))
	return len(p), nil
}
