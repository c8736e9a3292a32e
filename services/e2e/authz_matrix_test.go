package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
)

// The authorization matrix: every REST endpoint of the gateway × every kind
// of caller → the status it must get. The endpoints come from the gateway's
// route table (gateway/http_rules.yaml plus the two hand-written routes), so
// an endpoint added without an entry in matrixExpectations fails the test.

// caller is a kind of caller of the matrix.
type caller string

const (
	noCredential caller = "no credential"
	malformedJWT caller = "malformed JWT"
	expiredJWT   caller = "expired JWT"
	foreignAZP   caller = "foreign azp"
	revokedKey   caller = "revoked admin key"
	viewer       caller = "VIEWER"
	developer    caller = "DEVELOPER"
	manager      caller = "MANAGER"
	teamAdmin    caller = "ADMIN of the team"
	otherAdmin   caller = "ADMIN of another team"
	globalAdmin  caller = "global ADMIN"
	adminKey     caller = "admin key"
)

var (
	allCallers = []caller{noCredential, malformedJWT, expiredJWT, foreignAZP, revokedKey,
		viewer, developer, manager, teamAdmin, otherAdmin, globalAdmin, adminKey}
	// unauthenticated callers get 401 from every non-anonymous endpoint.
	unauthenticated = []caller{noCredential, malformedJWT, expiredJWT, foreignAZP, revokedKey}
	// Convenient sets for the allow lists.
	everyone      = []caller{viewer, developer, manager, teamAdmin, otherAdmin, globalAdmin, adminKey}
	teamMembers   = []caller{viewer, developer, manager, teamAdmin, globalAdmin, adminKey}
	teamManagers  = []caller{manager, teamAdmin, globalAdmin, adminKey}
	teamAdmins    = []caller{teamAdmin, globalAdmin, adminKey}
	globalOnly    = []caller{globalAdmin, adminKey}
	someTeamAdmin = []caller{teamAdmin, otherAdmin, globalAdmin, adminKey}
	// outsiders hold no role in the matrix team.
	outsiders = []caller{otherAdmin}
)

// The matrix's world: the resource's team, another team, and people.
const (
	matrixTeam = "matrix-team"
	otherTeam  = "other-team"
)

// expectation is what one endpoint answers each caller.
type expectation struct {
	// implemented is false for endpoints whose service answers
	// Unimplemented today: then every authenticated caller gets 501. When
	// the service lands, flip it to true and the allow list applies.
	implemented bool
	// anonymous endpoints need no credential: every caller gets okStatus.
	anonymous bool
	// allow lists the callers authorization lets through (they get
	// okStatus); every other authenticated caller gets denyStatus.
	allow []caller
	// hidden are the callers outside the resource's teams: they get 404,
	// so that a refusal does not tell them who owns the id.
	hidden []caller
	// okStatus is what allowed callers get (default 200). Probing requests
	// that are authorized but refused later (a nonexistent id, a team that
	// still has members) say so here (404, 400), which keeps the matrix
	// free of side effects.
	okStatus int
	// denyStatus is what refused callers get (default 403).
	denyStatus int
	// path is the concrete path (default: the template). body builds the
	// request body for a caller (default none).
	path string
	body func(c caller) string
	// unauthStatus overrides 401 for unauthenticated callers (an anonymous
	// endpoint with its own signature check, say).
	unauthStatus int
	// todayStatus overrides 501 as the answer of a not-yet-implemented
	// endpoint to authenticated callers.
	todayStatus int
}

// slug makes a caller usable in ids and e-mail addresses.
func slug(c caller) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, string(c))
}

