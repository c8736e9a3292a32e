package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tokenmanager/tokenmanager/gateway"
)

// TestInputRoutesCoverIntParams proves the input check's table is derived
// from every route: each integer path parameter is known, string ones are not.
func TestInputRoutesCoverIntParams(t *testing.T) {
	routes, err := gateway.Routes()
	if err != nil {
		t.Fatal(err)
	}
	table := newPatterns(routes)
	got := map[string]bool{}
	for _, r := range table {
		for i, spec := range r.intParam {
			got[r.method+" /"+strings.Join(r.segments, "/")+" "+spec.name] = true
			if r.segments[i] != "{"+spec.name+"}" {
				t.Errorf("segment %d of %v is not {%s}", i, r.segments, spec.name)
			}
		}
	}
	for _, want := range []string{
		"PUT /api/tokens/{id} id", "DELETE /api/tokens/{id} id", "GET /api/tokens/{id}/reveal id",
		"POST /api/tokens/{id}/rotate id", "PUT /api/routes/{id} id", "DELETE /api/routes/{id} id",
		"GET /api/usage/token/{token_id} token_id",
	} {
		if !got[want] {
			t.Errorf("integer path parameter not checked: %s (have %v)", want, got)
		}
	}
	for k := range got {
		for _, str := range []string{"team_id", "user_id", "invitation_id"} {
			if strings.HasSuffix(k, " "+str) {
				t.Errorf("string parameter treated as an integer: %s", k)
			}
		}
	}
	if r := matchPattern(table, "GET", []string{"api", "dashboard", "audit-logs"}); r == nil || r.intQuery["limit"].bits != 32 || r.intQuery["offset"].bits != 32 {
		t.Errorf("audit-logs limit/offset not checked as integers: %+v", r)
	}
}

func TestStrictInt(t *testing.T) {
	for v, ok := range map[string]bool{
		"0": true, "1": true, "42": true, "-1": true, "9223372036854775807": true,
		"": false, "+1": false, "0x1": false, "0X1": false, "0b1": false, "0o7": false, "010": false, "00": false,
		"-0": false, "1_000": false, " 1": false, "1 ": false, "1.5": false, "1e3": false, "abc": false,
		"9223372036854775808": false, "99999999999999999999": false, "-": false, "--1": false, "١": false,
	} {
		if got := strictInt(v, 64); got != ok {
			t.Errorf("strictInt(%q, 64) = %v, want %v", v, got, ok)
		}
	}
	if strictInt("2147483648", 32) || !strictInt("2147483647", 32) || strictInt("-1", -64) {
		t.Error("strictInt range checks")
	}
}

func nested(depth int) string {
	return strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
}

