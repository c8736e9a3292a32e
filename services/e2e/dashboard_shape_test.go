package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
)

// TestDashboardCalls walks the calls v2.7's dashboard makes (contract §7.2,
// one entry per call, in the table's order) against a stack holding one of
// everything the pages show — a team with a member, a route, a token that
// expires soon and was edited, usage of it — and checks every answer
// against the shape §1 and §8 give it: the keys the dashboard reads are
// there, with the JSON types it handles (numbers it formats are never
// null, lists are bare arrays where §7.1 says so, the audit details keys
// it renders as text are strings). A list the world fills must not be
// empty, so the elements' shape is really checked.
//
// The deliberate divergences are asserted as such: /api/stats needs a
// credential (anonymous is 401, README "Compatibility with v2.7").
func TestDashboardCalls(t *testing.T) {
	s := startStack(t, withEnv("usage", "USAGE_INGEST_SECRET="+e2eIngestSecret))
	const (
		admin  = "user_dash_admin"
		member = "user_dash_member"
		team   = "dash-team"
	)
	s.clerk.AddUser(authtest.FakeUser{ID: admin, Email: "dashadmin@example.com", FirstName: "Dash", LastName: "Admin", CreatedAt: 1761000000000})
	s.clerk.AddUser(authtest.FakeUser{ID: member, Email: "dashmember@example.com", FirstName: "Dash", LastName: "Member", CreatedAt: 1761000000000})
	s.exec(t, `INSERT INTO team.global_roles (user_id, role) VALUES ($1, 'ADMIN')`, admin)
	bearer := func() string { return s.clerk.SessionToken(t, admin) } // they live a minute: one per call

	// The world, made through the dashboard's own write calls (§7.2:
	// "status only" unless noted).
	s.teamMust(t, 200, "POST", "/api/teams", bearer(), `{"id":"`+team+`","name":"Dash Team","description":"d","color":"#3b82f6","icon":"👥"}`)
	s.teamMust(t, 200, "PUT", "/api/teams/"+team, bearer(), `{"name":"Dash Team","description":"dashboard","color":"#3b82f6","icon":"👥"}`)
	s.teamMust(t, 200, "GET", "/api/users", bearer(), "")
	s.teamMust(t, 200, "POST", "/api/users/"+member+"/team-membership", bearer(), `{"team_id":"`+team+`","role":"VIEWER"}`)
	s.teamMust(t, 200, "PUT", "/api/users/"+member+"/team-role", bearer(), `{"team_id":"`+team+`","role":"DEVELOPER"}`)
	route := s.teamMust(t, 200, "POST", "/api/routes", bearer(), `{"name":"Dash","path":"/api/dash","backend_url":"https://dash.example.com",
		"description":"dashboard route","tags":["dash"],"backend_auth_type":"none","backend_auth_config":null,"backend_auth_secrets":null}`)
	routeID := jsonField(t, route.Body, "id")
	s.teamMust(t, 200, "PUT", "/api/routes/"+routeID, bearer(), `{"name":"Dash","backend_url":"https://dash.example.com","description":"the dashboard route",
		"tags":["dash"],"backend_auth_type":"none","backend_auth_config":null}`)
	created := s.teamMust(t, 200, "POST", "/api/tokens", bearer(), `{"name":"dash-token","team_id":"`+team+`","description":"for the dashboard",
		"scopes":["tag:dash"],"expires_days":10}`)
	check(t, "POST /api/tokens", created.Body, obj{"id": "number", "token": "string", "name": "string", "team_id": "string", "scopes": list{"string"}})
	tokenID, plain := jsonField(t, created.Body, "id"), jsonField(t, created.Body, "token")
	s.teamMust(t, 200, "PUT", "/api/tokens/"+tokenID, bearer(), `{"name":"dash-token-2","description":"edited","scopes":["tag:dash"]}`)
	// Usage of the token, as the Worker reports it.
	usage, _ := json.Marshal(map[string]any{"event_id": "dash-1", "token_hash": tokenHash(plain), "route": "/api/dash",
		"timestamp": time.Now().Add(-time.Minute).UnixMilli(), "response_status": 200, "response_time_ms": 42, "ip_address": "203.0.113.7",
		"user_agent": "n8n", "request_method": "POST", "error_message": nil})
	if r := s.postUsage(usage, e2eIngestSecret); r.Status != 200 {
		t.Fatalf("usage: %d %s", r.Status, r.Body)
	}
	// The audit events arrive through the outboxes.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var page struct{ Total int }
		_ = json.Unmarshal(s.teamMust(t, 200, "GET", "/api/dashboard/audit-logs?limit=1", s.adminKey, "").Body, &page)
		if page.Total >= 7 { // team ×2, membership ×2 (+ the creator's), route ×2, token ×2
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit events have not arrived: %d", page.Total)
		}
		time.Sleep(100 * time.Millisecond)
	}

	details := detailsShape{}
	logRow := obj{"action": "string", "entity_type": "string", "entity_id": "string|number", "created_at": "time", "details": details}
	usageOverview := obj{"total_calls": "number", "total_errors": "number", "avg_response_time": "number", "success_rate": "number"}
	tokenRow := obj{"id": "number", "name": "string", "team_id": "string|null", "description": "string|null", "scopes": list{"string"},
		"created_at": "time", "expires_at": "time|null"}
	routeRow := obj{"id": "number", "name": "string", "path": "string", "description": "string|null", "tags": list{"string"},
		"backend_url": "string", "backend_auth_type": "string", "backend_auth_config": "object|null", "created_at": "time"}
	usageStats := obj{
		"overview":     usageOverview,
		"hourly_usage": list{obj{"hour": "time", "call_count": "number", "avg_response_time": "number"}},
		"top_tokens": list{obj{"id": "number", "name": "string", "team_id": "string|null", "usage_count": "number",
			"success_rate": "number", "avg_response_time": "number", "last_used": "time|null"}},
		"top_routes": list{obj{"route_id": "number|null", "route_name": "string|null", "route_path": "string", "call_count": "number",
			"avg_response_time": "number", "success_rate": "number", "error_count": "number"}},
		"recent_logs": list{obj{"used_at": "time", "token_id": "number|null", "token_name": "string|null", "token_hash": "string",
			"route_path": "string|null", "request_method": "string|null", "response_status": "number|null", "response_time_ms": "number|null",
			"ip_address": "string|null"}},
	}
	calls := []struct {
		what, method, path string
		anonymous          bool
		want               shape
	}{
		{"Header: health dot", "GET", "/health", true, obj{"status": "string"}},
		{"Header search: tokens", "GET", "/api/tokens", false, list{tokenRow}},
		{"Header search: routes", "GET", "/api/routes", false, list{routeRow}},
		{"Dashboard", "GET", "/api/dashboard/overview", false, obj{
			"overview":       obj{"total_tokens": "number", "total_routes": "number", "total_teams": "number"},
			"token_trend":    list{obj{"date": "date", "count": "number"}},
			"tokens_by_team": list{obj{"team_name": "string", "count": "number"}},
			"expiring_soon":  list{obj{"id": "number", "name": "string", "team_name": "string", "expires_at": "time"}},
			"recent_logs":    list{logRow},
		}},
		{"Dashboard: usage", "GET", "/api/usage/stats", false, usageStats},
		{"Audit logs page", "GET", "/api/dashboard/audit-logs?limit=50&offset=0", false, obj{"total": "number",
			"data": list{obj{"id": "number", "created_at": "time", "action": "string", "entity_type": "string", "entity_id": "string|number", "details": details}}}},
		{"Audit logs page, filtered", "GET", "/api/dashboard/audit-logs?limit=50&offset=0&action=update&entity_type=token", false, obj{"total": "number",
			"data": list{obj{"id": "number", "created_at": "time", "action": "string", "entity_type": "string", "entity_id": "string|number", "details": details}}}},
		{"System health page", "GET", "/health/detailed", true, obj{"status": "string", "version": "string", "service": "string", "timestamp": "time",
			"checks": obj{"database": check2, "cloudflare_kv": check2, "clerk": check2}}},
		{"Token usage detail", "GET", "/api/usage/token/" + tokenID + "?limit=100", false, obj{
			"token": obj{"id": "number", "name": "string", "team_id": "string|null"},
			"stats": obj{"total_calls": "number", "error_count": "number", "avg_response_time": "number|null"},
			"recent_usage": list{obj{"id": "number", "used_at": "time", "route_path": "string|null", "request_method": "string|null",
				"response_status": "number|null", "response_time_ms": "number|null", "ip_address": "string|null"}},
			"route_distribution": list{obj{"route_id": "number|null", "route_name": "string|null", "route_path": "string|null", "count": "number"}},
		}},
		{"Route usage detail", "GET", "/api/usage/route?route_path=" + url.QueryEscape("/api/dash") + "&limit=100", false, obj{
			"stats": obj{"total_calls": "number", "error_count": "number", "avg_response_time": "number|null"},
			"usage_logs": list{obj{"id": "number", "used_at": "time", "token_hash": "string", "request_method": "string|null",
				"response_status": "number|null", "response_time_ms": "number|null", "ip_address": "string|null"}},
			"token_distribution": list{obj{"token_id": "number|null", "token_name": "string|null", "count": "number"}},
		}},
		{"Stats page (with a credential: a divergence)", "GET", "/api/stats", false, obj{"total_tokens": "number", "total_routes": "number",
			"recent_activity": list{obj{"created_at": "time", "action": "string", "entity_type": "string", "details": jsonString{details}}}}},
		{"Token list: teams", "GET", "/api/teams", false, list{obj{"id": "string", "name": "string", "description": "string|null",
			"color": "string|null", "icon": "string|null", "member_count": "number"}}},
		{"Token list: tags", "GET", "/api/routes/tags", false, obj{"tags": list{"string"}}},
		{"Token list: copy", "GET", "/api/tokens/" + tokenID + "/reveal", false, obj{"token": "string"}},
		{"Edit team modal: members", "GET", "/api/teams/" + team + "/members", false, list{obj{"id": "string", "email": "string|null",
			"firstName": "string|null", "lastName": "string|null", "imageUrl": "string|null", "role": "string"}}},
		{"User management", "GET", "/api/users", false, list{obj{"id": "string", "email": "string|null", "firstName": "string|null",
			"lastName": "string|null", "imageUrl": "string|null", "publicMetadata": obj{"tokenManager:teamRoles": "object"},
			"lastSignInAt": "number|null"}}},
	}
	for _, c := range calls {
		t.Run(c.what, func(t *testing.T) {
			b := ""
			if !c.anonymous {
				b = bearer()
			}
			r := send(t, c.method, s.url+c.path, b, "", nil)
			if r.Status != 200 {
				t.Fatalf("%s %s: %d %s", c.method, c.path, r.Status, r.Body)
			}
			check(t, c.method+" "+c.path, r.Body, c.want)
		})
	}

	t.Run("Stats page without a credential is 401 (a divergence)", func(t *testing.T) {
		if r := s.do("GET", "/api/stats", "", nil); r.Status != 401 {
			t.Errorf("anonymous GET /api/stats: %d %s", r.Status, r.Body)
		}
	})

	// The remaining write calls of §7.2, in an order where each finds what
	// it needs: status 200 and a JSON body.
	for _, w := range []struct{ method, path, body string }{
		{"POST", "/api/invitations", `{"email":"dash-invitee@example.com","team_roles":{"` + team + `":"VIEWER"}}`},
		{"DELETE", "/api/tokens/" + tokenID, ""},
		{"DELETE", "/api/routes/" + routeID, ""},
		{"DELETE", "/api/users/" + member + "/team-membership/" + team, ""},
	} {
		r := send(t, w.method, s.url+w.path, bearer(), w.body, nil)
		var v any
		if r.Status != 200 || json.Unmarshal(r.Body, &v) != nil {
			t.Errorf("%s %s: %d %s", w.method, w.path, r.Status, r.Body)
		}
	}
}

