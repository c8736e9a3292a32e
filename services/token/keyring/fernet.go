package keyring

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"time"
)

// Fernet (https://github.com/fernet/spec): version 0x80 ‖ timestamp (8 bytes,
// big endian) ‖ IV (16) ‖ AES-128-CBC ciphertext (PKCS#7) ‖ HMAC-SHA256 (32)
// over everything before it, all in URL-safe base64. The 32-byte key is the
// signing key (first 16 bytes) then the encryption key (last 16). v2.7 set no
// TTL, so none is enforced here.
const (
	fernetVersion = 0x80
	fernetHeader  = 1 + 8 + aes.BlockSize
	fernetMinLen  = fernetHeader + aes.BlockSize + sha256.Size
)

type fernetKey struct {
	sign, enc []byte
}

func newFernetKey(raw []byte) *fernetKey {
	return &fernetKey{sign: raw[:16], enc: raw[16:32]}
}

// openLegacy opens base64url(Fernet token), v2.7's token_encrypted column.
func (k *fernetKey) openLegacy(stored string) ([]byte, error) {
	inner, err := decodeB64URL(stored)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url", ErrUndecryptable)
	}
	return k.decrypt(string(inner))
}

// decrypt opens a Fernet token.
func (k *fernetKey) decrypt(token string) ([]byte, error) {
	b, err := decodeB64URL(token)
	if err != nil || len(b) < fernetMinLen || b[0] != fernetVersion {
		return nil, fmt.Errorf("%w: not a Fernet token", ErrUndecryptable)
	}
	body, tag := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	m := hmac.New(sha256.New, k.sign)
	m.Write(body)
	if !hmac.Equal(tag, m.Sum(nil)) {
		return nil, fmt.Errorf("%w: authentication failed", ErrUndecryptable)
	}
	iv, ct := body[9:fernetHeader], body[fernetHeader:]
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: bad ciphertext length", ErrUndecryptable)
	}
	block, _ := aes.NewCipher(k.enc)
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, ct)
	pad := int(pt[len(pt)-1])
	if pad == 0 || pad > aes.BlockSize || !bytes.Equal(pt[len(pt)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		return nil, fmt.Errorf("%w: bad padding", ErrUndecryptable)
	}
	return pt[:len(pt)-pad], nil
}

// encrypt builds a Fernet token. Production code never writes Fernet; tests
// use it to make v2.7-style ciphertexts.
func (k *fernetKey) encrypt(plaintext []byte, at time.Time, rnd io.Reader) (string, error) {
	iv := make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(rnd, iv); err != nil {
		return "", err
	}
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	padded := append(append([]byte{}, plaintext...), bytes.Repeat([]byte{byte(pad)}, pad)...)
	block, _ := aes.NewCipher(k.enc)
	ct := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)
	body := make([]byte, 0, fernetHeader+len(ct)+sha256.Size)
	body = append(body, fernetVersion)
	body = binary.BigEndian.AppendUint64(body, uint64(at.Unix()))
	body = append(body, iv...)
	body = append(body, ct...)
	m := hmac.New(sha256.New, k.sign)
	m.Write(body)
	return base64.URLEncoding.EncodeToString(m.Sum(body)), nil
}

// decodeB64URL accepts URL-safe base64 with or without padding (Python's
// urlsafe_b64encode pads; some copies lose it).
func decodeB64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
