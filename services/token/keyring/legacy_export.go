package keyring

import (
	"crypto/rand"
	"encoding/base64"
	"time"
)

// SealLegacy produces a v2.7 ciphertext: base64url(Fernet(key).encrypt(pt)).
// Nothing in production writes this format; tests and data-migration tools
// use it to build v2.7 rows.
func SealLegacy(fernetKeyB64 string, plaintext []byte) (string, error) {
	raw, err := DecodeKey(fernetKeyB64)
	if err != nil {
		return "", err
	}
	tok, err := newFernetKey(raw).encrypt(plaintext, time.Now(), rand.Reader)
	if err != nil {
		return "", err
	}
	return base64.URLEncoding.EncodeToString([]byte(tok)), nil
}
