package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
	"github.com/tokenmanager/tokenmanager/services/internal/cftest"
)

// The token service end to end: every token and route endpoint through the
// gateway, with the KV sync running against a fake Cloudflare API
// (internal/cftest). Who may call each endpoint is the authorization
// matrix's job (authz_matrix_test.go); this file adds only what the matrix
// cannot express: reveal by the token's creator, and the actor recorded in
// the audit trail.

const (
	tokTeam  = "tok-team"
	tokOther = "tok-other"
	// legacyPlain is the contract's example v2.7 token (§6) and
	// legacyCiphertext its v2.7 stored form, base64url(Fernet(key).encrypt),
	// produced once with Python's cryptography 48.0.0 Fernet under the
	// stack's TOKEN_ENCRYPTION_KEY — the way v2.7 wrote token_encrypted.
	legacyPlain      = "ntk_Q3v9xLm2pR7tYb1KdE0sWfHa8cNjU4oZ6iGqTy5VwXk"
	legacyHash       = "e666cc3a8ac612f730b4b328d2ca70505d4fac1cb79a109a0d481ccc50d1f87b"
	legacyCiphertext = "Z0FBQUFBQnJCMk9QQVBBRzB5bWoyQ2V6U2VITG56X2JMdnRXMVBwY3ZvYTBhZlpMQnVCd2VvaVREMmdibktSNEg2NlA3R3cteGQxdWZualAwd2xKWE12ZnMtbHc2Mk82dTFIOWVOdk0zVUotSkE4djktTkhCa2lDd1c0S1FyeFNMc3hCbEI3NVkyeTA="
)

// tokTimes are the timestamp keys of token and route responses: volatile in
// golden files, RFC 3339 with Z (or null) in every response.
var tokTimes = []string{"created_at", "updated_at", "expires_at", "last_used", "rotation_grace_ends_at", "previous_token_expires_at"}

var (
	rfc3339Z  = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$`)
	naiveTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$`)
	v3Token   = regexp.MustCompile(`^ntk_[0-9A-Za-z]{38}$`)
)

// tokRig is a stack whose token and health services talk to a fake
// Cloudflare KV API.
type tokRig struct {
	*stack
	t    *testing.T
	fake *cftest.Server
}

func startTokenStack(t *testing.T) *tokRig {
	t.Helper()
	fake := cftest.New(t)
	cf := []string{"CF_ACCOUNT_ID=" + cftest.AccountID, "CF_API_TOKEN=" + cftest.APIToken,
		"CF_KV_NAMESPACE_ID=" + cftest.NamespaceID, "CF_API_BASE_URL=" + fake.BaseURL()}
	// A short retry cap so that a healed Cloudflare is caught up with quickly.
	s := startStack(t, withEnv("token", append(cf, "TM_KV_RETRY_MAX_BACKOFF=1s")...), withEnv("health", cf...))
	r := &tokRig{stack: s, t: t, fake: fake}
	return r
}

// call sends a request with a raw JSON body ("" for none).
func (r *tokRig) call(method, path, bearer, body string) response {
	r.t.Helper()
	return send(r.t, method, r.url+path, bearer, body, nil)
}

// must calls and requires the status.
func (r *tokRig) must(status int, method, path, bearer, body string) response {
	r.t.Helper()
	return r.teamMust(r.t, status, method, path, bearer, body)
}

// query runs f on a connection to the stack's database.
func (r *tokRig) query(f func(ctx context.Context, conn *pgx.Conn) error) {
	r.t.Helper()
	r.withDB(r.t, f)
}

// user mints a fresh session token (they live a minute) for a Clerk user.
func (r *tokRig) user(id string) string { return r.clerk.SessionToken(r.t, id) }

// kvValue returns the decoded value of key in the fake KV, if present.
func (r *tokRig) kvValue(key string) (map[string]any, bool) {
	v, ok := r.fake.KV()[key]
	if !ok {
		return nil, false
	}
	var m map[string]any
	if err := json.Unmarshal(v, &m); err != nil {
		r.t.Fatalf("KV %s is not a JSON object: %v", key, err)
	}
	return m, true
}

