package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
)

// The authorization matrix, the hostile suite of issue 11: every REST
// endpoint of the gateway × every principal of a two-team setup → the
// status it must get (contract §5.4 with our deliberate changes: 404 for
// by-id operations outside the caller's teams, /api/users scoped to the
// teams the caller manages, reveal MANAGER and up). The endpoints come from
// the gateway's route table (gateway/http_rules.yaml plus the two
// hand-written routes), so an endpoint added without an entry in
// matrixExpectations fails the test. Requests about a team run once about
// team A and once about team B; every datum of team B carries a marker, and
// no answer to someone without a role in team B may contain it.

// caller is a kind of caller of the matrix.
type caller string

// The principals of a two-team setup: team A (matrixTeam) with one person
// of each role and an admin key scoped to it, team B (otherTeam) with its
// ADMIN, a signed-in person without any team, a DEVELOPER of core-team
// (routes), a person whose Clerk metadata and session claim every role but
// who holds none, a global ADMIN (a person), the global admin key, and the
// ways of not being authenticated.
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
	noTeam       caller = "signed in, no team"
	coreDev      caller = "DEVELOPER of core-team"
	claimer      caller = "ADMIN in Clerk metadata only"
	otherAdmin   caller = "ADMIN of another team"
	globalAdmin  caller = "global ADMIN"
	teamKey      caller = "admin key of the team"
	adminKey     caller = "global admin key"
)

var (
	allCallers = []caller{noCredential, malformedJWT, expiredJWT, foreignAZP, revokedKey,
		viewer, developer, manager, teamAdmin, noTeam, coreDev, claimer, otherAdmin, globalAdmin, teamKey, adminKey}
	// unauthenticated callers get 401 from every non-anonymous endpoint.
	unauthenticated = []caller{noCredential, malformedJWT, expiredJWT, foreignAZP, revokedKey}
	// Convenient sets for the allow lists, relative to the team the request
	// addresses ("the team").
	everyone      = []caller{viewer, developer, manager, teamAdmin, noTeam, coreDev, claimer, otherAdmin, globalAdmin, teamKey, adminKey}
	teamMembers   = []caller{viewer, developer, manager, teamAdmin, globalAdmin, teamKey, adminKey}
	tokenCreators = []caller{developer, manager, teamAdmin, globalAdmin, teamKey, adminKey}
	teamManagers  = []caller{manager, teamAdmin, globalAdmin, teamKey, adminKey}
	teamAdmins    = []caller{teamAdmin, globalAdmin, teamKey, adminKey}
	globalOnly    = []caller{globalAdmin, adminKey}
	someTeamAdmin = []caller{teamAdmin, otherAdmin, globalAdmin, teamKey, adminKey}
	// outsiders hold no role in the team the request addresses.
	outsiders = []caller{noTeam, coreDev, claimer, otherAdmin}
	// insidersOfB may read team B's data; everyone else is an outsider of
	// team B and must never see any of it.
	insidersOfB = []caller{otherAdmin, globalAdmin, adminKey}
)

// The matrix's world: team A, whose resources the requests address, and
// team B, whose every datum carries the marker, so that a leak shows in any
// response body as the marker.
const (
	matrixTeam = "matrix-team"
	otherTeam  = "bsecret-team"
	marker     = "bsecret"
)

