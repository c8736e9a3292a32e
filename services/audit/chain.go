package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// GenesisHash is the prev_hash of the first event of the chain.
var GenesisHash = strings.Repeat("0", 64)

// hashVersion is the first field of every encoding, so that a future
// encoding can never produce the same bytes as this one.
const hashVersion = "tm-audit-v1"

// timeLayout is how timestamps enter the hash: UTC, always six fractional
// digits (PostgreSQL keeps microseconds).
const timeLayout = "2006-01-02T15:04:05.000000Z"

// Event is one stored audit event.
type Event struct {
	ID         int64
	EventID    string
	OccurredAt time.Time
	RecordedAt time.Time
	ActorType  string
	ActorID    string
	ActorEmail string
	ActorName  string
	Action     string
	EntityType string
	EntityID   string
	TeamID     string // "" for events of no team
	Details    []byte // canonical JSON object (see CanonicalJSON)
	RequestID  string
	ClientIP   string
	UserAgent  string
	PrevHash   string
	Hash       string
}

// ComputeHash returns the hash of e chained to e.PrevHash:
//
//	hex(SHA-256(enc(hashVersion) enc(id) enc(event_id) enc(occurred_at)
//	    enc(recorded_at) enc(actor_type) enc(actor_id) enc(actor_email)
//	    enc(actor_name) enc(action) enc(entity_type) enc(entity_id)
//	    enc(team_id) enc(details) enc(request_id) enc(client_ip)
//	    enc(user_agent) enc(prev_hash)))
//
// where enc(s) is the netstring <decimal byte length of s>":"<s>",", id is
// decimal, times are UTC with six fractional digits (timeLayout), absent
// text fields are "", and details is the canonical JSON of the object (see
// CanonicalJSON). Length prefixes make the encoding injective: no two
// different rows encode to the same bytes, whatever their fields contain.
func ComputeHash(e *Event) string {
	var b bytes.Buffer
	for _, f := range []string{
		hashVersion,
		strconv.FormatInt(e.ID, 10),
		e.EventID,
		e.OccurredAt.UTC().Format(timeLayout),
		e.RecordedAt.UTC().Format(timeLayout),
		e.ActorType, e.ActorID, e.ActorEmail, e.ActorName,
		e.Action, e.EntityType, e.EntityID, e.TeamID,
		string(e.Details),
		e.RequestID, e.ClientIP, e.UserAgent,
		e.PrevHash,
	} {
		b.WriteString(strconv.Itoa(len(f)))
		b.WriteByte(':')
		b.WriteString(f)
		b.WriteByte(',')
	}
	sum := sha256.Sum256(b.Bytes())
	return hex.EncodeToString(sum[:])
}

// CanonicalJSON re-encodes a JSON object deterministically: keys sorted
// bytewise at every depth, no insignificant whitespace, numbers as float64
// in Go's shortest round-trip form, strings with Go's escaping minus the
// HTML escapes. PostgreSQL's jsonb keeps the value but not the text (it
// reorders keys and rewrites numbers), so the hash covers this form, which
// both the writer (from the submitted details) and VerifyChain (from the
// stored jsonb) can rebuild exactly.
func CanonicalJSON(raw []byte) ([]byte, error) {
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return marshalCanonical(v)
}

func marshalCanonical(v map[string]any) ([]byte, error) {
	if v == nil {
		v = map[string]any{}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
