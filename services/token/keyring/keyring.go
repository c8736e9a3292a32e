// Package keyring encrypts the secrets the token service must be able to
// show again (token plaintexts for reveal, route backend credentials) and
// decrypts what v2.7 stored.
//
// New ciphertexts are AES-256-GCM under a versioned key ring:
//
//	tmk1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>
//
// The key id names the ring key that sealed the value, so keys can be rotated
// (a new current key seals, older keys still open) without re-encrypting
// every row at once. The caller passes associated data that binds a
// ciphertext to its row (e.g. "token:<hash>"), so a ciphertext copied onto
// another row does not open.
//
// Key derivation: every configured key is a Fernet key (32 bytes, URL-safe
// base64, as v2.7's TOKEN_ENCRYPTION_KEY). The AES-256 key is
// HKDF-SHA256(ikm = the 32 raw bytes, salt = none,
// info = "tokenmanager/keyring/aes-256-gcm/v1"), so the raw bytes of the
// Fernet key are never used directly as the AES key.
//
// v2.7 ciphertexts are base64url(Fernet token) (the Fernet token, already
// base64url text, encoded a second time, with padding) under
// TOKEN_ENCRYPTION_KEY; Open recognises and decrypts them (contract §6).
package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// prefix marks the ciphertexts of this package's format, version 1.
const prefix = "tmk1."

// hkdfInfo is the HKDF info string of the AES key derivation (see the
// package comment); changing it would make every stored ciphertext unreadable.
const hkdfInfo = "tokenmanager/keyring/aes-256-gcm/v1"

// DefaultKeyID is the id of TOKEN_ENCRYPTION_KEY in the ring when no
// TOKEN_ENCRYPTION_KEYS are configured.
const DefaultKeyID = "k1"

var keyIDPattern = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

// ErrUndecryptable is returned (wrapped) for any ciphertext that does not
// open: wrong key, tampered, truncated, unknown key id or format. Its text
// never contains the ciphertext.
var ErrUndecryptable = errors.New("keyring: ciphertext cannot be decrypted")

// Ring holds the keys. The zero value is unusable; build one with New.
type Ring struct {
	current string
	aeads   map[string]cipher.AEAD
	fernet  *fernetKey // v2.7's key, for legacy ciphertexts; nil if none
	mac     []byte     // key of Fingerprint
}

// Key is one configured key.
type Key struct {
	ID     string
	Fernet string // 32 bytes in URL-safe base64 (padded or not)
}

// ParseKeyList parses TOKEN_ENCRYPTION_KEYS: "id:key,id:key", first current.
func ParseKeyList(s string) ([]Key, error) {
	var keys []Key
	seen := map[string]bool{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, key, ok := strings.Cut(item, ":")
		if !ok || !keyIDPattern.MatchString(id) {
			return nil, errors.New("each entry must be <id>:<key> with an id of 1-16 characters [a-z0-9]")
		}
		if seen[id] {
			return nil, fmt.Errorf("key id %q appears twice", id)
		}
		if _, err := DecodeKey(key); err != nil {
			return nil, fmt.Errorf("key %q: %w", id, err)
		}
		seen[id] = true
		keys = append(keys, Key{ID: id, Fernet: key})
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	return keys, nil
}

// DecodeKey decodes a Fernet key: 32 bytes of URL-safe base64.
func DecodeKey(k string) ([]byte, error) {
	b, err := base64.URLEncoding.DecodeString(k)
	if err != nil {
		b, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(k, "="))
	}
	if err != nil || len(b) != 32 {
		return nil, errors.New("must be 32 bytes in URL-safe base64")
	}
	return b, nil
}

// New builds a ring: ring[0] is the current key. legacy, when not empty, is
// v2.7's TOKEN_ENCRYPTION_KEY, used to open Fernet ciphertexts.
func New(legacy string, ring []Key) (*Ring, error) {
	if len(ring) == 0 {
		return nil, errors.New("keyring: no keys")
	}
	r := &Ring{current: ring[0].ID, aeads: map[string]cipher.AEAD{}}
	for _, k := range ring {
		raw, err := DecodeKey(k.Fernet)
		if err != nil {
			return nil, fmt.Errorf("keyring: key %q: %w", k.ID, err)
		}
		aesKey, err := hkdf.Key(sha256.New, raw, nil, hkdfInfo, 32)
		if err != nil {
			return nil, err
		}
		block, err := aes.NewCipher(aesKey)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		r.aeads[k.ID] = aead
		if r.mac == nil {
			r.mac, err = hkdf.Key(sha256.New, raw, nil, "tokenmanager/keyring/fingerprint/v1", 32)
			if err != nil {
				return nil, err
			}
		}
	}
	if legacy != "" {
		raw, err := DecodeKey(legacy)
		if err != nil {
			return nil, fmt.Errorf("keyring: legacy key: %w", err)
		}
		r.fernet = newFernetKey(raw)
	}
	return r, nil
}

// CurrentKeyID is the id of the key Seal uses.
func (r *Ring) CurrentKeyID() string { return r.current }

// Seal encrypts plaintext under the current key, bound to ad.
func (r *Ring) Seal(plaintext []byte, ad string) (string, error) {
	aead := r.aeads[r.current]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	sealed := aead.Seal(nonce, nonce, plaintext, []byte(ad))
	return prefix + r.current + "." + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Open decrypts a ciphertext of Seal (ad must match), or a v2.7
// base64url(Fernet) ciphertext (ad is not used: v2.7 bound nothing).
func (r *Ring) Open(ciphertext, ad string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(ciphertext, prefix); ok {
		id, body, ok := strings.Cut(rest, ".")
		if !ok {
			return nil, fmt.Errorf("%w: malformed", ErrUndecryptable)
		}
		aead := r.aeads[id]
		if aead == nil {
			return nil, fmt.Errorf("%w: unknown key id", ErrUndecryptable)
		}
		sealed, err := base64.RawURLEncoding.DecodeString(body)
		if err != nil || len(sealed) < aead.NonceSize()+aead.Overhead() {
			return nil, fmt.Errorf("%w: malformed", ErrUndecryptable)
		}
		n := aead.NonceSize()
		pt, err := aead.Open(nil, sealed[:n], sealed[n:], []byte(ad))
		if err != nil {
			return nil, fmt.Errorf("%w: authentication failed", ErrUndecryptable)
		}
		return pt, nil
	}
	if r.fernet == nil {
		return nil, fmt.Errorf("%w: unknown format", ErrUndecryptable)
	}
	return r.fernet.openLegacy(ciphertext)
}

// IsLegacy reports whether ciphertext is in v2.7's format (to re-seal it).
func IsLegacy(ciphertext string) bool { return !strings.HasPrefix(ciphertext, prefix) }

// Fingerprint is a keyed digest of value: it tells whether a stored copy is
// current without revealing the value (KV metadata carries it).
func (r *Ring) Fingerprint(value []byte) string {
	m := hmac.New(sha256.New, r.mac)
	m.Write(value)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}
