package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
)

// Audit coverage: every state change made through the REST API lands in the
// audit trail with its actor, request id, client IP and user agent, and
// without a secret. The endpoints come from the gateway's route table (as
// in authz_matrix_test.go), so a state-changing endpoint added without an
// entry in auditExpectations fails TestAuditCoverageTable.

// notAudited are the non-GET endpoints that make no administrative change,
// each with the reason. Every other non-GET endpoint of the route table is
// a state change (create/update/delete/rotate/revoke of a token, route,
// team, membership, invitation or admin key) and must be in
// auditExpectations; the audit endpoints that merely read (list, export,
// verify, stats) are all GETs.
var notAudited = map[string]string{
	// The Worker's usage report: one row per proxied gateway request, sent
	// unauthenticated (HMAC-signed) by the edge, at the rate of API
	// traffic. It records usage, which the usage analytics own, and changes
	// no administrative state; auditing it would flood the trail with one
	// event per API call and no human actor.
	"POST /api/usage-log": "usage ingest by the Worker, not an admin change",
}

// auditedReads are GET endpoints that must be audited all the same: they
// disclose a secret.
var auditedReads = []string{"GET /api/tokens/{id}/reveal"}

// Who performs a step.
const (
	covUser = "user" // a Clerk user who is a global ADMIN
	covKey  = "key"  // the bootstrap admin key
)

// Names of the coverage world.
const (
	covAdmin   = "user_cov_admin"
	covMember  = "user_cov_member"
	covTeam    = "cov-team"
	covKeyTeam = "cov-key-team"
)

// wantEvent is an audit event a step must produce.
type wantEvent struct{ action, entityType, entityID, team string }

// auditStep is one REST call and the events it must leave in the trail.
type auditStep struct {
	endpoint string // "METHOD /template" as in the route table
	as       string // covUser or covKey
	path     func(w *covWorld) string
	body     func(w *covWorld) string // nil: no body
	// after reads what later steps need (ids) and what must never reach
	// the trail (secrets) from the response body.
	after  func(w *covWorld, body []byte)
	events func(w *covWorld) []wantEvent
}

func fixed(s string) func(*covWorld) string { return func(*covWorld) string { return s } }

// covWorld is what the steps create, addressed by later steps.
type covWorld struct {
	t                  *testing.T
	userToken, keyTok  string // token ids
	routeID            string
	invitationID       string
	userAdminKeyID     string
	keyAdminKeyID      string
	routeSecret1       string
	routeSecret2       string
	secrets            []string // values that must never appear in audit.events
	currentTokenSecret string
}

// keep remembers a secret the trail must not contain.
func (w *covWorld) keep(s string) {
	if s == "" {
		w.t.Fatal("empty secret captured")
	}
	w.secrets = append(w.secrets, s)
}

// jsonField returns a top-level string or number field of a JSON object,
// as a string.
func jsonField(t *testing.T, body []byte, path ...string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("not JSON: %s", body)
	}
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("no %v in %s", path, body)
		}
		v = m[k]
	}
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return fmt.Sprintf("%.0f", x)
	}
	t.Fatalf("%v is %T in %s", path, v, body)
	return ""
}

func tokenEvent(action string, id func(*covWorld) string, team string) func(*covWorld) []wantEvent {
	return func(w *covWorld) []wantEvent { return []wantEvent{{action, "token", id(w), team}} }
}

func userTok(w *covWorld) string { return w.userToken }
func keyTok(w *covWorld) string  { return w.keyTok }