// TestHostileInput: what once reached the services and came back 500 is
// refused by the gateway with 400 and {"detail": "..."} before any RPC; the
// fakes behind it answer 200 or 501 (unimplemented), so anything that slips
// through shows.
func TestHostileInput(t *testing.T) {
	h := newHarness(t)
	const secret = "ntk_SECRETVALUE"
	cases := []struct {
		name, method, path, body string
		want                     int
		detail                   string // a part of the detail
	}{
		// JSON text fields.
		{"raw NUL in team name", "POST", "/api/teams", "{\"id\":\"t\",\"name\":\"a\x00b\"}", 400, "NUL"},
		{"escaped NUL in team name", "POST", "/api/teams", `{"id":"t","name":"a\u0000b"}`, 400, `field "name" contains a NUL`},
		{"escaped NUL in description", "PUT", "/api/teams/t", `{"description":"` + secret + `\u0000"}`, 400, `field "description"`},
		{"invalid UTF-8 in description", "PUT", "/api/teams/t", "{\"description\":\"" + secret + "\xff\"}", 400, `field "description" is not valid UTF-8`},
		{"invalid UTF-8 in token name", "POST", "/api/tokens", "{\"name\":\"\xc3\x28\"}", 400, "not valid UTF-8"},
		{"lone surrogate escape", "POST", "/api/tokens", `{"name":"\ud800"}`, 400, "surrogate"},
		{"reversed surrogates", "POST", "/api/tokens", `{"name":"\udc00\ud800"}`, 400, "surrogate"},
		{"NUL in a field name", "POST", "/api/tokens", `{"na\u0000me":"x"}`, 400, "field name"},
		{"NUL in an array element", "POST", "/api/tokens", `{"name":"x","scopes":["a","b\u0000"]}`, 400, `"scopes[1]"`},
		{"NUL nested in auth config", "POST", "/api/routes", `{"name":"r","backend_auth_config":{"header":"\u0000"}}`, 400, `"backend_auth_config.header"`},
		{"invalid UTF-8 outside strings", "POST", "/api/tokens", "{\"name\":\"x\"\xff}", 400, "not valid UTF-8"},
		{"deep nesting", "POST", "/api/routes", `{"name":"r","backend_auth_config":` + nested(300) + `}`, 400, "nested deeper than 64"},
		{"deep arrays", "POST", "/api/tokens", strings.Repeat("[", 1500), 400, "nested deeper than 64"},
		{"65 levels", "POST", "/api/tokens", nested(65), 400, "nested deeper"},
		// Query parameters.
		{"NUL in route_path", "GET", "/api/usage/route?route_path=%00", "", 400, `Invalid query parameter "route_path" contains a NUL`},
		{"invalid UTF-8 in audit action", "GET", "/api/dashboard/audit-logs?action=%ff", "", 400, `"action" is not valid UTF-8`},
		{"invalid UTF-8 in audit actor", "GET", "/api/dashboard/audit-logs?actor=%ff%fe", "", 400, `"actor"`},
		{"invalid UTF-8 in export filter", "GET", "/api/dashboard/audit-logs/export?entity_type=%ff", "", 400, `"entity_type"`},
		{"invalid UTF-8 in query name", "GET", "/api/tokens?%ff=1", "", 400, "parameter name"},
		{"hex limit", "GET", "/api/dashboard/audit-logs?limit=0x10", "", 400, `"limit" must be a decimal integer`},
		{"octal offset", "GET", "/api/dashboard/audit-logs?offset=010", "", 400, `"offset"`},
		{"bad query escape", "GET", "/api/tokens?x=%zz", "", 400, "percent-encoding"},
		// Path segments.
		{"team %ff", "GET", "/api/teams/%ff", "", 400, "segment 3 is not valid UTF-8"},
		{"team %00", "DELETE", "/api/teams/%00", "", 400, "NUL"},
		{"team members %ff", "GET", "/api/teams/%ff/members", "", 400, "not valid UTF-8"},
		{"user %ff", "PUT", "/api/users/%ff/team-role", `{"team_id":"t","role":"ADMIN"}`, 400, "not valid UTF-8"},
		{"membership team %ff", "DELETE", "/api/users/u/team-membership/%ff", "", 400, "segment 5"},
		{"invitation %ff", "DELETE", "/api/invitations/%ff", "", 400, "not valid UTF-8"},
		{"admin key %ff", "DELETE", "/api/admin-keys/%ff", "", 400, "not valid UTF-8"},
		{"unknown path %00", "GET", "/api/nothing/%00", "", 400, "NUL"},
		// Integer ids: strict decimal on every int64 path parameter.
		{"hex token id", "DELETE", "/api/tokens/0x1", "", 400, `path parameter "id" must be a decimal integer`},
		{"plus token id", "PUT", "/api/tokens/+1", `{"name":"x"}`, 400, `"id"`},
		{"octal token id", "GET", "/api/tokens/010/reveal", "", 400, `"id"`},
		{"underscore token id", "POST", "/api/tokens/1_0/rotate", `{}`, 400, `"id"`},
		{"space token id", "DELETE", "/api/tokens/%201", "", 400, `"id"`},
		{"overflow token id", "DELETE", "/api/tokens/9223372036854775808", "", 400, `"id"`},
		{"hex route id", "PUT", "/api/routes/0x1", `{"name":"x"}`, 400, `"id"`},
		{"hex route id delete", "DELETE", "/api/routes/0X1", "", 400, `"id"`},
		{"hex usage token id", "GET", "/api/usage/token/0x1", "", 400, `"token_id"`},
		// What must still pass (the fakes answer).
		{"ok: create token", "POST", "/api/tokens", `{"name":"名前 😀 \u00e9\ud83d\ude00 \"q\" \\"}`, 200, ""},
		{"ok: 64 levels", "POST", "/api/tokens", nested(64), 400, "unknown field"},
		{"ok: list tokens", "GET", "/api/tokens?limit=10", "", 200, ""},
		{"ok: decimal id", "DELETE", "/api/tokens/1", "", 501, ""},
		{"ok: negative id", "GET", "/api/tokens/-1/reveal", "", 501, ""},
		{"ok: escaped decimal id", "DELETE", "/api/tokens/%31", "", 501, ""},
		{"ok: route tags literal", "GET", "/api/routes/tags", "", 501, ""},
		{"ok: unicode team id", "GET", "/api/teams/%C3%A9quipe", "", 501, ""},
		{"ok: usage-log body is raw", "POST", "/api/usage-log", "{\"route\":\"\\u0000\"}", 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := h.do(t, tc.method, tc.path, tc.body, map[string]string{"Origin": "https://token.example.com"})
			if rec.Code != tc.want {
				t.Fatalf("%s %s: status %d, want %d; body %s", tc.method, tc.path, rec.Code, tc.want, rec.Body)
			}
			if rec.Header().Get("Access-Control-Allow-Origin") == "" {
				t.Error("no CORS headers on the answer")
			}
			if tc.want != 400 {
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var body struct {
				Detail string `json:"detail"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if !strings.Contains(body.Detail, tc.detail) {
				t.Errorf("detail %q does not contain %q", body.Detail, tc.detail)
			}
			if strings.Contains(body.Detail, secret) || strings.Contains(body.Detail, "\x00") {
				t.Errorf("detail echoes the value: %q", body.Detail)
			}
		})
	}
}

// TestHostileInputBodyLimit: the input check reads the body under the limit
// middleware's bound, so an undeclared length still answers 413.
func TestHostileInputBodyLimit(t *testing.T) {
	h := newHarness(t)
	req := strings.NewReader(`{"name":"` + strings.Repeat("x", 4096) + `"}`)
	r, _ := http.NewRequest("POST", "/api/tokens", req)
	r.ContentLength = -1
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, r)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413: %s", rec.Code, rec.Body)
	}
}