// asForTeamB is the caller whose standing towards team A is what c's is
// towards team B: the matrix's expectations are written for requests about
// team A, and a request about team B is expected to answer c as it answers
// asForTeamB(c) about team A.
func asForTeamB(c caller) caller {
	switch {
	case c == otherAdmin:
		return teamAdmin
	case c == globalAdmin, c == adminKey, slices.Contains(unauthenticated, c):
		return c
	}
	return noTeam // every role in team A, the team-A key, the person with no team
}

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
	// path is the concrete path (default: the template); body builds the
	// request body for a caller (default none). Both may name the team the
	// request addresses as {team}, and its resources as {token},
	// {fresh-token} (a new one per request) and {target} (a VIEWER of it).
	path string
	body func(c caller) string
	// perTeam requests address a team: they run once about team A and once
	// about team B (see asForTeamB).
	perTeam bool
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
	// services/internal/authz. Outside the token's team a by-id operation
	// is 404, as for an id that does not exist.
	"POST /api/tokens": {implemented: true, allow: tokenCreators, perTeam: true,
		body: func(c caller) string {
			return fmt.Sprintf(`{"name":"m-%s","team_id":"{team}","scopes":["*"],"expires_days":30}`, slug(c))
		}},
	"GET /api/tokens":              {implemented: true, allow: everyone},
	"PUT /api/tokens/{id}":         {implemented: true, allow: teamManagers, hidden: outsiders, perTeam: true, path: "/api/tokens/{token}", body: func(caller) string { return `{"name":"renamed-{team}"}` }},
	"DELETE /api/tokens/{id}":      {implemented: true, allow: teamManagers, hidden: outsiders, perTeam: true, path: "/api/tokens/{fresh-token}"},
	"GET /api/tokens/{id}/reveal":  {implemented: true, allow: teamManagers, hidden: outsiders, perTeam: true, path: "/api/tokens/{token}/reveal"},
	"POST /api/tokens/{id}/rotate": {implemented: true, allow: teamManagers, hidden: outsiders, perTeam: true, path: "/api/tokens/{fresh-token}/rotate", body: func(caller) string { return `{}` }},
	// Routes are governed by roles in core-team: a DEVELOPER there may
	// create routes, not edit or delete them.
	"POST /api/routes": {implemented: true, allow: []caller{coreDev, globalAdmin, adminKey}, body: func(c caller) string {
		return fmt.Sprintf(`{"name":"r","path":"/m-%s","backend_url":"https://example.com"}`, slug(c))
	}},
	"GET /api/routes":         {implemented: true, allow: everyone},
	"GET /api/routes/tags":    {implemented: true, allow: everyone},
	"PUT /api/routes/{id}":    {implemented: true, allow: globalOnly, path: "/api/routes/{route}", body: func(caller) string { return `{"name":"r2"}` }},
	"DELETE /api/routes/{id}": {implemented: true, allow: globalOnly, path: "/api/routes/{fresh-route}"},

	// Usage and the dashboard (usage service).
	"GET /api/dashboard/overview":     {implemented: true, allow: everyone},
	"GET /api/usage/stats":            {implemented: true, allow: everyone},
	"GET /api/usage/token/{token_id}": {implemented: true, allow: teamManagers, hidden: outsiders, perTeam: true, path: "/api/usage/token/{token}"},
	"GET /api/usage/route":            {implemented: true, allow: everyone, path: "/api/usage/route?route_path=" + sharedRouteQuery},
	// The Worker's endpoint needs no credential but an HMAC signature: an
	// unsigned post is 401 whoever sends it.
	"POST /api/usage-log": {implemented: true, anonymous: true, okStatus: 401,
		body: func(caller) string { return `{"token_hash":"x","route":"/api/x","timestamp":0}` }},

	// Audit.
	"GET /api/dashboard/audit-logs":        {implemented: true, allow: everyone},
	"GET /api/dashboard/audit-logs/verify": {implemented: true, allow: globalOnly},
	"GET /api/dashboard/audit-logs/export": {implemented: true, allow: everyone},
	"GET /api/stats":                       {implemented: true, allow: everyone},

	// Teams.
	"GET /api/teams": {implemented: true, allow: everyone},
	"POST /api/teams": {implemented: true, allow: someTeamAdmin,
		body: func(c caller) string { return fmt.Sprintf(`{"id":"m-%s","name":"Matrix %s"}`, slug(c), c) }},
	"GET /api/teams/{team_id}": {implemented: true, allow: teamMembers, perTeam: true, path: "/api/teams/{team}"},
	"PUT /api/teams/{team_id}": {implemented: true, allow: teamAdmins, perTeam: true, path: "/api/teams/{team}",
		body: func(caller) string { return `{"description":"a team of the matrix"}` }},
	// Authorized callers are refused for a reason that changes nothing: the team has members.
	"DELETE /api/teams/{team_id}":      {implemented: true, allow: teamAdmins, okStatus: 400, perTeam: true, path: "/api/teams/{team}"},
	"GET /api/teams/{team_id}/members": {implemented: true, allow: teamMembers, perTeam: true, path: "/api/teams/{team}/members"},
	// Scoped to the teams the caller manages (checked by the leak check).
	"GET /api/users": {implemented: true, allow: []caller{manager, teamAdmin, otherAdmin, globalAdmin, teamKey, adminKey}},
	// Setting the target's VIEWER role again: allowed callers change nothing.
	"PUT /api/users/{user_id}/team-role": {implemented: true, allow: teamManagers, perTeam: true, path: "/api/users/{target}/team-role",
		body: func(caller) string { return `{"team_id":"{team}","role":"VIEWER"}` }},
	"POST /api/users/{user_id}/team-membership": {implemented: true, allow: teamManagers, perTeam: true, path: "/api/users/{target}/team-membership",
		body: func(caller) string { return `{"team_id":"{team}","role":"VIEWER"}` }},
	// Removing someone who is not a member: authorized callers get 404.
	"DELETE /api/users/{user_id}/team-membership/{team_id}": {implemented: true, allow: teamManagers, okStatus: 404, perTeam: true,
		path: "/api/users/user_nobody/team-membership/{team}"},
	// The global role of someone Clerk does not know: authorized callers
	// get 404 and nothing changes.
	"PUT /api/users/{user_id}/global-role": {implemented: true, allow: globalOnly, okStatus: 404, path: "/api/users/user_nobody/global-role",
		body: func(caller) string { return `{"role":"ADMIN"}` }},
	"DELETE /api/users/{user_id}/global-role": {implemented: true, allow: globalOnly, okStatus: 404, path: "/api/users/user_nobody/global-role"},
	// Inviting as VIEWER of the team: an ADMIN of another team may not grant it.
	"POST /api/invitations": {implemented: true, allow: teamAdmins, perTeam: true,
		body: func(c caller) string {
			return fmt.Sprintf(`{"email":"m-%s-{n}@example.com","team_roles":{"{team}":"VIEWER"}}`, slug(c))
		}},
	"GET /api/invitations":                    {implemented: true, allow: globalOnly},
	"DELETE /api/invitations/{invitation_id}": {implemented: true, allow: globalOnly, okStatus: 404, path: "/api/invitations/inv_nope"},
	"POST /api/admin-keys":                    {implemented: true, allow: globalOnly, body: func(c caller) string { return fmt.Sprintf(`{"name":"m-%s"}`, slug(c)) }},
	"GET /api/admin-keys":                     {implemented: true, allow: globalOnly},
	"DELETE /api/admin-keys/{id}":             {implemented: true, allow: globalOnly, okStatus: 404, path: "/api/admin-keys/ak_nope"},
}

