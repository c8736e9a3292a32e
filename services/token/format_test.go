package token

import (
	"strings"
	"testing"

	"github.com/tokenmanager/tokenmanager/services/internal/base62"
)

func TestNewTokenFormat(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		tok := NewToken()
		if len(tok) != 42 || ParseToken(tok) != FormatV3 {
			t.Fatalf("NewToken() = %q (len %d), ParseToken = %v", tok, len(tok), ParseToken(tok))
		}
		if seen[tok] {
			t.Fatal("duplicate token")
		}
		seen[tok] = true
	}
}

func TestParseToken(t *testing.T) {
	good := NewToken()
	flip := []byte(good)
	flip[10] = map[bool]byte{true: 'b', false: 'a'}[flip[10] == 'a']
	tests := []struct {
		in   string
		want TokenFormat
	}{
		{good, FormatV3},
		{"ntk_Q3v9xLm2pR7tYb1KdE0sWfHa8cNjU4oZ6iGqTy5VwXk", FormatLegacy},
		{"ntk_Q3v9xLm2pR7tYb1KdE0sWfHa8cNjU4oZ6iGqTy5Vw-_", FormatLegacy},
		{string(flip), FormatInvalid},       // checksum mismatch
		{good[:len(good)-1], FormatInvalid}, // truncated
		{"tmak_" + good[4:], FormatInvalid},
		{"ntk_" + strings.Repeat("-", 38), FormatInvalid},
		{"ntk_Q3v9xLm2pR7tYb1KdE0sWfHa8cNjU4oZ6iGqTy5Vw+/", FormatInvalid},
		{"", FormatInvalid},
	}
	for _, tt := range tests {
		if got := ParseToken(tt.in); got != tt.want {
			t.Errorf("ParseToken(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestHashTokenContractExample(t *testing.T) {
	// Contract §6.
	const tok = "ntk_Q3v9xLm2pR7tYb1KdE0sWfHa8cNjU4oZ6iGqTy5VwXk"
	if got := HashToken(tok); got != "e666cc3a8ac612f730b4b328d2ca70505d4fac1cb79a109a0d481ccc50d1f87b" {
		t.Fatalf("HashToken = %s", got)
	}
	if got := Preview(tok); got != "ntk_Q3v9xLm2...y5VwXk" {
		t.Fatalf("Preview = %s", got)
	}
}

// FuzzParseToken: never panics; whatever parses as a new token has the
// exact shape and a checksum that recomputes.
func FuzzParseToken(f *testing.F) {
	for _, s := range []string{NewToken(), "ntk_Q3v9xLm2pR7tYb1KdE0sWfHa8cNjU4oZ6iGqTy5VwXk", "", "ntk_", "ntk_\xff",
		"ntk_" + strings.Repeat("0", 38), "tmak_abc", strings.Repeat("ntk_", 20)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		switch ParseToken(s) {
		case FormatV3:
			body := s[len(tokenPrefix):]
			if len(s) != 42 || base62.Checksum(body[:tokenRandomLen]) != body[tokenRandomLen:] {
				t.Fatalf("accepted %q", s)
			}
		case FormatLegacy:
			if len(s) != 47 || !strings.HasPrefix(s, tokenPrefix) {
				t.Fatalf("accepted legacy %q", s)
			}
		}
		_ = HashToken(s)
	})
}
