package token

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/tokenmanager/tokenmanager/services/internal/base62"
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
	tokenSumLen    = base62.ChecksumLen
	legacyBodyLen  = 43
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
	random := base62.Random(tokenRandomLen)
	return tokenPrefix + random + base62.Checksum(random)
}

// ParseToken classifies s. It does not say whether the token exists.
func ParseToken(s string) TokenFormat {
	body, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return FormatInvalid
	}
	switch len(body) {
	case tokenRandomLen + tokenSumLen:
		if !base62.Valid(body) {
			return FormatInvalid
		}
		if base62.Checksum(body[:tokenRandomLen]) == body[tokenRandomLen:] {
			return FormatV3
		}
	case legacyBodyLen:
		if isBase64URL(body) {
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

// isBase64URL reports whether s is all base64url characters (v2.7's tokens).
func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !base62.IsDigit(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}