// check2 is a /health/detailed check.
var check2 = obj{"status": "string", "message": "string"}

// shape is what a JSON value must look like:
//   - a string naming its type: "string", "number", "bool", "object"
//     (any object), "time" (RFC 3339, parseable by date-fns parseISO),
//     "date" (YYYY-MM-DD), each optionally "|null", or "string|number";
//   - obj: an object with at least these keys (a key starting with "?" may
//     be absent);
//   - list: a bare JSON array, not empty, every element of the given shape;
//   - emptyOK: a bare JSON array, maybe empty, every element of the shape;
//   - jsonString: a string holding the JSON of the given shape;
//   - detailsShape: audit details as the dashboard renders them.
type (
	shape        any
	obj          map[string]shape
	list         [1]shape
	emptyOK      [1]shape
	jsonString   [1]shape
	detailsShape struct{}
)

var (
	timeRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$`)
	dateRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
)

// check reports where body does not have shape want.
func check(t *testing.T, name string, body []byte, want shape) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: not JSON: %s", name, body)
	}
	for _, p := range mismatches("$", v, want) {
		t.Errorf("%s: %s", name, p)
	}
}

func mismatches(at string, v any, want shape) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, at+": "+fmt.Sprintf(format, args...)) }
	switch w := want.(type) {
	case string:
		for _, alt := range strings.Split(w, "|") {
			if typeIs(v, alt) {
				return nil
			}
		}
		bad("%T %v is not %s", v, v, w)
	case obj:
		m, ok := v.(map[string]any)
		if !ok {
			bad("%T is not an object", v)
			return out
		}
		for k, ws := range w {
			key, optional := strings.CutPrefix(k, "?")
			item, present := m[key]
			if !present {
				if !optional {
					bad("key %q is missing", key)
				}
				continue
			}
			out = append(out, mismatches(at+"."+key, item, ws)...)
		}
	case list:
		a, ok := v.([]any)
		if !ok {
			bad("%T is not a bare JSON array", v)
			return out
		}
		if len(a) == 0 {
			bad("empty: the test world should fill it, so its elements can be checked")
		}
		for i, item := range a {
			out = append(out, mismatches(fmt.Sprintf("%s[%d]", at, i), item, w[0])...)
		}
	case emptyOK:
		if _, ok := v.([]any); !ok {
			bad("%T is not a JSON array", v)
			return out
		}
		for i, item := range v.([]any) {
			out = append(out, mismatches(fmt.Sprintf("%s[%d]", at, i), item, w[0])...)
		}
	case jsonString:
		s, ok := v.(string)
		var inner any
		if !ok || json.Unmarshal([]byte(s), &inner) != nil {
			bad("%T %v is not a JSON-encoded string", v, v)
			return out
		}
		out = append(out, mismatches(at+"(decoded)", inner, w[0])...)
	case detailsShape:
		out = append(out, detailsMismatches(at, v)...)
	default:
		bad("unknown shape %T", want)
	}
	return out
}

func typeIs(v any, typ string) bool {
	switch typ {
	case "null":
		return v == nil
	case "string":
		_, ok := v.(string)
		return ok
	case "number":
		_, ok := v.(float64)
		return ok
	case "bool":
		_, ok := v.(bool)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "time":
		s, ok := v.(string)
		return ok && timeRE.MatchString(s)
	case "date":
		s, ok := v.(string)
		return ok && dateRE.MatchString(s)
	}
	return false
}

// detailsMismatches checks audit details as the dashboard renders a row
// (§7.2 recent_logs[].details.{name,path,team_name,scopes,description,
// backend_url,tags,*_by_email}; §8): an object, a string name, the other
// text keys strings when present, scopes and tags lists of strings, and
// the operator under exactly one of the *_by_email keys.
func detailsMismatches(at string, v any) []string {
	d, ok := v.(map[string]any)
	if !ok {
		return []string{fmt.Sprintf("%s: details %T is not an object", at, v)}
	}
	want := obj{"name": "string"}
	for _, k := range dashboardText[1:] {
		want["?"+k] = "string"
	}
	for _, k := range dashboardLists {
		want["?"+k] = emptyOK{"string"}
	}
	out := mismatches(at, d, want)
	var operators []string
	for _, k := range []string{"created_by_email", "updated_by_email", "deleted_by_email"} {
		if _, ok := d[k]; ok {
			operators = append(operators, k)
		}
	}
	if len(operators) != 1 {
		out = append(out, fmt.Sprintf("%s: the operator is under %v, want exactly one *_by_email key (%v)", at, operators, d))
	}
	if n, isString := d["name"].(string); isString && n == "" {
		out = append(out, fmt.Sprintf("%s: details.name is empty: the dashboard shows \"deleted resource\"", at))
	}
	return out
}
