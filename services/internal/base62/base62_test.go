package base62

import "testing"

func TestChecksumMatchesAKnownValue(t *testing.T) {
	// The admin-key golden of auth's tests: its checksum was computed
	// independently (Python zlib.crc32, base62 0-9A-Za-z).
	if got := Checksum("abcdefghijklmnopqrstuvwxyzABCDEF"); got != "1mVgZW" {
		t.Fatalf("Checksum = %q, want 1mVgZW", got)
	}
}

func TestRandomAndValid(t *testing.T) {
	seen := map[byte]bool{}
	for range 100 {
		s := Random(32)
		if len(s) != 32 || !Valid(s) {
			t.Fatalf("Random(32) = %q", s)
		}
		for i := 0; i < len(s); i++ {
			seen[s[i]] = true
		}
	}
	if len(seen) != len(Alphabet) {
		t.Errorf("3,200 random characters used %d of the %d digits", len(seen), len(Alphabet))
	}
	for _, bad := range []string{"a-b", "a_b", "é", "a b"} {
		if Valid(bad) {
			t.Errorf("Valid(%q) = true", bad)
		}
	}
}
