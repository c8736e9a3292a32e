package usage

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

var fuzzNow = time.Date(2025, 11, 8, 7, 0, 0, 0, time.UTC)

// FuzzDecodePayload: whatever the body, DecodePayload either returns valid
// events or an InvalidArgument error; it never panics, and accepted events
// satisfy every invariant the store relies on.
func FuzzDecodePayload(f *testing.F) {
	h := strings.Repeat("ab", 32)
	for _, s := range []string{
		`{"token_hash":"` + h + `","route":"/api/openai","timestamp":1762585200000,"response_status":200,"response_time_ms":412,"ip_address":"203.0.113.7","user_agent":"n8n","request_method":"POST","error_message":null}`,
		`{"events":[{"token_hash":"` + h + `","timestamp":1762585200000,"event_id":"a"},{"token_hash":"` + h + `","timestamp":1762585200001.0}]}`,
		`{"events":[]}`, `{"events":[null]}`, `{"events":null}`, `[]`, `null`, `{}`, `{"token_hash":1}`,
		`{"token_hash":"` + h + `","timestamp":"1"}`, `{"token_hash":"` + h + `","timestamp":1e300}`,
		`{"token_hash":"` + h + `","timestamp":1762585200000,"response_status":-5}`,
		`{"token_hash":"` + h + `","timestamp":1762585200000,"user_agent":"\u0000"}`,
		`{"token_hash":"` + h + `","timestamp":1762585200000} {}`, "\xff", `{"a":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, batch, err := DecodePayload(body, fuzzNow, fuzzNow.AddDate(0, 0, -90))
		if err != nil {
			if !errors.Is(err, errs.ErrInvalidArgument) {
				t.Fatalf("error of the wrong kind: %v", err)
			}
			if evs != nil {
				t.Fatal("events returned with an error")
			}
			return
		}
		if len(evs) == 0 || len(evs) > MaxBatchEvents || (!batch && len(evs) != 1) {
			t.Fatalf("%d events (batch %v)", len(evs), batch)
		}
		for _, e := range evs {
			if !isTokenHash(e.TokenHash) || e.EventID == "" || len(e.EventID) > 4*maxEventIDLen {
				t.Fatalf("invalid event accepted: %+v", e)
			}
			if e.UsedAt.After(fuzzNow.Add(maxFutureSkew)) || e.UsedAt.Before(fuzzNow.AddDate(0, 0, -90)) {
				t.Fatalf("timestamp out of bounds accepted: %v", e.UsedAt)
			}
			if e.ResponseStatus != nil && (*e.ResponseStatus < 100 || *e.ResponseStatus > 599) {
				t.Fatalf("status %d accepted", *e.ResponseStatus)
			}
			if e.ResponseTimeMS != nil && *e.ResponseTimeMS < 0 {
				t.Fatalf("latency %d accepted", *e.ResponseTimeMS)
			}
			for _, s := range []*string{e.Route, e.IPAddress, e.UserAgent, e.RequestMethod, e.ErrorMessage, &e.EventID} {
				if s != nil && strings.ContainsRune(*s, 0) {
					t.Fatal("NUL accepted")
				}
			}
		}
	})
}

func TestCanonicalID(t *testing.T) {
	h := strings.Repeat("ab", 32)
	a := `{"token_hash":"` + h + `","route":"/x","timestamp":1762585200000,"response_status":200}`
	b := `{"response_status":200,"timestamp":1762585200000,"route":"/x","token_hash":"` + h + `"}`
	c := `{"token_hash":"` + h + `","route":"/x","timestamp":1762585200001,"response_status":200}`
	d := `{"token_hash":"` + h + `","route":null,"timestamp":1762585200000,"response_status":200}`
	id := func(s string) string {
		evs, _, err := DecodePayload([]byte(s), fuzzNow, fuzzNow.AddDate(0, 0, -90))
		if err != nil {
			t.Fatal(err)
		}
		return evs[0].EventID
	}
	if id(a) != id(b) {
		t.Error("key order changes the id")
	}
	if id(a) == id(c) || id(a) == id(d) {
		t.Error("different events share an id")
	}
}

func TestSignatureHeaders(t *testing.T) {
	body := []byte(`{"a":1}`)
	now := time.Unix(1762585200, 0)
	v := &Verifier{Secrets: [][]byte{[]byte(testSecret)}, Now: func() time.Time { return now }}
	// The documented construction, spelled out.
	want := "v1=" + hexHMAC(testSecret, "1762585200."+string(body))
	if got := Sign([]byte(testSecret), "1762585200", body); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if _, err := v.Verify(want, "1762585200", body); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(want, "1762585500", body); err == nil { // 5m later: signature no longer matches
		t.Fatal("accepted a signature for another timestamp")
	}
	v.Now = func() time.Time { return now.Add(SignatureTolerance) }
	if _, err := v.Verify(want, "1762585200", body); err != nil {
		t.Fatalf("at the edge of the tolerance: %v", err)
	}
	v.Now = func() time.Time { return now.Add(SignatureTolerance + time.Second) }
	if _, err := v.Verify(want, "1762585200", body); !errors.Is(err, errs.ErrUnauthenticated) {
		t.Fatalf("past the tolerance: %v", err)
	}
}

func TestPercentiles(t *testing.T) {
	hist := make([]int64, histBuckets)
	var max int32
	// 1..1000 ms, one call each.
	for ms := int32(1); ms <= 1000; ms++ {
		hist[bucketOf(ms)]++
		max = ms
	}
	p := percentiles(hist, max)
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", p.P50, 500}, {"p95", p.P95, 950}, {"p99", p.P99, 990}} {
		if c.got < c.want*0.9 || c.got > c.want*1.1 {
			t.Errorf("%s = %v, want about %v", c.name, c.got, c.want)
		}
	}
	if z := percentiles(make([]int64, histBuckets), 0); z != (Percentiles{}) {
		t.Errorf("empty histogram: %+v", z)
	}
	if bucketOf(0) != 0 || bucketOf(1) != 0 || bucketOf(2) != 1 || bucketOf(60001) != histBuckets-1 {
		t.Error("bucketOf boundaries")
	}
}

func TestAnomalous(t *testing.T) {
	now := time.Date(2025, 11, 8, 7, 30, 0, 0, time.UTC)
	cur := now.Truncate(time.Hour)
	base := map[time.Time]int64{}
	for i := 2; i <= 169; i++ {
		base[cur.Add(-time.Duration(i)*time.Hour)] = 10 + int64(i%3) // steady 10-12/h
	}
	if anomalous(base, now) {
		t.Error("quiet hour flagged")
	}
	base[cur] = 13
	if anomalous(base, now) {
		t.Error("normal hour flagged")
	}
	base[cur] = 40
	if !anomalous(base, now) {
		t.Error("spike in the current hour not flagged")
	}
	if anomalous(map[time.Time]int64{cur: 100}, now) {
		t.Error("no baseline: flagged")
	}
}

func hexHMAC(secret, msg string) string {
	return hexOf(mac([]byte(secret), strings.SplitN(msg, ".", 2)[0], []byte(strings.SplitN(msg, ".", 2)[1])))
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }
