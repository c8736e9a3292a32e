package keyring

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

const (
	keyA = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="
	keyB = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8M="
)

// The Fernet spec's generate.json vector (github.com/fernet/spec).
func TestFernetSpecVector(t *testing.T) {
	raw, err := DecodeKey(keyA)
	if err != nil {
		t.Fatal(err)
	}
	k := newFernetKey(raw)
	at, _ := time.Parse(time.RFC3339, "1985-10-26T01:20:00-07:00")
	iv := bytes.NewReader([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	got, err := k.encrypt([]byte("hello"), at, iv)
	if err != nil {
		t.Fatal(err)
	}
	const want = "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA=="
	if got != want {
		t.Fatalf("encrypt = %s, want %s", got, want)
	}
	pt, err := k.decrypt(want)
	if err != nil || string(pt) != "hello" {
		t.Fatalf("decrypt = %q, %v", pt, err)
	}
}

func TestOpenLegacyV27Ciphertext(t *testing.T) {
	ring, err := New(keyA, []Key{{ID: DefaultKeyID, Fernet: keyA}})
	if err != nil {
		t.Fatal(err)
	}
	token := "ntk_Q3v9xLm2pR7tYb1KdE0sWfHa8cNjU4oZ6iGqTy5VwXk"
	stored, err := SealLegacy(keyA, []byte(token))
	if err != nil {
		t.Fatal(err)
	}
	// v2.7's shape: 188 characters starting Z0FBQUFB for a 47-character token.
	if len(stored) != 188 || !strings.HasPrefix(stored, "Z0FBQUFB") || !IsLegacy(stored) {
		t.Fatalf("legacy ciphertext shape: %d %q", len(stored), stored[:8])
	}
	pt, err := ring.Open(stored, "ignored for legacy")
	if err != nil || string(pt) != token {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	// Without padding too.
	if pt, err := ring.Open(strings.TrimRight(stored, "="), ""); err != nil || string(pt) != token {
		t.Fatalf("Open unpadded = %q, %v", pt, err)
	}
	other, _ := New(keyB, []Key{{ID: DefaultKeyID, Fernet: keyB}})
	if _, err := other.Open(stored, ""); !errors.Is(err, ErrUndecryptable) {
		t.Fatalf("Open with another key = %v", err)
	}
	noLegacy, _ := New("", []Key{{ID: DefaultKeyID, Fernet: keyA}})
	if _, err := noLegacy.Open(stored, ""); !errors.Is(err, ErrUndecryptable) {
		t.Fatalf("Open without legacy key = %v", err)
	}
}

func TestSealOpenRotation(t *testing.T) {
	old, _ := New(keyA, []Key{{ID: "v1", Fernet: keyA}})
	ct, err := old.Seal([]byte("secret"), "token:ab")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ct, "tmk1.v1.") || strings.Contains(ct, "secret") {
		t.Fatalf("ciphertext %q", ct)
	}
	rotated, _ := New(keyA, []Key{{ID: "v2", Fernet: keyB}, {ID: "v1", Fernet: keyA}})
	if rotated.CurrentKeyID() != "v2" {
		t.Fatal("current key")
	}
	if pt, err := rotated.Open(ct, "token:ab"); err != nil || string(pt) != "secret" {
		t.Fatalf("old ciphertext under rotated ring: %q %v", pt, err)
	}
	ct2, _ := rotated.Seal([]byte("secret"), "token:ab")
	if !strings.HasPrefix(ct2, "tmk1.v2.") {
		t.Fatalf("new ciphertext %q not under v2", ct2)
	}
	if _, err := old.Open(ct2, "token:ab"); !errors.Is(err, ErrUndecryptable) {
		t.Fatalf("unknown key id: %v", err)
	}
	if _, err := rotated.Open(ct, "token:cd"); !errors.Is(err, ErrUndecryptable) {
		t.Fatalf("wrong associated data: %v", err)
	}
	tampered := []byte(ct)
	tampered[len(tampered)-3] ^= 1
	if _, err := rotated.Open(string(tampered), "token:ab"); !errors.Is(err, ErrUndecryptable) {
		t.Fatalf("tampered: %v", err)
	}
}

func TestParseKeyList(t *testing.T) {
	keys, err := ParseKeyList("v2:" + keyB + ", v1:" + keyA)
	if err != nil || len(keys) != 2 || keys[0].ID != "v2" {
		t.Fatalf("ParseKeyList = %v, %v", keys, err)
	}
	for _, bad := range []string{"", "v1", "V1:" + keyA, "v1:short", "v1:" + keyA + ",v1:" + keyB} {
		if _, err := ParseKeyList(bad); err == nil {
			t.Errorf("ParseKeyList(%q) accepted", bad)
		} else if strings.Contains(err.Error(), keyA) {
			t.Errorf("error echoes a key: %v", err)
		}
	}
}

func TestFingerprint(t *testing.T) {
	r, _ := New("", []Key{{ID: "v1", Fernet: keyA}})
	if r.Fingerprint([]byte("a")) == r.Fingerprint([]byte("b")) || r.Fingerprint([]byte("a")) != r.Fingerprint([]byte("a")) {
		t.Fatal("fingerprint")
	}
}

// FuzzOpen feeds arbitrary ciphertexts (both formats) to Open: it must
// never panic, and only the seeds that are real ciphertexts may open.
func FuzzOpen(f *testing.F) {
	r, _ := New(keyA, []Key{{ID: "v1", Fernet: keyA}})
	ct, _ := r.Seal([]byte("ntk_x"), "ad")
	legacy, _ := SealLegacy(keyA, []byte("ntk_y"))
	for _, s := range []string{ct, legacy, "", "tmk1.", "tmk1.v1.", "tmk1.v1.AAAA", "tmk1.zz.AAAA", "Z0FBQUFB",
		base64.URLEncoding.EncodeToString([]byte("gAAAAA")), strings.Repeat("A", 300), legacy[:100], ct[:20]} {
		f.Add(s, "ad")
	}
	f.Fuzz(func(t *testing.T, s, ad string) {
		pt, err := r.Open(s, ad)
		if err == nil && s != ct && s != legacy && !strings.HasPrefix(s, "tmk1.v1.") && !IsLegacy(s) {
			t.Fatalf("opened %q to %q", s, pt)
		}
		if err != nil && !errors.Is(err, ErrUndecryptable) {
			t.Fatalf("error %v is not ErrUndecryptable", err)
		}
	})
}
