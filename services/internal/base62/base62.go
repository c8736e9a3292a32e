// Package base62 is the alphabet and checksum that API tokens (ntk_…) and
// admin keys (tmak_…) share: random base62 characters followed by their
// CRC32 in base62, which lets a key be told from a typo without a lookup.
// The Worker repeats the checksum in JavaScript (deploy/worker/src/token.js).
package base62

import (
	"crypto/rand"
	"hash/crc32"
)

// Alphabet is 0-9, A-Z, a-z: a digit's value is its index.
const Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// ChecksumLen is the length of Checksum's result: 62^6 > 2^32, so any CRC32 fits.
const ChecksumLen = 6

// IsDigit reports whether c is in Alphabet.
func IsDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}

// Valid reports whether every byte of s is in Alphabet.
func Valid(s string) bool {
	for i := 0; i < len(s); i++ {
		if !IsDigit(s[i]) {
			return false
		}
	}
	return true
}

// Random returns n uniformly random base62 characters from crypto/rand.
func Random(n int) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		_, _ = rand.Read(buf[:]) // crypto/rand never fails
		for _, b := range buf {
			// Rejecting bytes ≥ 248 (= 4·62) keeps every character equally likely.
			if b < 248 && len(out) < n {
				out = append(out, Alphabet[b%62])
			}
		}
	}
	return string(out)
}

// Checksum is CRC32-IEEE of s in base62, most significant digit first,
// zero-padded to ChecksumLen characters.
func Checksum(s string) string {
	v := crc32.ChecksumIEEE([]byte(s))
	var out [ChecksumLen]byte
	for i := ChecksumLen - 1; i >= 0; i-- {
		out[i] = Alphabet[v%62]
		v /= 62
	}
	return string(out[:])
}