// auditExpectations performs every state change of the REST API, in an
// order where each step finds what it needs, first as a global ADMIN user,
// then (for the changes the issue names — team, role change, token
// creation, reveal, rotation, admin-key creation) as the bootstrap key.
var auditExpectations = []auditStep{
	// Teams and memberships. A user creating a team becomes its ADMIN: that
	// grant is audited too, as is its removal when the team is deleted.
	{endpoint: "POST /api/teams", as: covUser, path: fixed("/api/teams"),
		body: fixed(`{"id":"` + covTeam + `","name":"Coverage","description":"audit coverage"}`),
		events: func(*covWorld) []wantEvent {
			return []wantEvent{{"create", "team", covTeam, covTeam}, {"create", "membership", covAdmin + "@" + covTeam, covTeam}}
		}},
	{endpoint: "PUT /api/teams/{team_id}", as: covUser, path: fixed("/api/teams/" + covTeam),
		body:   fixed(`{"description":"audit coverage, updated"}`),
		events: func(*covWorld) []wantEvent { return []wantEvent{{"update", "team", covTeam, covTeam}} }},
	{endpoint: "POST /api/users/{user_id}/team-membership", as: covUser, path: fixed("/api/users/" + covMember + "/team-membership"),
		body: fixed(`{"team_id":"` + covTeam + `","role":"VIEWER"}`),
		events: func(*covWorld) []wantEvent {
			return []wantEvent{{"create", "membership", covMember + "@" + covTeam, covTeam}}
		}},
	{endpoint: "PUT /api/users/{user_id}/team-role", as: covUser, path: fixed("/api/users/" + covMember + "/team-role"),
		body: fixed(`{"team_id":"` + covTeam + `","role":"DEVELOPER"}`),
		events: func(*covWorld) []wantEvent {
			return []wantEvent{{"update", "membership", covMember + "@" + covTeam, covTeam}}
		}},
	// The global ADMIN role: granted, then revoked (team-less events).
	{endpoint: "PUT /api/users/{user_id}/global-role", as: covUser, path: fixed("/api/users/" + covMember + "/global-role"),
		body:   fixed(`{"role":"ADMIN"}`),
		events: func(*covWorld) []wantEvent { return []wantEvent{{"create", "global_role", covMember, ""}} }},
	{endpoint: "DELETE /api/users/{user_id}/global-role", as: covUser, path: fixed("/api/users/" + covMember + "/global-role"),
		events: func(*covWorld) []wantEvent { return []wantEvent{{"delete", "global_role", covMember, ""}} }},

	// Tokens.
	{endpoint: "POST /api/tokens", as: covUser, path: fixed("/api/tokens"),
		body: fixed(`{"name":"cov-token","team_id":"` + covTeam + `","scopes":["*"],"expires_days":30}`),
		after: func(w *covWorld, b []byte) {
			w.userToken = jsonField(w.t, b, "id")
			w.currentTokenSecret = jsonField(w.t, b, "token")
			w.keep(w.currentTokenSecret)
		},
		events: tokenEvent("create", userTok, covTeam)},
	{endpoint: "PUT /api/tokens/{id}", as: covUser, path: func(w *covWorld) string { return "/api/tokens/" + w.userToken },
		body: fixed(`{"name":"cov-token-renamed","description":"d","scopes":["*"]}`), events: tokenEvent("update", userTok, covTeam)},
	{endpoint: "GET /api/tokens/{id}/reveal", as: covUser, path: func(w *covWorld) string { return "/api/tokens/" + w.userToken + "/reveal" },
		after: func(w *covWorld, b []byte) {
			if got := jsonField(w.t, b, "token"); got != w.currentTokenSecret {
				w.t.Errorf("revealed a different token")
			}
		},
		events: tokenEvent("reveal", userTok, covTeam)},
	{endpoint: "POST /api/tokens/{id}/rotate", as: covUser, path: func(w *covWorld) string { return "/api/tokens/" + w.userToken + "/rotate" },
		body: fixed(`{"grace_period_seconds":60}`), after: func(w *covWorld, b []byte) { w.keep(jsonField(w.t, b, "token")) },
		events: tokenEvent("rotate", userTok, covTeam)},
	{endpoint: "DELETE /api/tokens/{id}", as: covUser, path: func(w *covWorld) string { return "/api/tokens/" + w.userToken },
		events: tokenEvent("delete", userTok, covTeam)},

	// Routes, with backend secrets (stored encrypted, synced to KV; their
	// names may be audited, their values never).
	{endpoint: "POST /api/routes", as: covUser, path: fixed("/api/routes"),
		body: func(w *covWorld) string {
			return `{"name":"Coverage","path":"/api/coverage","backend_url":"https://coverage.example.com","tags":["cov"],
				"backend_auth_type":"bearer","backend_auth_config":{"token_ref":"COV_KEY"},"backend_auth_secrets":{"COV_KEY":"` + w.routeSecret1 + `"}}`
		},
		after: func(w *covWorld, b []byte) { w.routeID = jsonField(w.t, b, "id") },
		events: func(w *covWorld) []wantEvent {
			return []wantEvent{{"create", "route", w.routeID, ""}}
		}},
	{endpoint: "PUT /api/routes/{id}", as: covUser, path: func(w *covWorld) string { return "/api/routes/" + w.routeID },
		body: func(w *covWorld) string {
			return `{"name":"Coverage 2","backend_auth_config":{"token_ref":"COV_KEY_2"},"backend_auth_secrets":{"COV_KEY_2":"` + w.routeSecret2 + `"}}`
		},
		events: func(w *covWorld) []wantEvent { return []wantEvent{{"update", "route", w.routeID, ""}} }},
	{endpoint: "DELETE /api/routes/{id}", as: covUser, path: func(w *covWorld) string { return "/api/routes/" + w.routeID },
		events: func(w *covWorld) []wantEvent { return []wantEvent{{"delete", "route", w.routeID, ""}} }},

	// Invitations: one event per team the invitation names, in that team's
	// trail (so the team's ADMINs see invitations into their team).
	{endpoint: "POST /api/invitations", as: covUser, path: fixed("/api/invitations"),
		body:  fixed(`{"email":"cov-invitee@example.com","team_roles":{"` + covTeam + `":"VIEWER"}}`),
		after: func(w *covWorld, b []byte) { w.invitationID = jsonField(w.t, b, "invitation_id") },
		events: func(w *covWorld) []wantEvent {
			return []wantEvent{{"create", "invitation", w.invitationID, covTeam}}
		}},
	{endpoint: "DELETE /api/invitations/{invitation_id}", as: covUser, path: func(w *covWorld) string { return "/api/invitations/" + w.invitationID },
		events: func(w *covWorld) []wantEvent { return []wantEvent{{"revoke", "invitation", w.invitationID, covTeam}} }},

	// Admin keys.
	// A key with a team role: the grant and its end are in the team's trail.
	{endpoint: "POST /api/admin-keys", as: covUser, path: fixed("/api/admin-keys"),
		body: fixed(`{"name":"cov-user-key","team_roles":{"` + covTeam + `":"MANAGER"}}`),
		after: func(w *covWorld, b []byte) {
			w.userAdminKeyID = jsonField(w.t, b, "admin_key", "id")
			w.keep(jsonField(w.t, b, "key"))
		},
		events: func(w *covWorld) []wantEvent {
			return []wantEvent{{"create", "admin_key", w.userAdminKeyID, ""}, {"create", "admin_key_role", w.userAdminKeyID + "@" + covTeam, covTeam}}
		}},
	{endpoint: "DELETE /api/admin-keys/{id}", as: covUser, path: func(w *covWorld) string { return "/api/admin-keys/" + w.userAdminKeyID },
		events: func(w *covWorld) []wantEvent {
			return []wantEvent{{"revoke", "admin_key", w.userAdminKeyID, ""}, {"delete", "admin_key_role", w.userAdminKeyID + "@" + covTeam, covTeam}}
		}},

	// Emptying and deleting the team.
	{endpoint: "DELETE /api/users/{user_id}/team-membership/{team_id}", as: covUser,
		path: fixed("/api/users/" + covMember + "/team-membership/" + covTeam),
		events: func(*covWorld) []wantEvent {
			return []wantEvent{{"delete", "membership", covMember + "@" + covTeam, covTeam}}
		}},
	{endpoint: "DELETE /api/teams/{team_id}", as: covUser, path: fixed("/api/teams/" + covTeam),
		events: func(*covWorld) []wantEvent {
			return []wantEvent{{"delete", "team", covTeam, covTeam}, {"delete", "membership", covAdmin + "@" + covTeam, covTeam}}
		}},

	// The same kinds of change by the bootstrap admin key. A global-ADMIN
	// key that creates a team gets no membership (keys are not members).
	{endpoint: "POST /api/teams", as: covKey, path: fixed("/api/teams"), body: fixed(`{"id":"` + covKeyTeam + `","name":"Coverage by key"}`),
		events: func(*covWorld) []wantEvent { return []wantEvent{{"create", "team", covKeyTeam, covKeyTeam}} }},
	{endpoint: "POST /api/users/{user_id}/team-membership", as: covKey, path: fixed("/api/users/" + covMember + "/team-membership"),
		body: fixed(`{"team_id":"` + covKeyTeam + `","role":"VIEWER"}`),
		events: func(*covWorld) []wantEvent {
			return []wantEvent{{"create", "membership", covMember + "@" + covKeyTeam, covKeyTeam}}
		}},
	{endpoint: "PUT /api/users/{user_id}/team-role", as: covKey, path: fixed("/api/users/" + covMember + "/team-role"),
		body: fixed(`{"team_id":"` + covKeyTeam + `","role":"MANAGER"}`),
		events: func(*covWorld) []wantEvent {
			return []wantEvent{{"update", "membership", covMember + "@" + covKeyTeam, covKeyTeam}}
		}},
	{endpoint: "POST /api/tokens", as: covKey, path: fixed("/api/tokens"),
		body: fixed(`{"name":"cov-key-token","team_id":"` + covKeyTeam + `","scopes":["*"]}`),
		after: func(w *covWorld, b []byte) {
			w.keyTok = jsonField(w.t, b, "id")
			w.keep(jsonField(w.t, b, "token"))
		},
		events: tokenEvent("create", keyTok, covKeyTeam)},
	{endpoint: "GET /api/tokens/{id}/reveal", as: covKey, path: func(w *covWorld) string { return "/api/tokens/" + w.keyTok + "/reveal" },
		events: tokenEvent("reveal", keyTok, covKeyTeam)},
	{endpoint: "POST /api/tokens/{id}/rotate", as: covKey, path: func(w *covWorld) string { return "/api/tokens/" + w.keyTok + "/rotate" },
		body: fixed(`{}`), after: func(w *covWorld, b []byte) { w.keep(jsonField(w.t, b, "token")) },
		events: tokenEvent("rotate", keyTok, covKeyTeam)},
	{endpoint: "POST /api/admin-keys", as: covKey, path: fixed("/api/admin-keys"), body: fixed(`{"name":"cov-key-key"}`),
		after: func(w *covWorld, b []byte) {
			w.keep(jsonField(w.t, b, "key"))
			w.keyAdminKeyID = jsonField(w.t, b, "admin_key", "id")
		},
		events: func(w *covWorld) []wantEvent { return []wantEvent{{"create", "admin_key", w.keyAdminKeyID, ""}} }},
}