// matrixExpectations is the expected matrix, one entry per endpoint
// ("METHOD /template").
var matrixExpectations = map[string]expectation{
	// Health (anonymous).
	"GET /health":          {implemented: true, anonymous: true},
	"GET /health/detailed": {implemented: true, anonymous: true},

	// Tokens and routes (token service). Authorization per
	// services/internal/authz. {token} is a token of the matrix team;
	// {fresh-token} a new one per caller, for requests that consume it.
	// Likewise routes.
	"POST /api/tokens": {implemented: true, allow: []caller{developer, manager, teamAdmin, globalAdmin, adminKey},
		body: func(c caller) string {
			return fmt.Sprintf(`{"name":"m-%s","team_id":"%s","scopes":["*"],"expires_days":30}`, slug(c), matrixTeam)
		}},
	"GET /api/tokens":              {implemented: true, allow: everyone},
	"PUT /api/tokens/{id}":         {implemented: true, allow: teamManagers, hidden: outsiders, path: "/api/tokens/{token}", body: func(caller) string { return `{"name":"renamed"}` }},
	"DELETE /api/tokens/{id}":      {implemented: true, allow: teamManagers, hidden: outsiders, path: "/api/tokens/{fresh-token}"},
	"GET /api/tokens/{id}/reveal":  {implemented: true, allow: teamManagers, hidden: outsiders, path: "/api/tokens/{token}/reveal"},
	"POST /api/tokens/{id}/rotate": {implemented: true, allow: teamManagers, hidden: outsiders, path: "/api/tokens/{fresh-token}/rotate", body: func(caller) string { return `{}` }},
	// Routes are governed by roles in core-team, which only the global
	// ADMIN and the admin key hold here.
	"POST /api/routes": {implemented: true, allow: globalOnly, body: func(c caller) string {
		return fmt.Sprintf(`{"name":"r","path":"/m-%s","backend_url":"https://example.com"}`, slug(c))
	}},
	"GET /api/routes":         {implemented: true, allow: everyone},
	"GET /api/routes/tags":    {implemented: true, allow: everyone},
	"PUT /api/routes/{id}":    {implemented: true, allow: globalOnly, path: "/api/routes/{route}", body: func(caller) string { return `{"name":"r2"}` }},
	"DELETE /api/routes/{id}": {implemented: true, allow: globalOnly, path: "/api/routes/{fresh-route}"},

	// Usage and the dashboard (usage service).
	"GET /api/dashboard/overview":     {implemented: true, allow: everyone},
	"GET /api/usage/stats":            {implemented: true, allow: everyone},
	"GET /api/usage/token/{token_id}": {implemented: true, allow: teamManagers, path: "/api/usage/token/{token}"},
	"GET /api/usage/route":            {implemented: true, allow: everyone, path: "/api/usage/route?route_path=%2Fapi%2Fx"},
	// The Worker's endpoint needs no credential but an HMAC signature: an
	// unsigned post is 401 whoever sends it (USAGE_ALLOW_UNSIGNED is off).
	"POST /api/usage-log": {implemented: true, anonymous: true, okStatus: 401,
		body: func(caller) string { return `{"token_hash":"x","route":"/api/x","timestamp":0}` }},

	// Audit.
	"GET /api/dashboard/audit-logs":        {implemented: true, allow: everyone},
	"GET /api/dashboard/audit-logs/verify": {implemented: true, allow: globalOnly},
	"GET /api/dashboard/audit-logs/export": {implemented: true, allow: everyone},
	"GET /api/stats":                       {implemented: true, allow: everyone},

	// Teams (this issue).
	"GET /api/teams": {implemented: true, allow: everyone},
	"POST /api/teams": {implemented: true, allow: someTeamAdmin,
		body: func(c caller) string { return fmt.Sprintf(`{"id":"m-%s","name":"Matrix %s"}`, slug(c), c) }},
	"GET /api/teams/{team_id}": {implemented: true, allow: teamMembers, path: "/api/teams/" + matrixTeam},
	"PUT /api/teams/{team_id}": {implemented: true, allow: teamAdmins, path: "/api/teams/" + matrixTeam,
		body: func(caller) string { return `{"description":"the matrix team"}` }},
	// Authorized callers are refused for a reason that changes nothing: the team has members.
	"DELETE /api/teams/{team_id}":      {implemented: true, allow: teamAdmins, okStatus: 400, path: "/api/teams/" + matrixTeam},
	"GET /api/teams/{team_id}/members": {implemented: true, allow: teamMembers, path: "/api/teams/" + matrixTeam + "/members"},
	"GET /api/users":                   {implemented: true, allow: []caller{manager, teamAdmin, otherAdmin, globalAdmin, adminKey}},
	// Setting the target's VIEWER role again: allowed callers change nothing.
	"PUT /api/users/{user_id}/team-role": {implemented: true, allow: teamManagers, path: "/api/users/user_target/team-role",
		body: func(caller) string { return `{"team_id":"` + matrixTeam + `","role":"VIEWER"}` }},
	"POST /api/users/{user_id}/team-membership": {implemented: true, allow: teamManagers, path: "/api/users/user_target/team-membership",
		body: func(caller) string { return `{"team_id":"` + matrixTeam + `","role":"VIEWER"}` }},
	// Removing someone who is not a member: authorized callers get 404.
	"DELETE /api/users/{user_id}/team-membership/{team_id}": {implemented: true, allow: teamManagers, okStatus: 404,
		path: "/api/users/user_nobody/team-membership/" + matrixTeam},
	// Inviting as VIEWER of the team: an ADMIN of another team may not grant it.
	"POST /api/invitations": {implemented: true, allow: teamAdmins,
		body: func(c caller) string {
			return fmt.Sprintf(`{"email":"m-%s@example.com","team_roles":{"%s":"VIEWER"}}`, slug(c), matrixTeam)
		}},
	"GET /api/invitations":                    {implemented: true, allow: globalOnly},
	"DELETE /api/invitations/{invitation_id}": {implemented: true, allow: globalOnly, okStatus: 404, path: "/api/invitations/inv_nope"},
	"POST /api/admin-keys":                    {implemented: true, allow: globalOnly, body: func(c caller) string { return fmt.Sprintf(`{"name":"m-%s"}`, slug(c)) }},
	"GET /api/admin-keys":                     {implemented: true, allow: globalOnly},
	"DELETE /api/admin-keys/{id}":             {implemented: true, allow: globalOnly, okStatus: 404, path: "/api/admin-keys/ak_nope"},
}