// eventually polls cond until it holds or within passes.
func (r *tokRig) eventually(within time.Duration, what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// synced waits until the KV outbox is empty: every committed change has
// reached the fake.
func (r *tokRig) synced() {
	r.t.Helper()
	r.eventually(20*time.Second, "the KV outbox did not drain", func() bool {
		var n int
		r.query(func(ctx context.Context, c *pgx.Conn) error {
			return c.QueryRow(ctx, `SELECT count(*) FROM token.outbox WHERE topic = 'kv'`).Scan(&n)
		})
		return n == 0
	})
}

// state is everything a refused request must leave alone: the token
// schema's rows and the KV namespace.
func (r *tokRig) state() string {
	r.t.Helper()
	var db string
	r.query(func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT concat_ws(E'\n',
			(SELECT string_agg(concat_ws('|', id, name, team_id, description, scopes::text, preview, updated_at, expires_at, revoked_at, rotation_grace_ends_at), E'\n' ORDER BY id) FROM token.tokens),
			(SELECT string_agg(concat_ws('|', hash, token_id, md5(coalesce(ciphertext, '')), valid_until, kv_removed_at), E'\n' ORDER BY hash) FROM token.token_secrets),
			(SELECT string_agg(concat_ws('|', id, name, path, backend_url, description, tags::text, backend_auth_type, backend_auth_config::text, updated_at), E'\n' ORDER BY id) FROM token.routes),
			(SELECT string_agg(concat_ws('|', name, route_id, md5(ciphertext), updated_at), E'\n' ORDER BY name) FROM token.route_secrets))`).Scan(&db)
	})
	kv := r.fake.KV()
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(db)
	for _, k := range keys {
		fmt.Fprintf(&b, "\nKV %s=%s", k, kv[k])
	}
	return b.String()
}

func tokenHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// checkShape asserts the contract's shapes at any depth: ids are JSON
// numbers, timestamps are RFC 3339 with Z or null.
func checkShape(t *testing.T, name string, body []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: not JSON: %s", name, body)
	}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, item := range x {
				if k == "id" {
					if _, ok := item.(float64); !ok {
						t.Errorf("%s: id %v is not a JSON number", name, item)
					}
				}
				if slices.Contains(tokTimes, k) && item != nil {
					if s, ok := item.(string); !ok || !rfc3339Z.MatchString(s) {
						t.Errorf("%s: %s = %v is not RFC 3339 with Z", name, k, item)
					}
				}
				walk(item)
			}
		case []any:
			for _, item := range x {
				walk(item)
			}
		}
	}
	walk(v)
}

// golden pins a response shape and checks it against the contract. Ids
// and timestamps vary from run to run: checkShape checks their types, and
// the golden file holds "<id>" and "<time>" for them, but keeps null where
// the response has null (a token that never expires, a token never used).
func golden(t *testing.T, name string, r response, volatile ...string) {
	t.Helper()
	checkShape(t, name, r.Body)
	var v any
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("%s: not JSON: %s", name, r.Body)
	}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, item := range x {
				switch {
				case k == "id" && item != nil:
					x[k] = "<id>"
				case slices.Contains(tokTimes, k) && item != nil:
					x[k] = "<time>"
				default:
					walk(item)
				}
			}
		case []any:
			for _, item := range x {
				walk(item)
			}
		}
	}
	walk(v)
	b, _ := json.Marshal(v)
	assertGolden(t, name, b, volatile)
}

func idOf(t *testing.T, body []byte) string {
	t.Helper()
	var b struct{ ID json.Number }
	if err := json.Unmarshal(body, &b); err != nil || b.ID == "" {
		t.Fatalf("no numeric id in %s", body)
	}
	return b.ID.String()
}

// setUp creates the teams and the people of the token tests.
func (r *tokRig) setUp() {
	for _, id := range []string{"user_tokdev", "user_tokdev2", "user_tokmgr", "user_tokcore"} {
		r.clerk.AddUser(authtest.FakeUser{ID: id, Email: strings.TrimPrefix(id, "user_") + "@example.com", CreatedAt: 1761000000000})
	}
	key := r.adminKey
	r.must(200, "POST", "/api/teams", key, `{"id":"`+tokTeam+`","name":"Token Team"}`)
	r.must(200, "POST", "/api/teams", key, `{"id":"`+tokOther+`","name":"Other Team"}`)
	for _, m := range [][3]string{
		{"user_tokdev", tokTeam, "DEVELOPER"}, {"user_tokdev2", tokTeam, "DEVELOPER"}, {"user_tokmgr", tokTeam, "MANAGER"},
	} {
		r.must(200, "POST", "/api/users/"+m[0]+"/team-membership", key, fmt.Sprintf(`{"team_id":"%s","role":"%s"}`, m[1], m[2]))
	}
}

func TestTokenService(t *testing.T) {
	r := startTokenStack(t)
	r.setUp()
	key := r.adminKey

	// --- Tokens: every response shape, and the KV entry each one leaves.
	// Their scopes must name a route's service segment or tag: the image
	// route comes first.
	r.must(200, "POST", "/api/routes", key, `{"name":"Image service","path":"/api/image","backend_url":"https://image.example.com","tags":["media"],
		"backend_auth_type":"none","backend_auth_config":null,"backend_auth_secrets":null}`)
	// One lifecycle, step after step on the same token: each step is a
	// block of this subtest, not a subtest of its own, so no subtest
	// depends on what another left behind.
	t.Run("token lifecycle: create, refuse bad scopes, list, update, reveal, rotate, delete", func(t *testing.T) {
		var tokID, plain string
		// create token.
		{
			resp := r.must(200, "POST", "/api/tokens", r.user("user_tokdev"),
				`{"name":"n8n-image-workflow","team_id":"`+tokTeam+`","description":"image pipeline","scopes":["image","tag:media"],"expires_days":90}`)
			golden(t, "token_create.json", resp, "token")
			var c struct {
				ID    json.Number
				Token string
			}
			_ = json.Unmarshal(resp.Body, &c)
			tokID, plain = c.ID.String(), c.Token
			if !v3Token.MatchString(plain) {
				t.Fatalf("token %q is not ntk_ + 32 base62 + 6 checksum characters", plain)
			}
			// The contract's KV value (§3.2), written through the outbox.
			k := "token:" + tokenHash(plain)
			r.eventually(10*time.Second, k+" never reached KV", func() bool { _, ok := r.kvValue(k); return ok })
			v, _ := r.kvValue(k)
			if v["name"] != "n8n-image-workflow" || v["team_id"] != tokTeam || !reflect.DeepEqual(v["scopes"], []any{"image", "tag:media"}) {
				t.Errorf("KV %s = %v", k, v)
			}
			for _, f := range []string{"created_at", "expires_at"} {
				if s, ok := v[f].(string); !ok || !naiveTime.MatchString(s) {
					t.Errorf("KV %s.%s = %v, want v2.7's naive ISO-8601 UTC", k, f, v[f])
				}
			}
		}

		// a token without scopes or with an unknown scope is refused.
		{
			for body, detail := range map[string]string{
				`{"name":"n","team_id":"` + tokTeam + `"}`:                              `{"detail":"scopes must have at least one entry"}`,
				`{"name":"n","team_id":"` + tokTeam + `","scopes":null}`:                `{"detail":"scopes must have at least one entry"}`,
				`{"name":"n","team_id":"` + tokTeam + `","scopes":[]}`:                  `{"detail":"scopes must have at least one entry"}`,
				`{"name":"n","team_id":"` + tokTeam + `","scopes":["image","imagen"]}`:  `Unknown scope \"imagen\"`,
				`{"name":"n","team_id":"` + tokTeam + `","scopes":["*","tag:nomedia"]}`: `Unknown scope \"tag:nomedia\"`,
			} {
				resp := r.must(400, "POST", "/api/tokens", r.user("user_tokdev"), body)
				if !strings.Contains(string(resp.Body), detail) {
					t.Errorf("%s: %s, want a detail with %s", body, resp.Body, detail)
				}
			}
			resp := r.must(400, "PUT", "/api/tokens/"+tokID, r.user("user_tokmgr"), `{"scopes":["imagen"]}`)
			if !strings.Contains(string(resp.Body), `Unknown scope \"imagen\"`) {
				t.Errorf("PUT unknown scope: %s", resp.Body)
			}
		}

		// create token that never expires.
		{
			resp := r.must(200, "POST", "/api/tokens", r.user("user_tokdev"), `{"name":"forever","team_id":"`+tokTeam+`","scopes":["*"],"expires_days":null}`)
			golden(t, "token_create_never_expires.json", resp, "token")
			var c struct{ Token string }
			_ = json.Unmarshal(resp.Body, &c)
			k := "token:" + tokenHash(c.Token)
			r.eventually(10*time.Second, k+" never reached KV", func() bool { _, ok := r.kvValue(k); return ok })
			v, _ := r.kvValue(k)
			if ev, ok := v["expires_at"]; !ok || ev != nil {
				t.Errorf("KV %s.expires_at = %v, want null", k, ev)
			}
			if !reflect.DeepEqual(v["scopes"], []any{"*"}) {
				t.Errorf("KV %s.scopes = %v, want [\"*\"]", k, v["scopes"])
			}
		}

		// list tokens.
		{
			resp := r.must(200, "GET", "/api/tokens", key, "")
			golden(t, "tokens_list.json", resp, "token_preview")
			if !strings.HasPrefix(string(resp.Body), "[") {
				t.Errorf("not a bare array: %s", resp.Body)
			}
			if strings.Contains(string(resp.Body), plain) {
				t.Error("the list contains a plaintext")
			}
		}

		// update token.
		{
			resp := r.must(200, "PUT", "/api/tokens/"+tokID, r.user("user_tokmgr"), `{"name":"n8n-image-v2","description":"images","scopes":["image"]}`)
			golden(t, "token_update.json", resp, "token_preview")
			k := "token:" + tokenHash(plain)
			r.eventually(10*time.Second, "KV did not take the new scopes", func() bool {
				v, _ := r.kvValue(k)
				return v["name"] == "n8n-image-v2" && reflect.DeepEqual(v["scopes"], []any{"image"})
			})
		}

		// reveal token.
		{
			resp := r.must(200, "GET", "/api/tokens/"+tokID+"/reveal", key, "")
			golden(t, "token_reveal.json", resp, "token")
			var b struct{ Token string }
			_ = json.Unmarshal(resp.Body, &b)
			if b.Token != plain {
				t.Errorf("revealed %q, want the created token", b.Token)
			}
		}

		var rotated string
		// rotate token.
		{
			resp := r.must(200, "POST", "/api/tokens/"+tokID+"/rotate", r.user("user_tokmgr"), `{"grace_period_seconds":3600}`)
			golden(t, "token_rotate.json", resp, "token")
			var b struct{ Token string }
			_ = json.Unmarshal(resp.Body, &b)
			rotated = b.Token
			if !v3Token.MatchString(rotated) || rotated == plain {
				t.Fatalf("rotated token %q", rotated)
			}
			// Both secrets work at the edge during the grace period.
			oldKey, newKey := "token:"+tokenHash(plain), "token:"+tokenHash(rotated)
			r.eventually(10*time.Second, "both secrets in KV after rotation", func() bool {
				o, ok1 := r.kvValue(oldKey)
				n, ok2 := r.kvValue(newKey)
				return ok1 && ok2 && o["previous_secret"] == true && n["name"] == "n8n-image-v2"
			})
			list := r.must(200, "GET", "/api/tokens", key, "")
			golden(t, "tokens_list_rotated.json", list, "token_preview")
			var toks []struct {
				ID                  json.Number
				RotationGraceEndsAt *string `json:"rotation_grace_ends_at"`
			}
			_ = json.Unmarshal(list.Body, &toks)
			for _, tk := range toks {
				if tk.ID.String() == tokID && tk.RotationGraceEndsAt == nil {
					t.Errorf("rotated token lists no rotation_grace_ends_at: %s", list.Body)
				}
			}
			rv := r.must(200, "GET", "/api/tokens/"+tokID+"/reveal", key, "")
			if !strings.Contains(string(rv.Body), rotated) {
				t.Errorf("reveal after rotation does not show the new secret")
			}
		}

		// delete token.
		{
			resp := r.must(200, "DELETE", "/api/tokens/"+tokID, r.user("user_tokmgr"), "")
			golden(t, "token_delete.json", resp)
			for _, s := range []string{plain, rotated} {
				k := "token:" + tokenHash(s)
				r.eventually(10*time.Second, k+" still in KV after revoke", func() bool { _, ok := r.kvValue(k); return !ok })
			}
			if strings.Contains(string(r.must(200, "GET", "/api/tokens", key, "").Body), `"id":`+tokID+",") {
				t.Error("a revoked token is still listed")
			}
		}
	})

	// --- Routes.
	t.Run("route lifecycle: create, list, update, tags, delete", func(t *testing.T) {
		var routeID string
		// create route.
		{
			resp := r.must(200, "POST", "/api/routes", key, `{"name":"OpenAI","path":"/api/openai","backend_url":"https://api.openai.com/v1",
			"description":"OpenAI proxy","tags":["ai","external"],"backend_auth_type":"bearer",
			"backend_auth_config":{"token_ref":"OPENAI_API_KEY"},"backend_auth_secrets":{"OPENAI_API_KEY":"sk-proj-e2e-secret"}}`)
			golden(t, "route_create.json", resp)
			routeID = idOf(t, resp.Body)
			if strings.Contains(string(resp.Body), "sk-proj-e2e-secret") {
				t.Error("the response contains the secret value")
			}
			r.must(200, "POST", "/api/routes", key, `{"name":"Internal","path":"/api/intern","backend_url":"http://internal.example.com:8080/base",
			"backend_auth_type":"api-key","backend_auth_config":{"key_ref":"INTERNAL_KEY","header_name":"X-Internal-Key"},"backend_auth_secrets":{"INTERNAL_KEY":"ik-1"}}`)
			r.must(200, "POST", "/api/routes", key, `{"name":"Legacy","path":"/api/legacy","backend_url":"https://svc.example.com","tags":["media","old"],
			"backend_auth_type":"basic","backend_auth_config":{"username_ref":"SVC_USER","password_ref":"SVC_PASS"},"backend_auth_secrets":{"SVC_USER":"u","SVC_PASS":"p"}}`)
			// KV holds the secret under its route's path, and the routes map
			// names it so; the REST shape keeps the author's name (golden).
			r.eventually(10*time.Second, "secret:/api/openai#OPENAI_API_KEY not in KV", func() bool {
				v, ok := r.kvValue("secret:/api/openai#OPENAI_API_KEY")
				return ok && reflect.DeepEqual(v, map[string]any{"value": "sk-proj-e2e-secret"})
			})
			r.routesMatch()
		}

		// list routes.
		{
			resp := r.must(200, "GET", "/api/routes", r.user("user_tokdev"), "")
			golden(t, "routes_list.json", resp)
			if !strings.HasPrefix(string(resp.Body), "[") {
				t.Errorf("not a bare array: %s", resp.Body)
			}
		}

		// update route.
		{
			// Renaming the reference drops the old secret from KV.
			resp := r.must(200, "PUT", "/api/routes/"+routeID, key, `{"name":"OpenAI v2","backend_url":"https://api.openai.com/v2","tags":["ai"],
			"backend_auth_config":{"token_ref":"OPENAI_KEY_2"},"backend_auth_secrets":{"OPENAI_KEY_2":"sk-proj-2"}}`)
			golden(t, "route_update.json", resp)
			r.eventually(10*time.Second, "renamed secret not synced", func() bool {
				_, old := r.kvValue("secret:/api/openai#OPENAI_API_KEY")
				v, ok := r.kvValue("secret:/api/openai#OPENAI_KEY_2")
				return !old && ok && v["value"] == "sk-proj-2"
			})
			r.routesMatch()
		}

		// route tags.
		{
			golden(t, "route_tags.json", r.must(200, "GET", "/api/routes/tags", r.user("user_tokdev"), ""))
		}

		// delete route.
		{
			resp := r.must(200, "DELETE", "/api/routes/"+routeID, key, "")
			golden(t, "route_delete.json", resp)
			r.eventually(10*time.Second, "secret:/api/openai#OPENAI_KEY_2 still in KV after its route was deleted", func() bool {
				_, ok := r.kvValue("secret:/api/openai#OPENAI_KEY_2")
				return !ok
			})
			r.routesMatch()
		}
	})

	t.Run("v2.7 Fernet ciphertext reveals", func(t *testing.T) {
		var id int64
		r.query(func(ctx context.Context, c *pgx.Conn) error {
			if err := c.QueryRow(ctx, `INSERT INTO token.tokens (name, team_id, scopes, created_by, preview)
				VALUES ('legacy', $1, '{*}', 'user_tokdev', $2) RETURNING id`, tokTeam, legacyPlain[:12]+"..."+legacyPlain[41:]).Scan(&id); err != nil {
				return err
			}
			_, err := c.Exec(ctx, `INSERT INTO token.token_secrets (hash, token_id, ciphertext) VALUES ($1, $2, $3)`, legacyHash, id, legacyCiphertext)
			return err
		})
		if tokenHash(legacyPlain) != legacyHash {
			t.Fatal("the contract's example hash does not match")
		}
		resp := r.must(200, "GET", fmt.Sprintf("/api/tokens/%d/reveal", id), key, "")
		var b struct{ Token string }
		_ = json.Unmarshal(resp.Body, &b)
		if b.Token != legacyPlain {
			t.Errorf("v2.7 token revealed as %q", b.Token)
		}
	})

	t.Run("reveal by the creator", func(t *testing.T) {
		resp := r.must(200, "POST", "/api/tokens", r.user("user_tokdev"), `{"name":"mine","team_id":"`+tokTeam+`","scopes":["*"],"expires_days":30}`)
		id := idOf(t, resp.Body)
		// A DEVELOPER may reveal a token they created…
		r.must(200, "GET", "/api/tokens/"+id+"/reveal", r.user("user_tokdev"), "")
		// …another DEVELOPER of the same team may not.
		denied := r.must(403, "GET", "/api/tokens/"+id+"/reveal", r.user("user_tokdev2"), "")
		detail(t, denied)
		r.must(200, "POST", "/api/tokens/"+id+"/rotate", r.user("user_tokmgr"), `{}`)

		// Both show in the audit trail with their actor; the refused reveal does not.
		type entry struct {
			Action   string
			EntityID string `json:"entity_id"`
			Actor    struct{ ID, Type, Email string }
		}
		find := func(action string) []entry {
			resp := r.must(200, "GET", "/api/dashboard/audit-logs?entity_type=token&action="+action+"&limit=200", key, "")
			var page struct{ Data []entry }
			if err := json.Unmarshal(resp.Body, &page); err != nil {
				t.Fatalf("audit logs: %s", resp.Body)
			}
			var out []entry
			for _, e := range page.Data {
				if e.EntityID == id {
					out = append(out, e)
				}
			}
			return out
		}
		r.eventually(15*time.Second, "reveal and rotation not in the audit trail", func() bool {
			return len(find("reveal")) > 0 && len(find("rotate")) > 0
		})
		reveals := find("reveal")
		if len(reveals) != 1 || reveals[0].Actor.ID != "user_tokdev" || reveals[0].Actor.Type != "user" || reveals[0].Actor.Email != "tokdev@example.com" {
			t.Errorf("reveal audit entries %+v, want one by user_tokdev", reveals)
		}
		if rot := find("rotate"); len(rot) != 1 || rot[0].Actor.ID != "user_tokmgr" {
			t.Errorf("rotate audit entries %+v, want one by user_tokmgr", rot)
		}
	})

	t.Run("bad input changes nothing", func(t *testing.T) { r.badInput(t) })

	t.Run("revocation survives a failing Cloudflare, and health reports the failures", func(t *testing.T) {
		resp := r.must(200, "POST", "/api/tokens", key, `{"name":"doomed","team_id":"`+tokTeam+`","scopes":["*"]}`)
		var c struct{ Token string }
		_ = json.Unmarshal(resp.Body, &c)
		k := "token:" + tokenHash(c.Token)
		r.eventually(10*time.Second, k+" never reached KV", func() bool { _, ok := r.kvValue(k); return ok })

		// Cloudflare fails every call, in turn with 500, 429 + Retry-After
		// and a dropped connection; nothing is applied.
		var n atomic.Int64
		r.fake.SetFaults(func(cftest.Request) cftest.Fault {
			switch n.Add(1) % 3 {
			case 0:
				return cftest.Fault{Kind: cftest.ServerError}
			case 1:
				return cftest.Fault{Kind: cftest.RateLimit, RetryAfter: 1}
			}
			return cftest.Fault{Kind: cftest.Drop}
		})
		start := time.Now()
		r.must(200, "DELETE", "/api/tokens/"+idOf(t, resp.Body), key, "")
		failedDeletes := func() int {
			f := 0
			for _, q := range r.fake.Requests() {
				if q.At.After(start) && q.Status != 200 && slices.Contains(q.Keys, k) {
					f++
				}
			}
			return f
		}
		r.eventually(15*time.Second, "the relay did not retry the delete", func() bool { return failedDeletes() >= 3 })
		if _, ok := r.kvValue(k); !ok {
			t.Fatal("the key left KV while Cloudflare was failing: the fault was not in between")
		}
		r.fake.SetFaults(nil)
		r.eventually(15*time.Second, k+" still in KV 15 s after Cloudflare healed", func() bool { _, ok := r.kvValue(k); return !ok })

		// Then health reports the sync state: failures counted, but
		// delivering again, so healthy.
		var body struct {
			Checks map[string]struct {
				Status, Message string
				Details         map[string]string
			}
		}
		r.eventually(10*time.Second, "cloudflare_kv not healthy with sync details", func() bool {
			resp := r.must(200, "GET", "/health/detailed", "", "")
			if err := json.Unmarshal(resp.Body, &body); err != nil {
				t.Fatal(err)
			}
			kv := body.Checks["cloudflare_kv"]
			return kv.Status == "healthy" && kv.Details["outbox_depth"] == "0" && kv.Details["last_reconcile_at"] != ""
		})

		d := body.Checks["cloudflare_kv"].Details
		if d["delivery_failures"] == "0" || d["last_error"] != "" {
			t.Errorf("details after healed faults: %v", d)
		}
	})
}