// sharedRouteQuery is the route both teams' tokens were used on, URL-encoded.
const (
	sharedRoute      = "/matrix-shared"
	sharedRouteQuery = "%2Fmatrix-shared"
)

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
// routes it serves with hand-written handlers, as the gateway's own test
// (TestRouteTableFile) writes and checks it. This module may not import the
// gateway, so the file is how the table reaches it.
func gatewayRoutes(t *testing.T) []matrixRoute {
	t.Helper()
	raw, err := os.ReadFile("../../gateway/testdata/routes.json")
	if err != nil {
		t.Fatal(err)
	}
	var out []matrixRoute
	if err := json.Unmarshal(raw, &out); err != nil || len(out) == 0 {
		t.Fatalf("gateway/testdata/routes.json: %d routes, %v", len(out), err)
	}
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

	s := startStack(t, withEnv("usage", "USAGE_INGEST_SECRET="+e2eIngestSecret))
	w := setUpMatrix(t, s)

	probe := os.Getenv("MATRIX_PROBE") != ""
	// insiderSaw records the endpoints whose answer to team B's insiders
	// showed team B's data: the leak check is worth something only if the
	// data is there to leak.
	insiderSaw := map[string]bool{}
	requests := 0
	for _, r := range routes {
		k := r.Method + " " + r.Path
		e := matrixExpectations[k]
		teams := []string{matrixTeam}
		if e.perTeam {
			teams = append(teams, otherTeam)
		}
		for _, team := range teams {
			label := k
			if team == otherTeam {
				label += " (about team B)"
			}
			var got []string
			for _, c := range allCallers {
				path := w.expand(cmpStr(e.path, r.Path), team)
				body := ""
				if e.body != nil {
					body = w.expand(e.body(c), team)
				}
				resp := s.teamReq(t, r.Method, path, w.credential(c), body)
				requests++
				want := e.want(c)
				if team == otherTeam {
					want = e.want(asForTeamB(c))
				}
				if !slices.Contains(insidersOfB, c) {
					if leak := leakOf(path+" "+body, resp.Body); leak != "" {
						t.Errorf("%s as %s: %d answer shows team B's data (%s): %s", label, c, resp.Status, leak, truncateBody(resp.Body))
					}
					if team == otherTeam && !slices.Contains(unauthenticated, c) {
						w.sameAsGhost(label, c, r.Method, cmpStr(e.path, r.Path), e, resp)
					}
				} else if resp.Status == 200 && strings.Contains(strings.ToLower(string(resp.Body)), marker) {
					insiderSaw[k] = true
				}
				if probe {
					got = append(got, fmt.Sprintf("%s=%d", c, resp.Status))
					continue
				}
				if resp.Status != want {
					t.Errorf("%s as %s: %d %s, want %d", label, c, resp.Status, truncateBody(resp.Body), want)
					continue
				}
				if resp.Status >= 400 {
					var b struct {
						Detail *string `json:"detail"`
					}
					if json.Unmarshal(resp.Body, &b) != nil || b.Detail == nil {
						t.Errorf("%s as %s: %d without a {\"detail\"} body: %s", label, c, resp.Status, truncateBody(resp.Body))
					}
				}
			}
			if probe {
				t.Logf("%s: %s", label, strings.Join(got, " "))
			}
		}
	}
	// Requests that reach for team B's data by other doors than a route's
	// resource: filters, ids and names of team B in queries and bodies.
	// Every outsider of team B gets one of the statuses listed, with no
	// trace of team B beyond what it sent.
	for _, pr := range hostileProbes {
		for _, c := range allCallers {
			if slices.Contains(insidersOfB, c) || slices.Contains(unauthenticated, c) {
				continue
			}
			path, body := w.expand(pr.path, otherTeam), w.expand(pr.body, otherTeam)
			resp := s.teamReq(t, pr.method, path, w.credential(c), body)
			requests++
			label := pr.method + " " + path
			if !slices.Contains(pr.statuses, resp.Status) {
				t.Errorf("%s as %s: %d %s, want one of %v", label, c, resp.Status, truncateBody(resp.Body), pr.statuses)
			}
			if leak := leakOf(path+" "+body, resp.Body); leak != "" {
				t.Errorf("%s as %s: %d answer shows team B's data (%s): %s", label, c, resp.Status, leak, truncateBody(resp.Body))
			}
			if strings.Contains(pr.path+pr.body, "{") && !pr.creates {
				body := pr.body
				w.sameAsGhost(label, c, pr.method, pr.path, expectation{body: func(caller) string { return body }}, resp)
			}
		}
	}
	// Figures leak too: the shared route's calls as each sees them (3 by
	// team A's token, 3 by team B's).
	for c, want := range map[caller]int64{viewer: 3, teamKey: 3, noTeam: 0, coreDev: 0, claimer: 0, otherAdmin: 3, globalAdmin: 6} {
		r := s.teamMust(t, 200, "GET", "/api/usage/route?route_path="+sharedRouteQuery, w.credential(c), "")
		var b struct {
			Stats struct {
				TotalCalls int64 `json:"total_calls"`
			}
		}
		if err := json.Unmarshal(r.Body, &b); err != nil {
			t.Fatalf("usage by route: %v", err)
		}
		if b.Stats.TotalCalls != want {
			t.Errorf("%s sees %d calls on the shared route, want %d", c, b.Stats.TotalCalls, want)
		}
	}
	// The answers to team B's insiders that must show team B's data.
	for _, k := range []string{"GET /api/tokens", "GET /api/teams", "GET /api/users", "GET /api/teams/{team_id}/members",
		"GET /api/usage/stats", "GET /api/usage/route", "GET /api/dashboard/audit-logs", "GET /api/dashboard/audit-logs/export",
		"GET /api/admin-keys", "GET /api/invitations"} {
		if !insiderSaw[k] {
			t.Errorf("%s showed no team B data to team B's insiders: the leak check of this endpoint proves nothing", k)
		}
	}
	t.Logf("%d routes, %d callers, %d requests, %d more about a team that does not exist", len(routes), len(allCallers), requests, w.ghosts)
}

