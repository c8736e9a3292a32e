package server

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tokenmanager/tokenmanager/gateway"
	"github.com/tokenmanager/tokenmanager/gateway/internal/config"
)

// fuzzMethods are the methods the fuzzer picks from (by index).
var fuzzMethods = []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}

// newFuzzChain is the gateway's middleware in front of a fake backend that
// stands in for grpc-gateway and the services: it answers 500 whenever input
// reaches it that the real stack could not store or would misread (the
// failures the input check exists for), 400 for JSON syntax errors (as the
// real decoder does) and 200 otherwise. No services, no network.
func newFuzzChain(t testing.TB) http.Handler {
	routes, err := gateway.Routes()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		cfg:     config.Config{MaxBodyBytes: 64 << 10},
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		metrics: newHTTPMetrics(nil),
	}
	s.patterns = newPatterns(routes)
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(why string) { writeError(w, http.StatusInternalServerError, "backend got "+why) }
		if bad(r.URL.Path) {
			fail("a bad path")
			return
		}
		for k, vs := range r.URL.Query() {
			if bad(k) {
				fail("a bad query name")
				return
			}
			for _, v := range vs {
				if bad(v) {
					fail("a bad query value")
					return
				}
			}
		}
		// An integer parameter grpc-gateway (strconv base 0) reads as another
		// number than its decimal spelling acts on the wrong record.
		var segs []string
		for _, e := range strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/") {
			v, _ := url.PathUnescape(e)
			segs = append(segs, v)
		}
		route := matchPattern(s.patterns, r.Method, segs)
		if route != nil {
			for i := range route.intParam {
				n0, err0 := strconv.ParseInt(segs[i], 0, 64)
				n10, err10 := strconv.ParseInt(segs[i], 10, 64)
				if err0 == nil && (err10 != nil || n0 != n10 || strings.HasPrefix(segs[i], "+")) {
					fail("a non-decimal id")
					return
				}
			}
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, "too large")
			return
		}
		if len(bytes.TrimSpace(body)) > 0 && (route == nil || !route.raw) {
			if bytes.IndexByte(body, 0) >= 0 || !utf8.Valid(body) {
				fail("a body with NUL or invalid UTF-8")
				return
			}
			var v structpb.Value
			if err := protojson.Unmarshal(body, &v); err != nil {
				if strings.Contains(err.Error(), "recursion") {
					fail("a body nested too deep")
					return
				}
				writeError(w, http.StatusBadRequest, "syntax")
				return
			}
			if depth, nul := walkValue(&v); depth > maxJSONDepth || nul {
				fail("a deep body or a NUL in its text")
				return
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	return s.middleware(backend)
}

func bad(s string) bool { return !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 }

// walkValue returns the nesting depth of v and whether any key or string holds NUL.
func walkValue(v *structpb.Value) (int, bool) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return 0, bad(k.StringValue)
	case *structpb.Value_StructValue:
		max, nul := 0, false
		for key, f := range k.StructValue.GetFields() {
			d, n := walkValue(f)
			max, nul = maxInt(max, d), nul || n || bad(key)
		}
		return max + 1, nul
	case *structpb.Value_ListValue:
		max, nul := 0, false
		for _, e := range k.ListValue.GetValues() {
			d, n := walkValue(e)
			max, nul = maxInt(max, d), nul || n
		}
		return max + 1, nul
	}
	return 0, false
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// FuzzRequest: whatever the method, path, query and body, the gateway's
// middleware never answers 5xx and never lets the backend see input it must
// refuse. Run it: go test -run '^$' -fuzz '^FuzzRequest$' -fuzztime 20s ./internal/server
func FuzzRequest(f *testing.F) {
	seeds := []struct {
		method      uint8
		path, query string
		body        []byte
	}{
		{1, "/api/teams", "", []byte("{\"id\":\"t\",\"name\":\"a\x00b\"}")},
		{1, "/api/teams", "", []byte(`{"id":"t","name":"a\u0000b"}`)},
		{2, "/api/teams/t", "", []byte("{\"description\":\"\xff\"}")},
		{1, "/api/tokens", "", []byte(`{"name":"\ud800"}`)},
		{1, "/api/tokens", "", []byte(`{"name":"\ud83d\ude00 ok"}`)},
		{1, "/api/routes", "", []byte(`{"name":"r","backend_auth_config":` + nested(3000) + `}`)},
		{1, "/api/tokens", "", []byte(strings.Repeat("[", 5000))},
		{0, "/api/usage/route", "route_path=%00", nil},
		{0, "/api/dashboard/audit-logs", "action=%ff&limit=0x10", nil},
		{0, "/api/dashboard/audit-logs/export", "actor=%ff", nil},
		{0, "/api/teams/%ff", "", nil},
		{0, "/api/teams/%00/members", "", nil},
		{2, "/api/users/%ff/team-role", "", []byte(`{"team_id":"t","role":"ADMIN"}`)},
		{3, "/api/users/u/team-membership/%ff", "", nil},
		{3, "/api/invitations/%ff", "", nil},
		{3, "/api/admin-keys/%ff", "", nil},
		{3, "/api/tokens/0x1", "", nil},
		{2, "/api/tokens/+1", "", []byte(`{"name":"x"}`)},
		{0, "/api/tokens/010/reveal", "", nil},
		{1, "/api/tokens/1_0/rotate", "", []byte(`{}`)},
		{3, "/api/tokens/%201", "", nil},
		{3, "/api/tokens/99999999999999999999", "", nil},
		{2, "/api/routes/0x1", "", []byte(`{"name":"x"}`)},
		{0, "/api/usage/token/0x1", "", nil},
		{3, "/api/tokens/1", "", nil},
		{0, "/api/tokens/-1/reveal", "", nil},
		{1, "/api/usage-log", "", []byte("{\"route\":\"\x00\"}")},
		{0, "/api/routes/tags", "", nil},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, s.body)
	}
	h := newFuzzChain(f)
	f.Fuzz(func(t *testing.T, method uint8, path, query string, body []byte) {
		target := "/" + strings.TrimPrefix(path, "/")
		if query != "" {
			target += "?" + query
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || u.Host != "" || u.Scheme != "" {
			t.Skip() // net/http refuses such a request line itself
		}
		req := httptest.NewRequest(fuzzMethods[int(method)%len(fuzzMethods)], "/", bytes.NewReader(body))
		req.URL, req.RequestURI = u, target
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q body %q: %d %s", req.Method, target, body, rec.Code, rec.Body)
		}
	})
}
