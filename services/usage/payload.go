package usage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Limits of one ingest request.
const (
	// MaxBatchEvents bounds {"events": [...]}.
	MaxBatchEvents = 1000
	// MaxBodyBytes bounds the raw body (the gateway's default limit too).
	MaxBodyBytes = 1 << 20
	// maxFutureSkew is how far ahead of our clock an event may be.
	maxFutureSkew = 5 * time.Minute
)

// Field limits (v2.7's column sizes where it had them).
const (
	maxRouteLen   = 1024
	maxIPLen      = 45
	maxAgentLen   = 1024
	maxMethodLen  = 10
	maxErrorLen   = 2048
	maxEventIDLen = 128
	maxLatencyMS  = 24 * 60 * 60 * 1000
)

// Event is one validated usage event (contract §4.5).
type Event struct {
	EventID        string
	TokenHash      string
	Route          *string
	UsedAt         time.Time // millisecond precision, UTC
	ResponseStatus *int32
	ResponseTimeMS *int32
	IPAddress      *string
	UserAgent      *string
	RequestMethod  *string
	ErrorMessage   *string
}

// wireEvent is an event as posted. Pointers tell absent or null from zero.
type wireEvent struct {
	EventID        *string          `json:"event_id"`
	TokenHash      *string          `json:"token_hash"`
	Route          *string          `json:"route"`
	Timestamp      *json.RawMessage `json:"timestamp"`
	ResponseStatus *json.RawMessage `json:"response_status"`
	ResponseTimeMS *json.RawMessage `json:"response_time_ms"`
	IPAddress      *string          `json:"ip_address"`
	UserAgent      *string          `json:"user_agent"`
	RequestMethod  *string          `json:"request_method"`
	ErrorMessage   *string          `json:"error_message"`
}

// wirePayload is one event or a batch: {"events": [...]} with no event
// field beside it.
type wirePayload struct {
	wireEvent
	Events *[]*wireEvent `json:"events"`
}

func (w *wireEvent) empty() bool { return *w == wireEvent{} }

// DecodePayload parses and validates a request body: one event or a batch
// of 1..MaxBatchEvents. now bounds timestamps: not more than maxFutureSkew
// ahead, not older than oldest. Any problem rejects the whole body with an
// InvalidArgument error naming the event and field. batch reports the
// {"events": [...]} form.
func DecodePayload(body []byte, now, oldest time.Time) (events []Event, batch bool, err error) {
	if len(body) > MaxBodyBytes {
		return nil, false, errs.Invalid("Request body too large")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var p wirePayload
	if err := dec.Decode(&p); err != nil {
		return nil, false, errs.Invalid("Malformed JSON body: " + jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false, errs.Invalid("Malformed JSON body: data after the JSON object")
	}
	var wire []*wireEvent
	if p.Events != nil {
		if !p.wireEvent.empty() {
			return nil, false, errs.Invalid("A batch has only the key \"events\"")
		}
		wire = *p.Events
		if len(wire) == 0 {
			return nil, false, errs.Invalid("events: empty batch")
		}
		if len(wire) > MaxBatchEvents {
			return nil, false, errs.Invalid(fmt.Sprintf("events: at most %d events per request", MaxBatchEvents))
		}
	} else {
		wire = []*wireEvent{&p.wireEvent}
	}
	out := make([]Event, len(wire))
	for i, w := range wire {
		prefix := ""
		if p.Events != nil {
			prefix = fmt.Sprintf("events[%d].", i)
		}
		if w == nil {
			return nil, false, errs.Invalid(prefix[:len(prefix)-1] + ": must be an object")
		}
		if err := w.validate(&out[i], now, oldest); err != nil {
			return nil, false, errs.Invalid(prefix + err.Error())
		}
	}
	return out, p.Events != nil, nil
}

// jsonProblem describes a decoding error without echoing the input.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("%s: must be %s", typ.Field, jsonType(typ.Type.Kind().String()))
		}
		return "must be a JSON object"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "unexpected end of input"
	}
	// Unknown fields: encoding/json says `json: unknown field "x"`.
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "ptr", "struct", "map":
		return "an object"
	case "slice":
		return "an array"
	}
	return "a number"
}

type fieldError struct{ field, msg string }

func (e fieldError) Error() string { return e.field + ": " + e.msg }