// hostileProbes are the requests of the matrix's second part; {team} and
// {token} are team B's, {target} a VIEWER of team B.
var hostileProbes = []struct {
	method, path, body string
	statuses           []int
	// creates is set for a request that would create what it names: its
	// answer about a team that does not exist is not asked (a taken id is
	// 409 to anyone, which ids being unique names cannot avoid).
	creates bool
}{
	// Audit filters naming team B or its people: refused, or nothing.
	{"GET", "/api/dashboard/audit-logs?team_id={team}", "", []int{403}, false},
	{"GET", "/api/dashboard/audit-logs/export?team_id={team}", "", []int{403}, false},
	{"GET", "/api/dashboard/audit-logs?actor=bsecret-member%40example.com", "", []int{200}, false},
	{"GET", "/api/dashboard/audit-logs?actor=user_bsecret_member&limit=200", "", []int{200}, false},
	{"GET", "/api/dashboard/audit-logs?entity_type=admin_key", "", []int{200}, false},
	{"GET", "/api/dashboard/audit-logs?entity_type=team&action=create", "", []int{200}, false},
	{"GET", "/api/dashboard/audit-logs/export?entity_type=invitation", "", []int{200}, false},
	// Usage of the route team B's token was used on, of team B's token.
	{"GET", "/api/usage/route?route_path=" + sharedRouteQuery + "&limit=500", "", []int{200}, false},
	{"GET", "/api/usage/route?limit=500", "", []int{200}, false},
	{"GET", "/api/usage/token/{token}?limit=500", "", []int{404}, false},
	// Team B's token by id, whatever the verb.
	{"PUT", "/api/tokens/{token}", `{"scopes":["*"]}`, []int{404}, false},
	{"PUT", "/api/tokens/{token}", `{"description":"x"}`, []int{404}, false},
	{"POST", "/api/tokens/{token}/rotate", `{"grace_period_seconds":0}`, []int{404}, false},
	// Team B's people in team B.
	{"DELETE", "/api/users/{target}/team-membership/{team}", "", []int{403}, false},
	{"PUT", "/api/users/{target}/team-role", `{"team_id":"{team}","role":"ADMIN"}`, []int{403}, false},
	// Team B's id where a new team's would go.
	{"POST", "/api/teams", `{"id":"{team}","name":"Takeover"}`, []int{403, 409}, true},
	{"POST", "/api/tokens", `{"name":"x","team_id":"{team}","scopes":["*"],"expires_days":1}`, []int{403}, false},
	{"POST", "/api/invitations", `{"email":"m-probe@example.com","team_roles":{"{team}":"ADMIN"}}`, []int{403}, false},
	{"PUT", "/api/teams/{team}", `{"name":"Renamed"}`, []int{403}, false},
}

