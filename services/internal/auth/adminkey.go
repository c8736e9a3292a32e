package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/tokenmanager/tokenmanager/services/internal/base62"
)

// Admin API keys follow GitHub's token format: a prefix that says what the
// key is (so secret scanners and humans recognise a leak), random base62
// characters, and a CRC32 checksum of those, so that garbage is rejected
// without a database lookup.
const (
	adminKeyPrefix = "tmak_"
	// adminKeyRandomLen base62 characters carry 32·log2(62) ≈ 190 bits.
	adminKeyRandomLen = 32
	// adminKeyMinRandomLen is the least accepted: 27 characters ≥ 160 bits.
	adminKeyMinRandomLen = 27
	adminKeyMaxRandomLen = 64
	checksumLen          = base62.ChecksumLen
)

// NewAdminKey returns a fresh admin API key in plaintext. Show it once and
// store only HashKey of it.
func NewAdminKey() string {
	random := base62.Random(adminKeyRandomLen)
	return adminKeyPrefix + random + base62.Checksum(random)
}

// ParseAdminKey reports whether s is a well-formed admin key: the prefix,
// enough base62 randomness and a matching checksum. It says nothing about
// whether the key exists or is revoked.
func ParseAdminKey(s string) bool {
	body, ok := strings.CutPrefix(s, adminKeyPrefix)
	if !ok || len(body) < adminKeyMinRandomLen+checksumLen || len(body) > adminKeyMaxRandomLen+checksumLen {
		return false
	}
	if !base62.Valid(body) {
		return false
	}
	random, sum := body[:len(body)-checksumLen], body[len(body)-checksumLen:]
	return base62.Checksum(random) == sum
}

// HashKey returns the lowercase hex SHA-256 of the whole key, the form in
// which keys are stored and looked up.
func HashKey(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
