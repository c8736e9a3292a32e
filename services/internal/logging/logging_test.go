package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/tokenmanager/tokenmanager/services/internal/logging"
	"github.com/tokenmanager/tokenmanager/services/internal/requestid"
)

func TestNew(t *testing.T) {
	withID := requestid.With(context.Background(), "req-123")
	tests := []struct {
		name   string
		log    func(*slog.Logger)
		want   map[string]any // attributes that must be present
		absent []string       // keys that must not be
	}{
		{
			name: "context with request id",
			log:  func(l *slog.Logger) { l.InfoContext(withID, "hello", "k", "v") },
			want: map[string]any{"msg": "hello", "level": "INFO", "service": "token", "k": "v", "request_id": "req-123"},
		},
		{
			name:   "context without request id",
			log:    func(l *slog.Logger) { l.WarnContext(context.Background(), "hello") },
			want:   map[string]any{"level": "WARN", "service": "token"},
			absent: []string{"request_id"},
		},
		{
			name:   "no context",
			log:    func(l *slog.Logger) { l.Error("hello") },
			want:   map[string]any{"level": "ERROR", "service": "token"},
			absent: []string{"request_id"},
		},
		{
			name: "derived logger keeps the request id",
			log:  func(l *slog.Logger) { l.With("rpc", "Create").InfoContext(withID, "hello") },
			want: map[string]any{"rpc": "Create", "request_id": "req-123", "service": "token"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tt.log(logging.New(&buf, slog.LevelInfo, "token"))
			var got map[string]any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("output is not one JSON object: %v\n%s", err, buf.String())
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v (record %s)", k, got[k], v, buf.String())
				}
			}
			for _, k := range tt.absent {
				if _, ok := got[k]; ok {
					t.Errorf("unexpected %s in %s", k, buf.String())
				}
			}
		})
	}
}

func TestNewFiltersByLevel(t *testing.T) {
	var buf bytes.Buffer
	l := logging.New(&buf, slog.LevelWarn, "team")
	l.Info("dropped")
	if buf.Len() != 0 {
		t.Errorf("info record written at warn level: %s", buf.String())
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    slog.Level
		wantErr bool
	}{
		{"debug", slog.LevelDebug, false},
		{"info", slog.LevelInfo, false},
		{"WARN", slog.LevelWarn, false},
		{" error ", slog.LevelError, false},
		{"loud", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := logging.ParseLevel(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