// leakOf returns the first piece of team B's data in body that the request
// (path and body) did not itself contain, or "". Every datum of team B
// carries the marker, so the check is: no marker in the answer beyond the
// words of the request echoed back (a refusal may name the team asked for).
func leakOf(request string, body []byte) string {
	b := strings.ToLower(string(body))
	for _, word := range markerWords.FindAllString(strings.ToLower(request), -1) {
		b = strings.ReplaceAll(b, word, "")
	}
	if i := strings.Index(b, marker); i >= 0 {
		from, to := max(0, i-40), min(len(b), i+40)
		return b[from:to]
	}
	return ""
}

var markerWords = regexp.MustCompile(`[a-z0-9_.@-]*` + marker + `[a-z0-9_.@-]*`)

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

// matrixWorld is the matrix's two teams, their people and resources, and
// the credential of each caller.
type matrixWorld struct {
	t *testing.T
	s *stack
	// token is a token of each team, target a VIEWER of each team (whose
	// role requests set again), route a route.
	token, target map[string]string
	route         string
	revoked, key  string // the revoked key, the team-A key
	n             int
	ghosts        int // requests about the team that does not exist
}

// setUpMatrix creates the matrix's teams and people. Team B's every datum
// (id, name, description, member ids and e-mails, token names, key name,
// invitation) carries the marker, and its tokens were used on the route
// that team A's were used on too.
func setUpMatrix(t *testing.T, s *stack) *matrixWorld {
	t.Helper()
	w := &matrixWorld{t: t, s: s, token: map[string]string{ghostTeam: "987654321"}, target: map[string]string{
		matrixTeam: "user_target", otherTeam: "user_bsecret_target", ghostTeam: "user_bsecret_ghost"}}
	for _, u := range []authtest.FakeUser{
		{ID: "user_viewer", Email: "viewer@example.com"}, {ID: "user_dev", Email: "dev@example.com"},
		{ID: "user_mgr", Email: "mgr@example.com"}, {ID: "user_admin", Email: "admin@example.com"},
		{ID: "user_loner", Email: "loner@example.com"}, {ID: "user_other", Email: "other@example.com"},
		{ID: "user_core_dev", Email: "core-dev@example.com"},
		// Claims every role in Clerk's metadata (and in the session's
		// claims), holds none in PostgreSQL: the claims count for nothing.
		{ID: "user_claimer", Email: "claimer@example.com", PublicMetadata: claimedRoles},
		{ID: "user_global", Email: "global@example.com"}, {ID: "user_target", Email: "target@example.com"},
		// Team B's own people.
		{ID: "user_bsecret_member", Email: "bsecret-member@example.com", FirstName: "Bsecret"},
		{ID: "user_bsecret_target", Email: "bsecret-target@example.com"},
		// In both teams, with v2.1's legacy metadata naming team B: team A's
		// managers see this person, but not their standing in team B.
		{ID: "user_shared", Email: "shared@example.com", PublicMetadata: map[string]any{
			"tokenManager:team": otherTeam, "tokenManager:role": "DEVELOPER",
			"tokenManager:teams": []any{map[string]any{"id": otherTeam, "name": "Bsecret Team Name", "role": "DEVELOPER"}},
		}},
	} {
		u.CreatedAt = 1761000000000
		s.clerk.AddUser(u)
	}
	key := s.adminKey
	s.teamMust(t, 200, "POST", "/api/teams", key, `{"id":"`+matrixTeam+`","name":"Matrix Team"}`)
	for _, m := range [][3]string{
		{"user_viewer", matrixTeam, "VIEWER"}, {"user_dev", matrixTeam, "DEVELOPER"}, {"user_mgr", matrixTeam, "MANAGER"},
		{"user_admin", matrixTeam, "ADMIN"}, {"user_target", matrixTeam, "VIEWER"}, {"user_shared", matrixTeam, "VIEWER"},
		{"user_core_dev", "core-team", "DEVELOPER"},
	} {
		s.teamMust(t, 200, "POST", "/api/users/"+m[0]+"/team-membership", key, fmt.Sprintf(`{"team_id":"%s","role":"%s"}`, m[1], m[2]))
	}
	s.exec(t, `INSERT INTO team.global_roles (user_id, role) VALUES ('user_global', 'ADMIN')`)

	// A key that existed and was revoked (before any service cached it).
	var created struct {
		AdminKey struct{ ID string } `json:"admin_key"`
		Key      string
	}
	r := s.teamMust(t, 200, "POST", "/api/admin-keys", key, `{"name":"revoked","global_role":"ADMIN"}`)
	if err := json.Unmarshal(r.Body, &created); err != nil {
		t.Fatal(err)
	}
	s.teamMust(t, 200, "DELETE", "/api/admin-keys/"+created.AdminKey.ID, key, "")
	w.revoked = created.Key
	// The team-scoped admin key: ADMIN of team A, nothing else.
	r = s.teamMust(t, 200, "POST", "/api/admin-keys", key, `{"name":"team-a-key","team_roles":{"`+matrixTeam+`":"ADMIN"}}`)
	if err := json.Unmarshal(r.Body, &created); err != nil || created.Key == "" {
		t.Fatalf("team key in %s: %v", r.Body, err)
	}
	w.key = created.Key

	w.route = w.newRoute()
	s.teamMust(t, 200, "POST", "/api/routes", key, `{"name":"shared","path":"`+sharedRoute+`","backend_url":"https://example.com"}`)
	w.token[matrixTeam] = w.newToken(matrixTeam)

	// Team B, last, so that its events are the newest of the audit trail.
	s.teamMust(t, 200, "POST", "/api/teams", key,
		`{"id":"`+otherTeam+`","name":"Bsecret Team Name","description":"the bsecret team's description"}`)
	for _, m := range [][3]string{
		{"user_other", otherTeam, "ADMIN"}, {"user_bsecret_member", otherTeam, "DEVELOPER"},
		{"user_bsecret_target", otherTeam, "VIEWER"}, {"user_shared", otherTeam, "DEVELOPER"},
	} {
		s.teamMust(t, 200, "POST", "/api/users/"+m[0]+"/team-membership", key, fmt.Sprintf(`{"team_id":"%s","role":"%s"}`, m[1], m[2]))
	}
	s.teamMust(t, 200, "POST", "/api/admin-keys", key, `{"name":"bsecret-key","team_roles":{"`+otherTeam+`":"MANAGER"}}`)
	s.teamMust(t, 200, "POST", "/api/invitations", key, `{"email":"bsecret-invitee@example.com","team_roles":{"`+otherTeam+`":"VIEWER"}}`)
	w.token[otherTeam] = w.newToken(otherTeam)

	// Both teams' tokens were used on the shared route.
	var events []any
	for i, team := range []string{matrixTeam, otherTeam} {
		rv := s.teamMust(t, 200, "GET", "/api/tokens/"+w.token[team]+"/reveal", key, "")
		var plain struct{ Token string }
		if err := json.Unmarshal(rv.Body, &plain); err != nil || plain.Token == "" {
			t.Fatalf("reveal: %v", err)
		}
		for j := range 3 {
			events = append(events, map[string]any{"event_id": fmt.Sprintf("m-%d-%d", i, j), "token_hash": e2eHash(plain.Token),
				"route": sharedRoute, "timestamp": time.Now().Add(-time.Duration(j) * time.Minute).UnixMilli(),
				"response_status": 200, "response_time_ms": 10, "ip_address": "203.0.113.9", "user_agent": "matrix",
				"request_method": "GET", "error_message": nil})
		}
	}
	batch, _ := json.Marshal(map[string]any{"events": events})
	if r := s.postUsage(batch, e2eIngestSecret); r.Status != 200 {
		t.Fatalf("usage-log: %d %s", r.Status, r.Body)
	}
	// Ingest is acknowledged when stored; wait until the insiders' view shows it.
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(string(s.teamMust(t, 200, "GET", "/api/usage/stats", key, "").Body), marker) {
		if time.Now().After(deadline) {
			t.Fatal("team B's usage never showed in /api/usage/stats")
		}
		time.Sleep(200 * time.Millisecond)
	}
	return w
}