// TestAuditCoverageTable checks, without a stack, that auditExpectations
// covers every state-changing endpoint of the gateway and names only real
// ones.
func TestAuditCoverageTable(t *testing.T) {
	routes := gatewayRoutes(t)
	served := map[string]bool{}
	for _, r := range routes {
		served[r.Method+" "+r.Path] = true
	}
	covered := map[string]bool{}
	for _, st := range auditExpectations {
		if !served[st.endpoint] {
			t.Errorf("auditExpectations has %s, which the gateway does not serve", st.endpoint)
		}
		covered[st.endpoint] = true
	}
	for k := range notAudited {
		if !served[k] {
			t.Errorf("notAudited has %s, which the gateway does not serve", k)
		}
		if covered[k] {
			t.Errorf("%s is both in notAudited and in auditExpectations", k)
		}
	}
	for _, r := range routes {
		k := r.Method + " " + r.Path
		mustAudit := (r.Method != "GET" && notAudited[k] == "") || slices.Contains(auditedReads, k)
		if mustAudit && !covered[k] {
			t.Errorf("endpoint %s changes state but has no entry in auditExpectations: add one (or a reason in notAudited)", k)
		}
	}
	for _, k := range auditedReads {
		if !served[k] {
			t.Errorf("auditedReads has %s, which the gateway does not serve", k)
		}
	}
}

