package usage

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Signing scheme of POST /api/usage-log (the Worker signs, we verify):
//
//	X-TM-Timestamp: <unix seconds>
//	X-TM-Signature: v1=<lowercase hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
//
// Several comma-separated v1= values may be sent (a Worker mid-rotation may
// sign with both secrets); one valid value suffices. USAGE_INGEST_SECRET
// and, during a rotation, USAGE_INGEST_SECRET_PREVIOUS are accepted.
const (
	signatureVersion = "v1="
	// SignatureTolerance is how far the timestamp may be from our clock,
	// either way: a captured request cannot be replayed after that (and
	// within it, a replay is a duplicate that event ids absorb).
	SignatureTolerance = 5 * time.Minute
)

// Sign returns the X-TM-Signature value for body at ts (for the Worker's
// tests and for ours).
func Sign(secret []byte, ts string, body []byte) string {
	return signatureVersion + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verdict is what signature verification concluded.
type Verdict int

const (
	// Signed: a valid signature with a fresh timestamp.
	Signed Verdict = iota + 1
	// Unsigned: no signature at all, and unsigned posts are allowed; the
	// caller must still check that every token hash exists.
	Unsigned
)

// Verifier checks request signatures.
type Verifier struct {
	Secrets       [][]byte // current first; empty entries are ignored
	AllowUnsigned bool
	Now           func() time.Time
}

var (
	errMissingSignature = errs.Unauthenticated("Missing request signature (X-TM-Signature, X-TM-Timestamp)")
	errBadSignature     = errs.Unauthenticated("Invalid request signature")
	errBadTimestamp     = errs.Unauthenticated("Invalid signature timestamp (X-TM-Timestamp: unix seconds)")
	errStaleTimestamp   = errs.Unauthenticated("Signature timestamp outside the allowed clock skew")
)

// Verify checks sig and ts over body. A request with neither header is
// Unsigned when allowed; a request with a signature is always verified,
// even when unsigned posts are allowed.
func (v *Verifier) Verify(sig, ts string, body []byte) (Verdict, error) {
	if sig == "" && ts == "" {
		if v.AllowUnsigned {
			return Unsigned, nil
		}
		return 0, errMissingSignature
	}
	if sig == "" || ts == "" {
		return 0, errMissingSignature
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(ts) > 12 {
		return 0, errBadTimestamp
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	if d := now().Sub(time.Unix(secs, 0)); d > SignatureTolerance || d < -SignatureTolerance {
		return 0, errStaleTimestamp
	}
	var macs [][]byte
	for _, s := range v.Secrets {
		if len(s) > 0 {
			macs = append(macs, mac(s, ts, body))
		}
	}
	for part := range strings.SplitSeq(sig, ",") {
		hexSig, ok := strings.CutPrefix(strings.TrimSpace(part), signatureVersion)
		if !ok {
			continue
		}
		got, err := hex.DecodeString(hexSig)
		if err != nil || len(got) != sha256.Size {
			continue
		}
		for _, want := range macs {
			if hmac.Equal(got, want) {
				return Signed, nil
			}
		}
	}
	return 0, errBadSignature
}