// claimedRoles is what claimer claims.
var claimedRoles = map[string]any{
	"tokenManager:teamRoles":  map[string]any{matrixTeam: "ADMIN", otherTeam: "ADMIN", "core-team": "ADMIN"},
	"tokenManager:globalRole": "ADMIN",
}

// credential is caller c's bearer credential. Session tokens live a
// minute: a fresh one is minted for every request.
func (w *matrixWorld) credential(c caller) string {
	users := map[caller]string{viewer: "user_viewer", developer: "user_dev", manager: "user_mgr",
		teamAdmin: "user_admin", noTeam: "user_loner", coreDev: "user_core_dev", otherAdmin: "user_other", globalAdmin: "user_global"}
	switch c {
	case noCredential:
		return ""
	case malformedJWT:
		return "not-a-jwt"
	case expiredJWT:
		return w.s.clerk.SessionToken(w.t, "user_admin", authtest.ExpiredFor(time.Minute))
	case foreignAZP:
		return w.s.clerk.SessionToken(w.t, "user_admin", authtest.AZP("https://evil.example"))
	case revokedKey:
		return w.revoked
	case teamKey:
		return w.key
	case claimer:
		return w.s.clerk.SessionToken(w.t, "user_claimer", authtest.Claims(map[string]any{
			"metadata": claimedRoles, "public_metadata": claimedRoles, "publicMetadata": claimedRoles}))
	case adminKey:
		return w.s.adminKey
	}
	u, ok := users[c]
	if !ok {
		w.t.Fatalf("no credential for %s", c)
	}
	return w.s.clerk.SessionToken(w.t, u)
}