// auditRow is an event as GET /api/dashboard/audit-logs returns it.
type auditRow struct {
	ID         int64           `json:"id"`
	Action     string          `json:"action"`
	EntityType string          `json:"entity_type"`
	EntityID   json.RawMessage `json:"entity_id"`
	TeamID     string          `json:"team_id"`
	Actor      struct {
		Type, ID, Email, Name string
	} `json:"actor"`
	Details   json.RawMessage `json:"details"`
	RequestID string          `json:"request_id"`
	ClientIP  string          `json:"client_ip"`
	UserAgent string          `json:"user_agent"`
}

// entityID is the entity id whether the gateway renders it as a string or
// a number.
func (r auditRow) entityID() string {
	var s string
	if json.Unmarshal(r.EntityID, &s) == nil {
		return s
	}
	return string(r.EntityID)
}

// covCall sends one request with its own request id and user agent.
func covCall(t *testing.T, s *stack, method, path, bearer, body, requestID, userAgent string) response {
	t.Helper()
	return send(t, method, s.url+path, bearer, body, map[string]string{"X-Request-Id": requestID, "User-Agent": userAgent})
}

// allAuditRows reads the whole trail through the REST API, newest first.
func allAuditRows(t *testing.T, s *stack, bearer string) ([]auditRow, [][]byte) {
	t.Helper()
	var out []auditRow
	var bodies [][]byte
	for offset := 0; ; offset += 200 {
		r := s.teamMust(t, 200, "GET", fmt.Sprintf("/api/dashboard/audit-logs?limit=200&offset=%d", offset), bearer, "")
		var page struct {
			Total int64
			Data  []auditRow
		}
		if err := json.Unmarshal(r.Body, &page); err != nil {
			t.Fatalf("audit logs: %v: %s", err, r.Body)
		}
		bodies = append(bodies, r.Body)
		out = append(out, page.Data...)
		if len(page.Data) < 200 {
			return out, bodies
		}
	}
}