// routesMatch waits until KV's routes value equals the routes in the API.
func (r *tokRig) routesMatch() {
	r.t.Helper()
	var want map[string]any
	build := func() {
		var list []struct {
			Path              string
			BackendURL        string `json:"backend_url"`
			Tags              []any
			BackendAuthType   string         `json:"backend_auth_type"`
			BackendAuthConfig map[string]any `json:"backend_auth_config"`
		}
		if err := json.Unmarshal(r.must(200, "GET", "/api/routes", r.adminKey, "").Body, &list); err != nil {
			r.t.Fatal(err)
		}
		want = map[string]any{}
		for _, rt := range list {
			v := map[string]any{"url": rt.BackendURL, "tags": rt.Tags}
			if rt.Tags == nil {
				v["tags"] = []any{}
			}
			if rt.BackendAuthType != "none" {
				// KV names the route's own secrets: <path>#<name>.
				cfg := map[string]any{}
				for k, val := range rt.BackendAuthConfig {
					if name, ok := val.(string); ok && strings.HasSuffix(k, "_ref") {
						val = rt.Path + "#" + name
					}
					cfg[k] = val
				}
				v["auth"] = map[string]any{"type": rt.BackendAuthType, "config": cfg}
			}
			want[rt.Path] = v
		}
	}
	build()
	var got map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ = r.kvValue("routes")
		if reflect.DeepEqual(got, want) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("KV routes = %v\nwant %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// badInput sends malformed, ill-typed, out-of-range and injected inputs to
// every token and route endpoint, as a caller allowed to make valid ones:
// each gets a 4xx with {"detail"}, and neither PostgreSQL nor KV changes.
func (r *tokRig) badInput(t *testing.T) {
	key := r.adminKey
	// Fixtures the bad requests aim at: a live token, a revoked token, a
	// route owning a secret.
	live := idOf(t, r.must(200, "POST", "/api/tokens", key, `{"name":"target","team_id":"`+tokTeam+`","scopes":["*"]}`).Body)
	revoked := idOf(t, r.must(200, "POST", "/api/tokens", key, `{"name":"gone","team_id":"`+tokTeam+`","scopes":["*"]}`).Body)
	r.must(200, "DELETE", "/api/tokens/"+revoked, key, "")
	route := idOf(t, r.must(200, "POST", "/api/routes", key, `{"name":"Owner","path":"/api/owner","backend_url":"https://owner.example.com",
		"backend_auth_type":"bearer","backend_auth_config":{"token_ref":"OWNED"},"backend_auth_secrets":{"OWNED":"v1"}}`).Body)
	r.synced()

	long := strings.Repeat("x", 256)
	tok := `{"name":"n","team_id":"` + tokTeam + `",`
	cases := []struct {
		method, path, body string
		want               int
	}{
		// POST /api/tokens
		{"POST", "/api/tokens", `{"name":`, 400},
		{"POST", "/api/tokens", `[]`, 400},
		{"POST", "/api/tokens", `{"name":123,"team_id":"` + tokTeam + `"}`, 400},
		{"POST", "/api/tokens", tok + `"scopes":"*"}`, 400},
		{"POST", "/api/tokens", tok + `"scopes":[1]}`, 400},
		{"POST", "/api/tokens", tok + `"expires_days":"ninety"}`, 400},
		{"POST", "/api/tokens", tok + `"expires_days":1.5}`, 400},
		{"POST", "/api/tokens", tok + `"expires_days":0}`, 400},
		{"POST", "/api/tokens", tok + `"expires_days":3651}`, 400},
		{"POST", "/api/tokens", tok + `"expires_days":-1}`, 400},
		{"POST", "/api/tokens", tok + `"is_admin":true}`, 400},
		{"POST", "/api/tokens", `{"name":"n","team_id":"no-such-team"}`, 400},
		{"POST", "/api/tokens", `{"name":"n","team_id":"../core-team"}`, 400},
		{"POST", "/api/tokens", `{"name":"n","team_id":"` + long[:51] + `"}`, 400},
		{"POST", "/api/tokens", `{"name":"n"}`, 400},
		{"POST", "/api/tokens", `{"name":"","team_id":"` + tokTeam + `"}`, 400},
		{"POST", "/api/tokens", `{"name":"` + long + `","team_id":"` + tokTeam + `"}`, 400},
		{"POST", "/api/tokens", `{"name":"a\u0000b","team_id":"` + tokTeam + `"}`, 400},
		{"POST", "/api/tokens", tok + `"description":"` + strings.Repeat("d", 501) + `"}`, 400},
		{"POST", "/api/tokens", tok + `"scopes":["tag:"]}`, 400},
		// A token needs at least one scope, and each must grant something.
		{"POST", "/api/tokens", tok + `"scopes":null}`, 400},
		{"POST", "/api/tokens", tok + `"scopes":[]}`, 400},
		{"POST", "/api/tokens", tok + `"expires_days":30}`, 400},
		{"POST", "/api/tokens", tok + `"scopes":["image","nosuchservice"]}`, 400},
		{"POST", "/api/tokens", tok + `"scopes":["tag:nosuchtag"]}`, 400},
		{"POST", "/api/tokens", tok + `"scopes":["Image!"]}`, 400},
		{"POST", "/api/tokens", tok + `"scopes":["../admin"]}`, 400},
		{"POST", "/api/tokens", tok + `"scopes":["tag:a b"]}`, 400},
		{"POST", "/api/tokens", tok + `"scopes":["` + strings.Repeat("s", 65) + `"]}`, 400},
		// PUT /api/tokens/{id}
		{"PUT", "/api/tokens/" + live, `{"name":`, 400},
		{"PUT", "/api/tokens/" + live, `{}`, 400},
		{"PUT", "/api/tokens/" + live, `{"name":7}`, 400},
		{"PUT", "/api/tokens/" + live, `{"scopes":"*"}`, 400},
		{"PUT", "/api/tokens/" + live, `{"scopes":[]}`, 400},
		{"PUT", "/api/tokens/" + live, `{"scopes":["nosuchservice"]}`, 400},
		{"PUT", "/api/tokens/" + live, `{"scopes":["tag:nosuchtag"]}`, 400},
		{"PUT", "/api/tokens/" + live, `{"scopes":[7]}`, 400},
		{"PUT", "/api/tokens/" + live, `{"scopes":["bad scope"]}`, 400},
		{"PUT", "/api/tokens/" + live, `{"name":"` + long + `"}`, 400},
		{"PUT", "/api/tokens/" + live, `{"name":"  "}`, 400},
		{"PUT", "/api/tokens/" + live, `{"team_id":"` + tokOther + `"}`, 400},
		{"PUT", "/api/tokens/" + live, `{"expires_days":1}`, 400},
		{"PUT", "/api/tokens/" + revoked, `{"name":"back"}`, 404},
		{"PUT", "/api/tokens/999999", `{"name":"x"}`, 404},
		{"PUT", "/api/tokens/abc", `{"name":"x"}`, 400},
		{"PUT", "/api/tokens/1.5", `{"name":"x"}`, 400},
		{"PUT", "/api/tokens/..%2F" + live, `{"name":"x"}`, 400}, // not a decimal id
		// GET /api/tokens/{id}/reveal
		{"GET", "/api/tokens/abc/reveal", "", 400},
		{"GET", "/api/tokens/999999/reveal", "", 404},
		{"GET", "/api/tokens/" + revoked + "/reveal", "", 404},
		{"GET", "/api/tokens/-1/reveal", "", 404},
		// POST /api/tokens/{id}/rotate
		{"POST", "/api/tokens/" + live + "/rotate", `{"grace_period_seconds":`, 400},
		{"POST", "/api/tokens/" + live + "/rotate", `{"grace_period_seconds":-1}`, 400},
		{"POST", "/api/tokens/" + live + "/rotate", `{"grace_period_seconds":2592001}`, 400},
		{"POST", "/api/tokens/" + live + "/rotate", `{"grace_period_seconds":"soon"}`, 400},
		{"POST", "/api/tokens/" + live + "/rotate", `{"grace":60}`, 400},
		{"POST", "/api/tokens/" + revoked + "/rotate", `{}`, 404},
		{"POST", "/api/tokens/x/rotate", `{}`, 400},
		// DELETE /api/tokens/{id}
		{"DELETE", "/api/tokens/abc", "", 400},
		{"DELETE", "/api/tokens/999999", "", 404},
		{"DELETE", "/api/tokens/" + revoked, "", 404},
		{"DELETE", "/api/tokens/" + live + "%20OR%201=1", "", 400},
		// POST /api/routes
		{"POST", "/api/routes", `{"name":`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://x.example","tags":"ai"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":7,"backend_url":"https://x.example"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://x.example","extra":1}`, 400},
		{"POST", "/api/routes", `{"name":"","path":"/api/r","backend_url":"https://x.example"}`, 400},
		{"POST", "/api/routes", `{"name":"` + long + `","path":"/api/r","backend_url":"https://x.example"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"api/r","backend_url":"https://x.example"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/../admin","backend_url":"https://x.example"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/./r","backend_url":"https://x.example"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"//r","backend_url":"https://x.example"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r/","backend_url":"https://x.example"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r?x=1","backend_url":"https://x.example"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/%2e%2e","backend_url":"https://x.example"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/` + long + `","backend_url":"https://x.example"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/owner","backend_url":"https://x.example"}`, 409},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"javascript:alert(1)"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"/relative/path"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"ftp://files.example"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://user:pw@x.example"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":""}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://x.example/#frag"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://x.example/a b"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://x.example","tags":["a b"]}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://x.example","backend_auth_type":"oauth"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://x.example","backend_auth_type":"bearer"}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://x.example","backend_auth_type":"none","backend_auth_config":{"token_ref":"A"}}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://x.example","backend_auth_type":"bearer","backend_auth_config":{"token_ref":"A","url":"x"}}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://x.example","backend_auth_type":"bearer","backend_auth_config":{"token_ref":"../A"}}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://x.example","backend_auth_type":"api-key","backend_auth_config":{"key_ref":"A","header_name":"Host"}}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://x.example","backend_auth_type":"bearer","backend_auth_config":{"token_ref":"A"},"backend_auth_secrets":{"B":"v"}}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://x.example","backend_auth_type":"bearer","backend_auth_config":{"token_ref":"A"},"backend_auth_secrets":{"A":7}}`, 400},
		// A route naming a secret it does not hold (another route's, or one
		// that exists nowhere) — issue 11's credential theft.
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://attacker.example","backend_auth_type":"bearer","backend_auth_config":{"token_ref":"OWNED"}}`, 400},
		{"POST", "/api/routes", `{"name":"r","path":"/api/r","backend_url":"https://x.example","backend_auth_type":"basic","backend_auth_config":{"username_ref":"U","password_ref":"OWNED"},"backend_auth_secrets":{"U":"u"}}`, 400},
		// PUT /api/routes/{id}
		{"PUT", "/api/routes/" + route, `{"name":`, 400},
		{"PUT", "/api/routes/" + route, `{}`, 400},
		{"PUT", "/api/routes/" + route, `{"path":"/api/moved"}`, 400},
		{"PUT", "/api/routes/" + route, `{"tags":"ai"}`, 400},
		{"PUT", "/api/routes/" + route, `{"backend_url":"javascript:alert(1)"}`, 400},
		{"PUT", "/api/routes/" + route, `{"backend_url":"relative"}`, 400},
		{"PUT", "/api/routes/" + route, `{"backend_auth_type":"oauth"}`, 400},
		{"PUT", "/api/routes/" + route, `{"backend_auth_secrets":{"OTHER":"v"}}`, 400},
		{"PUT", "/api/routes/" + route, `{"backend_auth_config":{"token_ref":"NOT_HELD"}}`, 400},
		{"PUT", "/api/routes/" + route, `{"backend_auth_type":"api-key","backend_auth_config":{"key_ref":"ELSEWHERE"}}`, 400},
		{"PUT", "/api/routes/" + route, `{"name":"` + long + `"}`, 400},
		{"PUT", "/api/routes/999999", `{"name":"x"}`, 404},
		{"PUT", "/api/routes/abc", `{"name":"x"}`, 400},
		// DELETE /api/routes/{id}
		{"DELETE", "/api/routes/abc", "", 400},
		{"DELETE", "/api/routes/999999", "", 404},
		{"DELETE", "/api/routes/" + route + "%3B", "", 400},
	}
	before := r.state()
	for _, c := range cases {
		resp := r.call(c.method, c.path, key, c.body)
		name := c.method + " " + c.path + " " + c.body
		if len(name) > 160 {
			name = name[:160] + "…"
		}
		if resp.Status != c.want {
			t.Errorf("%s: %d %s, want %d", name, resp.Status, resp.Body, c.want)
			continue
		}
		var b struct {
			Detail *string `json:"detail"`
		}
		if err := json.Unmarshal(resp.Body, &b); err != nil || b.Detail == nil {
			t.Errorf("%s: body %s is not {\"detail\": string}", name, resp.Body)
		} else if strings.Contains(*b.Detail, "stolen") || strings.Contains(*b.Detail, "SQLSTATE") {
			t.Errorf("%s: detail leaks: %q", name, *b.Detail)
		}
	}
	// Give a wrongly enqueued change the time to reach the fake.
	time.Sleep(1500 * time.Millisecond)
	r.synced()
	if after := r.state(); after != before {
		t.Errorf("refused requests changed the state:\nbefore %s\n after %s", before, after)
	}
}
