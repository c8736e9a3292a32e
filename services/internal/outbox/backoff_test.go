package outbox

import (
	"strings"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	r := &Relay{MinBackoff: time.Second, MaxBackoff: 10 * time.Second}
	tests := []struct {
		failures int
		want     time.Duration // upper bound; the delay is jittered down to half of it
	}{
		{1, time.Second},
		{2, 2 * time.Second},
		{3, 4 * time.Second},
		{4, 8 * time.Second},
		{5, 10 * time.Second},
		{1000, 10 * time.Second},
	}
	for _, tt := range tests {
		for range 100 {
			if got := r.backoff(tt.failures); got < tt.want/2 || got > tt.want {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", tt.failures, got, tt.want/2, tt.want)
			}
		}
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"short", "boom", "boom"},
		{"NUL and invalid UTF-8", "a\x00b\xffc", "ab?c"},
		{"long, cut on a rune boundary", strings.Repeat("é", maxErrorLen), strings.Repeat("é", maxErrorLen/2) + "…"},
	}
	for _, tt := range tests {
		if got := truncate(tt.in); got != tt.want {
			t.Errorf("%s: truncate() = %q, want %q", tt.name, got, tt.want)
		}
	}
}