// newToken creates a token of team (as the global admin key); team B's
// tokens' names carry the marker.
func (w *matrixWorld) newToken(team string) string {
	w.n++
	name := fmt.Sprintf("fixture-%d", w.n)
	if team == otherTeam {
		name = fmt.Sprintf("bsecret-token-%d", w.n)
	}
	r := w.s.teamMust(w.t, 200, "POST", "/api/tokens", w.s.adminKey,
		fmt.Sprintf(`{"name":"%s","description":"%s","team_id":"%s","scopes":["*"],"expires_days":30}`, name, name, team))
	var b struct{ ID json.Number }
	if err := json.Unmarshal(r.Body, &b); err != nil || b.ID == "" {
		w.t.Fatalf("token id in %s: %v", r.Body, err)
	}
	return b.ID.String()
}

// newRoute creates a route (as the global admin key).
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

// ghostTeam is a team that does not exist, with a token id and a person
// that do not either: to an outsider, team B must look just like it.
const ghostTeam = "bsecret-ghost"

// sameAsGhost checks that the answer to c about team B (resp) is the answer
// about the ghost team, with the ids swapped: a refusal must not tell an
// outsider whether a team, token or member exists.
func (w *matrixWorld) sameAsGhost(label string, c caller, method, template string, e expectation, resp response) {
	w.t.Helper()
	path := w.expand(template, ghostTeam)
	body := ""
	if e.body != nil {
		body = w.expand(e.body(c), ghostTeam)
	}
	ghost := w.s.teamReq(w.t, method, path, w.credential(c), body)
	w.ghosts++
	b, g := w.normalize(resp.Body, otherTeam), w.normalize(ghost.Body, ghostTeam)
	if ghost.Status != resp.Status || resp.Status >= 400 && b != g {
		w.t.Errorf("%s as %s: %d %s, but about a team that does not exist: %d %s — the answer tells what exists",
			label, c, resp.Status, truncateBody(resp.Body), ghost.Status, truncateBody(ghost.Body))
	}
}

var digits = regexp.MustCompile(`[0-9]+`)

// normalize replaces the ids of team's world in an answer by placeholders.
func (w *matrixWorld) normalize(body []byte, team string) string {
	s := strings.NewReplacer(team, "{team}", w.target[team], "{target}").Replace(string(body))
	return digits.ReplaceAllString(s, "#")
}

// expand fills a path's or body's placeholders for a request about team.
func (w *matrixWorld) expand(p, team string) string {
	if team == ghostTeam {
		p = strings.ReplaceAll(p, "{fresh-token}", "{token}")
	}
	n := map[string]string{matrixTeam: "a", otherTeam: "b", ghostTeam: "g"}[team]
	p = strings.NewReplacer("{team}", team, "{token}", w.token[team], "{target}", w.target[team],
		"{route}", w.route, "{n}", n).Replace(p)
	if strings.Contains(p, "{fresh-token}") {
		p = strings.ReplaceAll(p, "{fresh-token}", w.newToken(team))
	}
	if strings.Contains(p, "{fresh-route}") {
		p = strings.ReplaceAll(p, "{fresh-route}", w.newRoute())
	}
	return p
}
