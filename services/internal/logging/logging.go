// Package logging builds the one log/slog logger each process uses: JSON on
// a writer, tagged with the service name, and carrying the request id of the
// context a record is logged with, so that the lines one request leaves in
// the gateway and every service it touches can be joined.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/tokenmanager/tokenmanager/services/internal/requestid"
)

// New returns a JSON logger writing records at level and above to w, each
// with a "service" attribute and, when logged with a context that has one
// (InfoContext and friends), a "request_id" attribute.
func New(w io.Writer, level slog.Leveler, service string) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(NewContextHandler(h)).With(slog.String("service", service))
}

// ParseLevel parses debug, info, warn or error (any case; slog's offsets
// such as "info+2" too). It matches config.Parse's parse argument.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
	}
	return l, nil
}

// ContextHandler adds the request id of the record's context to every
// record. Like any attribute added at Handle time, it lands inside the
// groups opened with WithGroup.
type ContextHandler struct {
	next slog.Handler
}

// NewContextHandler wraps next.
func NewContextHandler(next slog.Handler) *ContextHandler {
	return &ContextHandler{next: next}
}

// Enabled implements slog.Handler.
func (h *ContextHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle implements slog.Handler.
func (h *ContextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := requestid.From(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *ContextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &ContextHandler{next: h.next.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h *ContextHandler) WithGroup(name string) slog.Handler {
	return &ContextHandler{next: h.next.WithGroup(name)}
}