func randomHex(t *testing.T) string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// TestAuditCoverage performs every state change of the REST API through
// the gateway, against the real services (the token service with a fake
// Cloudflare KV), and checks that each one is in the audit trail as the
// REST API lists it: the right action, entity type and id, and team; the
// actor (user id, e-mail and name, or admin key id and name); the request
// id, client IP and user agent of the call; details as a JSON object; and
// no secret anywhere in audit.events. Then the chain verifies.
func TestAuditCoverage(t *testing.T) {
	r := startTokenStack(t)
	s := r.stack
	r.clerk.AddUser(authtest.FakeUser{ID: covAdmin, Email: "covadmin@example.com", FirstName: "Cov", LastName: "Admin", CreatedAt: 1761000000000})
	r.clerk.AddUser(authtest.FakeUser{ID: covMember, Email: "covmember@example.com", CreatedAt: 1761000000000})
	s.exec(t, `INSERT INTO team.global_roles (user_id, role) VALUES ($1, 'ADMIN')`, covAdmin)
	var bootstrapID string
	r.query(func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT id FROM team.admin_keys WHERE bootstrap AND revoked_at IS NULL`).Scan(&bootstrapID)
	})

	// The dashboard lists users before it adds one to a team (GET
	// /api/users, the add-member dropdown): that is how the team service
	// knows the e-mails that name membership events.
	s.teamMust(t, 200, "GET", "/api/users", s.clerk.SessionToken(t, covAdmin), "")

	w := &covWorld{t: t, routeSecret1: "cov-route-secret-" + randomHex(t), routeSecret2: "cov-route-secret-" + randomHex(t)}
	w.secrets = append(w.secrets, w.routeSecret1, w.routeSecret2, s.adminKey, authtest.SecretKey,
		s.envOf("TM_SERVICE_SECRET"), "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8M=")

	type sent struct {
		step      auditStep
		requestID string
		userAgent string
		want      []wantEvent
		reads     stepReads // the events as the three REST reads of details return them
	}
	var calls []sent
	for i, st := range auditExpectations {
		bearer := s.adminKey
		if st.as == covUser {
			bearer = s.clerk.SessionToken(t, covAdmin) // they live a minute: one per call
		}
		body := ""
		if st.body != nil {
			body = st.body(w)
		}
		method := strings.Fields(st.endpoint)[0]
		path := st.path(w)
		reqID := fmt.Sprintf("cov-%02d-%s", i, st.as)
		ua := fmt.Sprintf("tm-audit-coverage/1.0 (step %02d)", i)
		resp := covCall(t, s, method, path, bearer, body, reqID, ua)
		if resp.Status != 200 {
			t.Fatalf("step %d, %s as %s: %s %s: %d %s", i, st.endpoint, st.as, method, path, resp.Status, resp.Body)
		}
		if st.after != nil {
			st.after(w, resp.Body)
		}
		want := st.events(w)
		calls = append(calls, sent{st, reqID, ua, want, captureReads(t, s, reqID, len(want))})
	}

	// Events arrive through the services' outboxes: wait (with a deadline)
	// until every call's events are listed.
	var byRequest map[string][]auditRow
	var bodies [][]byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rows []auditRow
		rows, bodies = allAuditRows(t, s, s.adminKey)
		byRequest = map[string][]auditRow{}
		for _, row := range rows {
			byRequest[row.RequestID] = append(byRequest[row.RequestID], row)
		}
		var missing []string
		for _, c := range calls {
			if len(byRequest[c.requestID]) < len(c.want) {
				missing = append(missing, c.requestID+" "+c.step.endpoint)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s these calls have fewer audit events than expected:\n%s", strings.Join(missing, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}

	for _, c := range calls {
		got := byRequest[c.requestID]
		name := c.requestID + " " + c.step.endpoint
		var gotEv []wantEvent
		for _, row := range got {
			gotEv = append(gotEv, wantEvent{row.Action, row.EntityType, row.entityID(), row.TeamID})
			switch c.step.as {
			case covUser:
				if row.Actor.Type != "user" || row.Actor.ID != covAdmin || row.Actor.Email != "covadmin@example.com" || row.Actor.Name != "Cov Admin" {
					t.Errorf("%s: actor %+v, want the user %s <covadmin@example.com>", name, row.Actor, covAdmin)
				}
			case covKey:
				if row.Actor.Type != "admin_key" || row.Actor.ID != bootstrapID || row.Actor.Name != "bootstrap" {
					t.Errorf("%s: actor %+v, want the bootstrap key %s", name, row.Actor, bootstrapID)
				}
			}
			if row.UserAgent != c.userAgent {
				t.Errorf("%s: user_agent %q, want %q", name, row.UserAgent, c.userAgent)
			}
			if row.ClientIP != "127.0.0.1" {
				t.Errorf("%s: client_ip %q, want 127.0.0.1 (the test's address as the gateway saw it)", name, row.ClientIP)
			}
			var details map[string]any
			if err := json.Unmarshal(row.Details, &details); err != nil || details == nil {
				t.Errorf("%s: details %s is not a JSON object", name, row.Details)
			}
		}
		sortEvents(gotEv)
		want := slices.Clone(c.want)
		sortEvents(want)
		if !slices.Equal(gotEv, want) {
			t.Errorf("%s: events %v, want %v", name, gotEv, want)
		}
	}

	// No secret anywhere in the trail: not in the REST listing, not in any
	// column of any stored event.
	for _, secret := range w.secrets {
		for _, b := range bodies {
			if strings.Contains(string(b), secret) {
				t.Errorf("the audit-log listing contains a secret (%d characters)", len(secret))
			}
		}
		var n int
		r.query(func(ctx context.Context, c *pgx.Conn) error {
			return c.QueryRow(ctx, `SELECT count(*) FROM audit.events e WHERE strpos(row_to_json(e)::text, $1) > 0`, secret).Scan(&n)
		})
		if n != 0 {
			t.Errorf("%d stored audit events contain a secret (%d characters)", n, len(secret))
		}
	}

	// The names of route secrets are audited, never their values.
	r.query(func(ctx context.Context, c *pgx.Conn) error {
		var set string
		err := c.QueryRow(ctx, `SELECT coalesce(details->>'secrets_set', '') FROM audit.events
			WHERE entity_type = 'route' AND action = 'create' AND entity_id = $1`, w.routeID).Scan(&set)
		if err == nil && !strings.Contains(set, "COV_KEY") {
			t.Errorf("route create details name no secret: %q", set)
		}
		return err
	})

	// Every event renders in v2.7's dashboard: v2.7's keys with v2.7's
	// types in the three reads, a name and an operator; and the golden
	// files pin each shape.
	emails := map[string]string{covAdmin: "covadmin@example.com", covMember: "covmember@example.com"}
	keyNames := map[string]string{w.userAdminKeyID: "cov-user-key", w.keyAdminKeyID: "cov-key-key"}
	placeholders := map[string]string{bootstrapID: "<bootstrap_key_id>", w.userAdminKeyID: "<user_admin_key_id>",
		w.keyAdminKeyID: "<key_admin_key_id>", w.invitationID: "<invitation_id>"}
	for i, c := range calls {
		exp := func(action, entityType, entityID string) eventExpect {
			e := eventExpect{actorID: covAdmin, actorLabel: "covadmin@example.com"}
			if c.step.as == covKey {
				e.actorID, e.actorLabel = bootstrapID, "bootstrap (admin key)"
			}
			before, _, _ := strings.Cut(entityID, "@")
			switch entityType {
			case "token":
				e.name = "cov-token-renamed" // from the update on
				switch {
				case entityID == w.keyTok:
					e.name = "cov-key-token"
				case c.step.endpoint == "POST /api/tokens":
					e.name = "cov-token"
				}
			case "route":
				e.name = "Coverage 2"
				if action == "create" {
					e.name = "Coverage"
				}
			case "team":
				e.name = map[string]string{covTeam: "Coverage", covKeyTeam: "Coverage by key"}[entityID]
			case "membership", "global_role":
				e.name = emails[before]
			case "invitation":
				e.name = "cov-invitee@example.com"
			case "admin_key", "admin_key_role":
				e.name = keyNames[before]
			}
			return e
		}
		name := shapeFileName(i, c.step.endpoint, c.step.as)
		checkReads(t, name, c.reads, exp)
		assertShapeGolden(t, name, c.reads, placeholders)
	}

	// The CSV export (GET /api/dashboard/audit-logs/export) carries the
	// same details, as JSON in its details column.
	exported := s.teamMust(t, 200, "GET", "/api/dashboard/audit-logs/export", s.adminKey, "")
	recs, err := csv.NewReader(bytes.NewReader(exported.Body)).ReadAll()
	if err != nil || len(recs) < 2 {
		t.Fatalf("export: %v %s", err, exported.Body)
	}
	col := slices.Index(recs[0], "details")
	for _, rec := range recs[1:] {
		var d map[string]any
		if err := json.Unmarshal([]byte(rec[col]), &d); err != nil {
			t.Errorf("export row %s: details %q is not JSON", rec[0], rec[col])
			continue
		}
		if n, _ := d["name"].(string); n == "" {
			t.Errorf("export row %s (%s %s): no name in %v", rec[0], rec[2], rec[3], d)
		}
	}

	// The chain holds.
	v := s.teamMust(t, 200, "GET", "/api/dashboard/audit-logs/verify", s.clerk.SessionToken(t, covAdmin), "")
	var res struct {
		OK      bool  `json:"ok"`
		Checked int64 `json:"events_checked"`
	}
	if err := json.Unmarshal(v.Body, &res); err != nil || !res.OK || res.Checked < int64(len(calls)) {
		t.Fatalf("verify: %s", v.Body)
	}
}

func sortEvents(e []wantEvent) {
	slices.SortFunc(e, func(a, b wantEvent) int {
		return strings.Compare(a.action+"|"+a.entityType+"|"+a.entityID+"|"+a.team, b.action+"|"+b.entityType+"|"+b.entityID+"|"+b.team)
	})
}
