package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"hash/crc32"
	"strings"
)

// Tokens follow GitHub's format: a prefix that names what the string is (so
// secret scanners recognise a leak), 32 random base62 characters
// (32·log2 62 ≈ 190 bits) and a 6-character base62 CRC32 of them, so the
// Worker can reject garbage without a KV read. v2.7 tokens ("ntk_" + 43
// base64url characters, no checksum) keep working: lookup is always by the
// SHA-256 of the whole string.
const (
	tokenPrefix    = "ntk_"
	tokenRandomLen = 32
	tokenSumLen    = 6
	legacyBodyLen  = 43
	base62Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// TokenFormat is what ParseToken recognised.
type TokenFormat int

const (
	FormatInvalid TokenFormat = iota
	FormatV3                  // ntk_ + 32 base62 + CRC32 checksum
	FormatLegacy              // v2.7: ntk_ + 43 base64url
)

// NewToken returns a fresh token in plaintext.
func NewToken() string {
	random := randomBase62(tokenRandomLen)
	return tokenPrefix + random + crcBase62(random)
}

// ParseToken classifies s. It does not say whether the token exists.
func ParseToken(s string) TokenFormat {
	body, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return FormatInvalid
	}
	switch len(body) {
	case tokenRandomLen + tokenSumLen:
		if !allIn(body, isBase62) {
			return FormatInvalid
		}
		if crcBase62(body[:tokenRandomLen]) == body[tokenRandomLen:] {
			return FormatV3
		}
	case legacyBodyLen:
		if allIn(body, isBase64URL) {
			return FormatLegacy
		}
	}
	return FormatInvalid
}

// HashToken is the lookup hash: lowercase hex SHA-256 of the whole token.
func HashToken(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Preview masks a token for lists: the first 12 and last 6 characters, as
// v2.7 showed (for a new token that is 8 random characters and the checksum).
func Preview(s string) string {
	if len(s) <= 16 {
		return "ntk_***"
	}
	return s[:12] + "..." + s[len(s)-6:]
}

func allIn(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isBase62(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

func isBase64URL(c byte) bool { return isBase62(c) || c == '-' || c == '_' }

// randomBase62 returns n uniformly random base62 characters.
func randomBase62(n int) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		_, _ = rand.Read(buf[:]) // crypto/rand never fails
		for _, b := range buf {
			// Rejecting bytes ≥ 248 (= 4·62) keeps every character equally likely.
			if b < 248 && len(out) < n {
				out = append(out, base62Alphabet[b%62])
			}
		}
	}
	return string(out)
}

// crcBase62 is CRC32-IEEE of s in base62, most significant digit first,
// zero-padded to 6 characters (62^6 > 2^32).
func crcBase62(s string) string {
	v := crc32.ChecksumIEEE([]byte(s))
	var out [tokenSumLen]byte
	for i := tokenSumLen - 1; i >= 0; i-- {
		out[i] = base62Alphabet[v%62]
		v /= 62
	}
	return string(out[:])
}