func (w *wireEvent) validate(e *Event, now, oldest time.Time) error {
	if w.TokenHash == nil {
		return fieldError{"token_hash", "required"}
	}
	if !isTokenHash(*w.TokenHash) {
		return fieldError{"token_hash", "must be 64 lowercase hex characters (SHA-256)"}
	}
	e.TokenHash = *w.TokenHash
	if w.Timestamp == nil {
		return fieldError{"timestamp", "required (epoch milliseconds)"}
	}
	ms, err := strconv.ParseInt(string(*w.Timestamp), 10, 64)
	if err != nil {
		// JavaScript may send 1762586400123.0; accept integral floats.
		f, ferr := strconv.ParseFloat(string(*w.Timestamp), 64)
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1e15 {
			return fieldError{"timestamp", "must be an integer (epoch milliseconds)"}
		}
		ms = int64(f)
	}
	e.UsedAt = time.UnixMilli(ms).UTC()
	if e.UsedAt.After(now.Add(maxFutureSkew)) {
		return fieldError{"timestamp", "is in the future"}
	}
	if e.UsedAt.Before(oldest) {
		return fieldError{"timestamp", "is older than the retention period"}
	}
	if e.ResponseStatus, err = intField("response_status", w.ResponseStatus, 100, 599); err != nil {
		return err
	}
	if e.ResponseTimeMS, err = intField("response_time_ms", w.ResponseTimeMS, 0, maxLatencyMS); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		in   *string
		max  int
		out  **string
	}{
		{"route", w.Route, maxRouteLen, &e.Route},
		{"ip_address", w.IPAddress, maxIPLen, &e.IPAddress},
		{"user_agent", w.UserAgent, maxAgentLen, &e.UserAgent},
		{"request_method", w.RequestMethod, maxMethodLen, &e.RequestMethod},
		{"error_message", w.ErrorMessage, maxErrorLen, &e.ErrorMessage},
	} {
		if f.in == nil {
			continue
		}
		if err := checkText(f.name, *f.in, f.max); err != nil {
			return err
		}
		v := *f.in
		*f.out = &v
	}
	if w.EventID != nil {
		id := *w.EventID
		if id == "" {
			return fieldError{"event_id", "must not be empty"}
		}
		if err := checkText("event_id", id, maxEventIDLen); err != nil {
			return err
		}
		e.EventID = id
	} else {
		e.EventID = canonicalID(e)
	}
	return nil
}

func intField(name string, n *json.RawMessage, lo, hi int64) (*int32, error) {
	if n == nil {
		return nil, nil
	}
	v, err := strconv.ParseInt(string(*n), 10, 64)
	if err != nil {
		return nil, fieldError{name, "must be an integer"}
	}
	if v < lo || v > hi {
		return nil, fieldError{name, fmt.Sprintf("must be between %d and %d", lo, hi)}
	}
	i := int32(v)
	return &i, nil
}

// checkText refuses what PostgreSQL text cannot hold (NUL, invalid UTF-8)
// and overlong values.
func checkText(name, v string, max int) error {
	if !utf8.ValidString(v) || bytes.IndexByte([]byte(v), 0) >= 0 {
		return fieldError{name, "must be valid UTF-8 text without NUL"}
	}
	if utf8.RuneCountInString(v) > max {
		return fieldError{name, fmt.Sprintf("at most %d characters", max)}
	}
	return nil
}

func isTokenHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// canonicalID is the event id of an event posted without one: a hash of
// every field, so that the retry of an identical post is recognised. Two
// genuinely distinct calls identical to the millisecond in every field
// collapse into one; the Worker avoids that by sending event_id.
func canonicalID(e *Event) string {
	h := sha256.New()
	var buf [8]byte
	str := func(p *string) {
		if p == nil {
			h.Write([]byte{0})
			return
		}
		h.Write([]byte{1})
		binary.BigEndian.PutUint64(buf[:], uint64(len(*p)))
		h.Write(buf[:])
		h.Write([]byte(*p))
	}
	num := func(p *int32) {
		if p == nil {
			h.Write([]byte{0})
			return
		}
		h.Write([]byte{1})
		binary.BigEndian.PutUint64(buf[:], uint64(int64(*p)))
		h.Write(buf[:])
	}
	h.Write([]byte("tm-usage-v1\x00"))
	str(&e.TokenHash)
	binary.BigEndian.PutUint64(buf[:], uint64(e.UsedAt.UnixMilli()))
	h.Write(buf[:])
	str(e.Route)
	num(e.ResponseStatus)
	num(e.ResponseTimeMS)
	str(e.IPAddress)
	str(e.UserAgent)
	str(e.RequestMethod)
	str(e.ErrorMessage)
	return "sha256:" + hex.EncodeToString(h.Sum(nil)[:16])
}