// want returns the status caller c must get from endpoint e.
func (e expectation) want(c caller) int {
	if e.anonymous {
		switch {
		case !e.implemented && e.todayStatus != 0:
			return e.todayStatus
		case !e.implemented:
			return 501
		}
		return cmpOr(e.okStatus, 200)
	}
	if slices.Contains(unauthenticated, c) {
		return cmpOr(e.unauthStatus, 401)
	}
	if !e.implemented {
		return cmpOr(e.todayStatus, 501)
	}
	if slices.Contains(e.allow, c) {
		return cmpOr(e.okStatus, 200)
	}
	if slices.Contains(e.hidden, c) {
		return 404
	}
	return cmpOr(e.denyStatus, 403)
}

func cmpOr(v, def int) int {
	if v != 0 {
		return v
	}
	return def
}

// matrixRoute is one REST endpoint of the gateway.
type matrixRoute struct{ Method, Path string }

// gatewayRoutes reads the gateway's route table: the HTTP rules plus the
// routes it serves with hand-written handlers (gateway/routes.go RawRoutes;
// this module may not import the gateway, so they are listed here too and
// compared with the rule file's header comment).
func gatewayRoutes(t *testing.T) []matrixRoute {
	t.Helper()
	raw, err := os.ReadFile("../../gateway/http_rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		HTTP struct {
			Rules []map[string]any `yaml:"rules"`
		} `yaml:"http"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("parse http_rules.yaml: %v", err)
	}
	var out []matrixRoute
	for _, r := range f.HTTP.Rules {
		found := false
		for _, m := range []string{"get", "post", "put", "delete", "patch"} {
			if p, ok := r[m].(string); ok {
				out = append(out, matrixRoute{strings.ToUpper(m), p})
				found = true
			}
		}
		if !found {
			t.Fatalf("http_rules.yaml: rule %v has no method", r["selector"])
		}
	}
	rawRoutes := []matrixRoute{{"POST", "/api/usage-log"}, {"GET", "/api/dashboard/audit-logs/export"}}
	words := strings.Join(strings.Fields(string(raw)), " ")
	for _, rr := range rawRoutes {
		if !strings.Contains(words, rr.Method+" "+rr.Path+" ") {
			t.Errorf("hand-written route %s %s is not listed in http_rules.yaml's header any more", rr.Method, rr.Path)
		}
	}
	out = append(out, rawRoutes...)
	sort.Slice(out, func(i, j int) bool { return out[i].Path+out[i].Method < out[j].Path+out[j].Method })
	return out
}

func TestAuthzMatrix(t *testing.T) {
	routes := gatewayRoutes(t)
	// Every endpoint has an expectation, and every expectation an endpoint.
	seen := map[string]bool{}
	for _, r := range routes {
		k := r.Method + " " + r.Path
		seen[k] = true
		if _, ok := matrixExpectations[k]; !ok {
			t.Errorf("endpoint %s has no entry in matrixExpectations: add one", k)
		}
	}
	for k := range matrixExpectations {
		if !seen[k] {
			t.Errorf("matrixExpectations has %s, which the gateway does not serve", k)
		}
	}
	if t.Failed() {
		return
	}

	s := startStack(t)
	defer func() {
		if t.Failed() {
			s.dumpLogs()
		}
	}()
	credential := setUpMatrix(t, s)
	w := &matrixWorld{t: t, s: s}
	w.token, w.route = w.newToken(), w.newRoute()

	probe := os.Getenv("MATRIX_PROBE") != ""
	for _, r := range routes {
		k := r.Method + " " + r.Path
		e := matrixExpectations[k]
		var got []string
		for _, c := range allCallers {
			path := w.expand(cmpStr(e.path, r.Path))
			body := ""
			if e.body != nil {
				body = e.body(c)
			}
			resp := s.teamReq(t, r.Method, path, credential(c), body)
			want := e.want(c)
			if probe {
				got = append(got, fmt.Sprintf("%s=%d", c, resp.Status))
				continue
			}
			if resp.Status != want {
				t.Errorf("%s as %s: %d %s, want %d", k, c, resp.Status, truncateBody(resp.Body), want)
				continue
			}
			if resp.Status >= 400 {
				var b struct {
					Detail *string `json:"detail"`
				}
				if json.Unmarshal(resp.Body, &b) != nil || b.Detail == nil {
					t.Errorf("%s as %s: %d without a {\"detail\"} body: %s", k, c, resp.Status, truncateBody(resp.Body))
				}
			}
		}
		if probe {
			t.Logf("%s: %s", k, strings.Join(got, " "))
		}
	}
}

func cmpStr(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

func truncateBody(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

// setUpMatrix creates the matrix's teams and people and returns each
// caller's credential.
func setUpMatrix(t *testing.T, s *stack) func(caller) string {
	t.Helper()
	for _, id := range []string{"user_viewer", "user_dev", "user_mgr", "user_admin", "user_other", "user_global", "user_target"} {
		s.clerk.AddUser(authtest.FakeUser{ID: id, Email: strings.TrimPrefix(id, "user_") + "@example.com", CreatedAt: 1761000000000})
	}
	key := s.adminKey
	s.teamMust(t, 200, "POST", "/api/teams", key, `{"id":"`+matrixTeam+`","name":"Matrix Team"}`)
	s.teamMust(t, 200, "POST", "/api/teams", key, `{"id":"`+otherTeam+`","name":"Other Team"}`)
	for _, m := range [][3]string{
		{"user_viewer", matrixTeam, "VIEWER"}, {"user_dev", matrixTeam, "DEVELOPER"}, {"user_mgr", matrixTeam, "MANAGER"},
		{"user_admin", matrixTeam, "ADMIN"}, {"user_other", otherTeam, "ADMIN"}, {"user_target", matrixTeam, "VIEWER"},
	} {
		s.teamMust(t, 200, "POST", "/api/users/"+m[0]+"/team-membership", key, fmt.Sprintf(`{"team_id":"%s","role":"%s"}`, m[1], m[2]))
	}
	s.exec(t, `INSERT INTO team.global_roles (user_id, role) VALUES ('user_global', 'ADMIN')`)

	// A key that existed and was revoked (before any service cached it).
	r := s.teamMust(t, 200, "POST", "/api/admin-keys", key, `{"name":"revoked","global_role":"ADMIN"}`)
	var created struct {
		AdminKey struct{ ID string } `json:"admin_key"`
		Key      string
	}
	if err := json.Unmarshal(r.Body, &created); err != nil {
		t.Fatal(err)
	}
	s.teamMust(t, 200, "DELETE", "/api/admin-keys/"+created.AdminKey.ID, key, "")

	// Session tokens live a minute: mint a fresh one for every request.
	users := map[caller]string{viewer: "user_viewer", developer: "user_dev", manager: "user_mgr",
		teamAdmin: "user_admin", otherAdmin: "user_other", globalAdmin: "user_global"}
	return func(c caller) string {
		switch c {
		case noCredential:
			return ""
		case malformedJWT:
			return "not-a-jwt"
		case expiredJWT:
			return s.clerk.SessionToken(t, "user_admin", authtest.ExpiredFor(time.Minute))
		case foreignAZP:
			return s.clerk.SessionToken(t, "user_admin", authtest.AZP("https://evil.example"))
		case revokedKey:
			return created.Key
		case adminKey:
			return key
		}
		return s.clerk.SessionToken(t, users[c])
	}
}

// matrixWorld makes the tokens and routes that per-id endpoints address.
type matrixWorld struct {
	t            *testing.T
	s            *stack
	token, route string
	n            int
}

// newToken creates a token of the matrix team (as the bootstrap key).
func (w *matrixWorld) newToken() string {
	w.n++
	r := w.s.teamMust(w.t, 200, "POST", "/api/tokens", w.s.adminKey,
		fmt.Sprintf(`{"name":"fixture-%d","team_id":"%s","scopes":["*"],"expires_days":30}`, w.n, matrixTeam))
	var b struct{ ID json.Number }
	if err := json.Unmarshal(r.Body, &b); err != nil || b.ID == "" {
		w.t.Fatalf("token id in %s: %v", r.Body, err)
	}
	return b.ID.String()
}

// newRoute creates a route (as the bootstrap key).
func (w *matrixWorld) newRoute() string {
	w.n++
	r := w.s.teamMust(w.t, 200, "POST", "/api/routes", w.s.adminKey,
		fmt.Sprintf(`{"name":"fixture","path":"/fixture-%d","backend_url":"https://example.com"}`, w.n))
	var b struct{ ID json.Number }
	if err := json.Unmarshal(r.Body, &b); err != nil || b.ID == "" {
		w.t.Fatalf("route id in %s: %v", r.Body, err)
	}
	return b.ID.String()
}

// expand fills a path's placeholders.
func (w *matrixWorld) expand(p string) string {
	p = strings.ReplaceAll(p, "{token}", w.token)
	p = strings.ReplaceAll(p, "{route}", w.route)
	if strings.Contains(p, "{fresh-token}") {
		p = strings.ReplaceAll(p, "{fresh-token}", w.newToken())
	}
	if strings.Contains(p, "{fresh-route}") {
		p = strings.ReplaceAll(p, "{fresh-route}", w.newRoute())
	}
	return p
}
