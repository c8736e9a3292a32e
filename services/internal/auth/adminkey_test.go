package auth_test

import (
	"regexp"
	"testing"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
)

func TestNewAdminKey(t *testing.T) {
	t.Parallel()
	format := regexp.MustCompile(`^tmak_[0-9A-Za-z]{38}$`) // 32 random + 6 checksum
	seen := map[string]bool{}
	for range 1000 {
		k := auth.NewAdminKey()
		if !format.MatchString(k) {
			t.Fatalf("key %q does not match %v", k, format)
		}
		if !auth.ParseAdminKey(k) {
			t.Fatalf("ParseAdminKey(%q) = false", k)
		}
		if seen[k] {
			t.Fatalf("duplicate key %q", k)
		}
		seen[k] = true
	}
}

func TestParseAdminKey(t *testing.T) {
	t.Parallel()
	k := auth.NewAdminKey()
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	tests := map[string]string{
		"random part changed":   flip(k, 10),
		"checksum changed":      flip(k, len(k)-1),
		"wrong prefix":          "ntk_" + k[len("tmak_"):],
		"no prefix":             k[len("tmak_"):],
		"not base62":            k[:10] + "-" + k[11:],
		"truncated":             k[:len(k)-1],
		"too short to be safe":  "tmak_" + "000000",
		"empty":                 "",
		"prefix only":           "tmak_",
		"trailing whitespace":   k + " ",
		"checksum of other key": k[:len(k)-6] + auth.NewAdminKey()[len(k)-6:],
	}
	for name, s := range tests {
		if auth.ParseAdminKey(s) {
			t.Errorf("%s: ParseAdminKey(%q) = true", name, s)
		}
	}
	// A key minted once stays valid: the format is stored and seeded
	// (TM_BOOTSTRAP_ADMIN_KEY), so it must not drift. Checksum computed
	// independently (Python zlib.crc32, base62 0-9A-Za-z).
	const golden = "tmak_abcdefghijklmnopqrstuvwxyzABCDEF1mVgZW"
	if !auth.ParseAdminKey(golden) {
		t.Errorf("ParseAdminKey(%q) = false", golden)
	}
}

func TestHashKey(t *testing.T) {
	t.Parallel()
	// echo -n abc | sha256sum
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := auth.HashKey("abc"); got != want {
		t.Errorf("HashKey(abc) = %s, want %s", got, want)
	}
}
