package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"hash/crc32"
	"strings"
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
	checksumLen          = 6 // 62^6 > 2^32, so any CRC32 fits
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewAdminKey returns a fresh admin API key in plaintext. Show it once and
// store only HashKey of it.
func NewAdminKey() string {
	random := randomBase62(adminKeyRandomLen)
	return adminKeyPrefix + random + checksum(random)
}

// ParseAdminKey reports whether s is a well-formed admin key: the prefix,
// enough base62 randomness and a matching checksum. It says nothing about
// whether the key exists or is revoked.
func ParseAdminKey(s string) bool {
	body, ok := strings.CutPrefix(s, adminKeyPrefix)
	if !ok || len(body) < adminKeyMinRandomLen+checksumLen || len(body) > adminKeyMaxRandomLen+checksumLen {
		return false
	}
	for i := 0; i < len(body); i++ {
		if strings.IndexByte(base62, body[i]) < 0 {
			return false
		}
	}
	random, sum := body[:len(body)-checksumLen], body[len(body)-checksumLen:]
	return checksum(random) == sum
}

// HashKey returns the lowercase hex SHA-256 of the whole key, the form in
// which keys are stored and looked up.
func HashKey(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// randomBase62 returns n uniformly random base62 characters.
func randomBase62(n int) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		_, _ = rand.Read(buf[:]) // never fails (crypto/rand)
		for _, b := range buf {
			// 248 = 4·62: rejecting the bytes above it keeps the choice uniform.
			if b < 248 && len(out) < n {
				out = append(out, base62[b%62])
			}
		}
	}
	return string(out)
}

// checksum is CRC32 (IEEE) of s in base62, zero-padded to checksumLen.
func checksum(s string) string {
	v := crc32.ChecksumIEEE([]byte(s))
	var out [checksumLen]byte
	for i := checksumLen - 1; i >= 0; i-- {
		out[i] = base62[v%62]
		v /= 62
	}
	return string(out[:])
}
