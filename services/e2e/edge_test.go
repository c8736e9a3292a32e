package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The edge, end to end: the whole stack, deploy/local-cloudflare hosting our
// Worker (and the v2.7-letter Worker) in workerd over one KV namespace that
// the token service fills through cloudflare-go, and a real upstream HTTP
// server. Every change is made through REST, every check goes through a
// Worker, and the time each KV change took from the REST call to being seen
// by the Worker is reported (in the test log, and in $TM_EDGE_REPORT when
// set, which `make test` prints).

const (
	edgeAccount   = "edge-account"
	edgeNamespace = "edge-tokens"
	edgeAPIToken  = "edge-cf-api-token-0123456789"
	// edgeBackendSecret is the credential the Worker injects for the echo
	// route; it is stored through REST (backend_auth_secrets) and reaches the
	// Worker as KV secret:/api/echo#ECHO_KEY.
	edgeBackendSecret = "sk-edge-upstream-credential-42"
)

// repoRoot is the repository root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// localCloudflare is a running deploy/local-cloudflare process.
type localCloudflare struct {
	API          string `json:"cloudflare_api"`
	Worker       string `json:"worker"`
	CompatWorker string `json:"compat_worker"`
	Admin        string `json:"admin"`
	mu           sync.Mutex
	log          strings.Builder
}

func (lc *localCloudflare) Logs() string {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.log.String()
}

// startLocalCloudflare starts local-cloudflare on free ports with both
// Workers. Its npm packages come from `make test` (npm ci); without them the
// test is skipped, except under CI, where that is a failure.
func startLocalCloudflare(t *testing.T, vars map[string]string) *localCloudflare {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deploy", "local-cloudflare")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "miniflare")); err != nil {
		msg := "deploy/local-cloudflare has no node_modules: run `make test` (it runs npm ci there)"
		if ci := os.Getenv("CI"); ci != "" && ci != "0" && ci != "false" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not on PATH: %v", err)
	}
	cmd := exec.Command("node", filepath.Join(dir, "server.js"),
		"--host", "127.0.0.1", "--api-port", "0", "--worker-port", "0", "--compat-worker-port", "0")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"CF_ACCOUNT_ID=" + edgeAccount, "CF_KV_NAMESPACE_ID=" + edgeNamespace, "CF_API_TOKEN=" + edgeAPIToken}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdin, err := cmd.StdinPipe() // closing it (or our death) stops the process
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	lc := &localCloudflare{}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lc.mu.Lock()
			lc.log.WriteString(sc.Text() + "\n")
			lc.mu.Unlock()
		}
		close(done)
	}()
	t.Cleanup(func() {
		// SIGTERM, never SIGKILL: a killed Node process leaves workerd behind.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		waited := make(chan error, 1)
		go func() { <-done; waited <- cmd.Wait() }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("local-cloudflare did not stop within 10 s of SIGTERM")
		}
		_ = stdin.Close()
		if t.Failed() {
			t.Logf("---- local-cloudflare ----\n%s", lc.Logs())
		}
	})
	line := make(chan error, 1)
	go func() { line <- json.NewDecoder(stdout).Decode(lc); _, _ = io.Copy(io.Discard, stdout) }()
	select {
	case err := <-line:
		if err != nil {
			t.Fatalf("local-cloudflare start-up line: %v\n%s", err, lc.Logs())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("local-cloudflare not ready after 60 s\n%s", lc.Logs())
	}
	if lc.API == "" || lc.Worker == "" || lc.CompatWorker == "" {
		t.Fatalf("local-cloudflare start-up line lacks a URL: %+v", lc)
	}
	return lc
}

// upstream is the backend microservice behind the echo route: it records
// what reached it and answers with a small JSON body.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request
}

func startUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Clone(r.Context()))
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"upstream":"echo","path":%q}`, r.URL.Path)
	}))
	t.Cleanup(u.Close)
	return u
}

// last returns the last request the upstream received.
func (u *upstream) last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return nil
	}
	return u.seen[len(u.seen)-1]
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

// edgeRig is the stack with local Cloudflare and the upstream.
type edgeRig struct {
	*tokRig
	lc       *localCloudflare
	up       *upstream
	timings  []edgeTiming
	stepsLog []string
}

// edgeTiming is how long one KV change took from the start of its REST call
// until a Worker answered accordingly.
type edgeTiming struct {
	change string
	inKV   time.Duration // until the Cloudflare API showed the change (0: not watched)
	took   time.Duration // until the Worker answered accordingly
}

// edge sends a GET with an API key through a Worker (base URL), with a user
// agent that tells the two Workers' usage apart.
func (e *edgeRig) edge(base, method, path, apiKey string) response {
	e.t.Helper()
	ua := "edge-e2e/1.0"
	if base == e.lc.CompatWorker {
		ua = "edge-e2e-v27/1.0"
	}
	return e.sendAs(base, method, path, apiKey, ua)
}

// get is a GET through a Worker with a chosen user agent.
func (e *edgeRig) get(base, path, apiKey, userAgent string) response {
	e.t.Helper()
	return e.sendAs(base, "GET", path, apiKey, userAgent)
}

func (e *edgeRig) sendAs(base, method, path, apiKey, userAgent string) response {
	e.t.Helper()
	header := map[string]string{"User-Agent": userAgent}
	if apiKey != "" {
		header["X-API-Key"] = apiKey
	}
	return send(e.t, method, strings.TrimSuffix(base, "/")+path, "", "", header)
}

// until polls a Worker until it answers want for the key, and records how
// long that took since start.
func (e *edgeRig) until(change string, start time.Time, base, path, apiKey string, want int) response {
	return e.untilKV(change, start, base, path, apiKey, want, "", false)
}

// untilKV is until that also records when kvKey's presence in the KV
// namespace (read through the Cloudflare API) first became present: the
// split between the token service's sync and the Worker's read.
func (e *edgeRig) untilKV(change string, start time.Time, base, path, apiKey string, want int, kvKey string, present bool) response {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var inKV time.Duration
	for {
		if kvKey != "" && inKV == 0 && e.kvHas(e.t, kvKey) == present {
			inKV = time.Since(start)
		}
		r := e.edge(base, "GET", path, apiKey)
		if r.Status == want {
			if kvKey != "" && inKV == 0 {
				inKV = time.Since(start) // it arrived while the Worker was being asked
			}
			e.timings = append(e.timings, edgeTiming{change, inKV, time.Since(start)})
			return r
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: the Worker at %s still answers %d %s for GET %s, want %d", change, base, r.Status, r.Body, path, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// workerError decodes the Worker's {"error","message"} body.
func workerError(t *testing.T, r response) (string, string) {
	t.Helper()
	var b struct{ Error, Message string }
	if err := json.Unmarshal(r.Body, &b); err != nil {
		t.Fatalf("Worker error body %q is not {error, message}", r.Body)
	}
	return b.Error, b.Message
}

func TestEdge(t *testing.T) {
	gatewayAddr := freeAddr(t)
	lc := startLocalCloudflare(t, map[string]string{
		"TOKEN_MANAGER_BACKEND": "http://" + gatewayAddr,
		"USAGE_INGEST_SECRET":   e2eIngestSecret,
		"USAGE_FLUSH_DELAY_MS":  "20",
		// Every unknown key is looked up again at once: the test creates
		// tokens and polls for them.
		"NEGATIVE_CACHE_TTL_MS": "0",
	})
	cf := []string{"CF_ACCOUNT_ID=" + edgeAccount, "CF_API_TOKEN=" + edgeAPIToken,
		"CF_KV_NAMESPACE_ID=" + edgeNamespace, "CF_API_BASE_URL=" + lc.API}
	s := startStack(t, withHTTPAddr(gatewayAddr),
		withEnv("token", append(cf, "TM_KV_RETRY_MAX_BACKOFF=1s", "TM_TOKEN_EXPIRY_SWEEP_INTERVAL=1s")...),
		withEnv("health", cf...),
		// The v2.7-letter Worker posts unsigned single events.
		withEnv("usage", "USAGE_INGEST_SECRET="+e2eIngestSecret, "USAGE_ALLOW_UNSIGNED=true", "USAGE_LAST_USED_INTERVAL=200ms"))
	e := &edgeRig{tokRig: &tokRig{stack: s, t: t}, lc: lc, up: startUpstream(t)}
	defer e.report(t)
	key := s.adminKey

	// The people: a team, and its ADMIN who makes the token changes (routes
	// are global and made with the bootstrap admin key).
	const team, adminUser = "edge-team", "user_edge_admin"
	e.must(200, "POST", "/api/teams", key, `{"id":"`+team+`","name":"Edge Team"}`)
	e.must(200, "POST", "/api/users/"+adminUser+"/team-membership", key, `{"team_id":"`+team+`","role":"ADMIN"}`)

	t.Run("health sees Cloudflare", func(t *testing.T) {
		r := s.do("GET", "/health/detailed", "", nil)
		var h struct {
			Checks map[string]struct{ Status string }
		}
		if err := json.Unmarshal(r.Body, &h); err != nil || h.Checks["cloudflare_kv"].Status != "healthy" {
			t.Fatalf("cloudflare_kv check: %s", r.Body)
		}
	})

	// --- Routes: echo (bearer credential) first, since a token's scopes must
	// name a route's service segment; then a token scoped to it, and another
	// route.
	e.must(200, "POST", "/api/routes", key, `{"name":"Echo","path":"/api/echo","backend_url":"`+e.up.URL+`/v1",
		"tags":["edge"],"backend_auth_type":"bearer","backend_auth_config":{"token_ref":"ECHO_KEY"},
		"backend_auth_secrets":{"ECHO_KEY":"`+edgeBackendSecret+`"}}`)

	start := time.Now()
	created := e.must(200, "POST", "/api/tokens", e.user(adminUser),
		`{"name":"edge-bot","team_id":"`+team+`","scopes":["echo"],"expires_days":30}`)
	var tok struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	if err := json.Unmarshal(created.Body, &tok); err != nil || tok.Token == "" {
		t.Fatalf("create token: %s", created.Body)
	}
	tokenID := fmt.Sprint(tok.ID)
	e.untilKV("token create → token visible", start, lc.Worker, "/api/echo/ping", tok.Token, 200, "token:"+tokenHash(tok.Token), true)

	start = time.Now()
	e.must(200, "POST", "/api/routes", key, `{"name":"Other","path":"/api/other","backend_url":"`+e.up.URL+`/other",
		"backend_auth_type":"none","backend_auth_config":null,"backend_auth_secrets":null}`)
	// Until the new route arrives the Worker answers 404 Route Not Found;
	// then 403: the token is not scoped to it.
	e.until("route create → routed (out of the token's scope)", start, lc.Worker, "/api/other/x", tok.Token, 403)

	t.Run("a request reaches the upstream with the injected credential", func(t *testing.T) {
		before := e.up.count()
		r := e.edge(lc.Worker, "GET", "/api/echo/items/7?q=1", tok.Token)
		if r.Status != 200 || !strings.Contains(string(r.Body), `"path":"/v1/items/7"`) {
			t.Fatalf("through the Worker: %d %s", r.Status, r.Body)
		}
		if e.up.count() != before+1 {
			t.Fatalf("the upstream saw %d requests, want 1", e.up.count()-before)
		}
		got := e.up.last()
		if a := got.Header.Get("Authorization"); a != "Bearer "+edgeBackendSecret {
			t.Errorf("upstream Authorization = %q, want the route's bearer credential", a)
		}
		if k := got.Header.Get("X-API-Key"); k != "" {
			t.Errorf("the client's X-API-Key reached the upstream")
		}
		if got.URL.RawQuery != "q=1" {
			t.Errorf("upstream query %q", got.URL.RawQuery)
		}
	})

	t.Run("a route cannot borrow another route's credential", func(t *testing.T) {
		// Issue 11: a route naming the echo route's secret, pointed at a host
		// of its author's choosing. It holds no such secret: 400, no route.
		r := send(t, "POST", s.url+"/api/routes", key, `{"name":"Thief","path":"/api/thief","backend_url":"`+e.up.URL+`/thief",
			"backend_auth_type":"bearer","backend_auth_config":{"token_ref":"ECHO_KEY"}}`, nil)
		if r.Status != 400 || !strings.Contains(detail(t, r), "does not hold") {
			t.Fatalf("borrowing route: %d %s", r.Status, r.Body)
		}
		if n := s.count(t, `SELECT count(*) FROM token.routes WHERE path = '/api/thief'`); n != 0 {
			t.Errorf("the borrowing route was stored")
		}
		if !e.kvHas(t, "secret:/api/echo#ECHO_KEY") || e.kvHas(t, "secret:ECHO_KEY") {
			t.Errorf("KV does not hold the echo route's secret under its own path only")
		}
	})

	t.Run("another route is refused 403", func(t *testing.T) {
		before := e.up.count()
		r := e.edge(lc.Worker, "GET", "/api/other/x", tok.Token)
		if r.Status != 403 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if errName, msg := workerError(t, r); errName != "Permission Denied" || strings.Contains(msg, "echo") {
			t.Errorf("403 body %s (must not list the token's scopes)", r.Body)
		}
		// Segment boundaries: /api/echoes is not /api/echo.
		if r := e.edge(lc.Worker, "GET", "/api/echoes", tok.Token); r.Status != 404 {
			t.Errorf("/api/echoes: %d %s, want 404", r.Status, r.Body)
		}
		if e.up.count() != before {
			t.Errorf("a refused request reached the upstream")
		}
	})

	t.Run("an unknown or malformed key is refused 401", func(t *testing.T) {
		for _, k := range []string{"", "ntk_nope", lastCharChanged(tok.Token)} {
			if r := e.edge(lc.Worker, "GET", "/api/echo/ping", k); r.Status != 401 {
				t.Errorf("key %q: %d %s", k, r.Status, r.Body)
			}
		}
	})

	t.Run("usage reaches the stats and last_used moves", func(t *testing.T) {
		// These calls carry their own user agent, to be told apart from the
		// polling above (which the Worker reports too).
		const calls, agent = 5, "edge-e2e-usage/1.0"
		for range calls {
			if r := e.get(lc.Worker, "/api/echo/usage", tok.Token, agent); r.Status != 200 {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
		}
		type logRow struct {
			TokenID        int64  `json:"token_id"`
			RoutePath      string `json:"route_path"`
			UserAgent      string `json:"user_agent"`
			ResponseStatus int    `json:"response_status"`
		}
		ours := func(rows []logRow) int {
			n := 0
			for _, l := range rows {
				if l.UserAgent == agent && fmt.Sprint(l.TokenID) == tokenID && l.RoutePath == "/api/echo" && l.ResponseStatus == 200 {
					n++
				}
			}
			return n
		}
		e.eventually(20*time.Second, "the edge token's calls did not reach /api/usage/token/{id}", func() bool {
			r := e.must(200, "GET", "/api/usage/token/"+tokenID+"?limit=100", key, "")
			var u struct {
				RecentUsage []logRow `json:"recent_usage"`
			}
			return json.Unmarshal(r.Body, &u) == nil && ours(u.RecentUsage) == calls
		})
		r := e.must(200, "GET", "/api/usage/stats", key, "")
		var st struct {
			Overview struct {
				TotalCalls int64 `json:"total_calls"`
			}
			RecentLogs []logRow `json:"recent_logs"`
		}
		if err := json.Unmarshal(r.Body, &st); err != nil || st.Overview.TotalCalls < calls || ours(st.RecentLogs) != calls {
			t.Fatalf("/api/usage/stats lacks the %d calls: %s", calls, r.Body)
		}
		var first time.Time
		e.eventually(20*time.Second, "the token's last_used was not set", func() bool {
			first = e.lastUsed(t, tokenID)
			return !first.IsZero()
		})
		// One more call later: last_used moves forward to it.
		time.Sleep(1100 * time.Millisecond)
		called := time.Now()
		if r := e.edge(lc.Worker, "GET", "/api/echo/again", tok.Token); r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		// The Worker stamps the event (workerd's clock moves with I/O, so
		// allow it half a second); last_used reaches that call.
		e.eventually(20*time.Second, "the token's last_used did not move to the new call", func() bool {
			got := e.lastUsed(t, tokenID)
			return got.After(first) && !got.Before(called.Add(-500*time.Millisecond))
		})
	})

	t.Run("the v2.7 Worker reads the same KV", func(t *testing.T) {
		r := e.edge(lc.CompatWorker, "GET", "/api/echo/items/7", tok.Token)
		if r.Status != 200 || !strings.Contains(string(r.Body), `"path":"/v1/items/7"`) {
			t.Fatalf("through the v2.7 Worker: %d %s", r.Status, r.Body)
		}
		if a := e.up.last().Header.Get("Authorization"); a != "Bearer "+edgeBackendSecret {
			t.Errorf("v2.7 Worker: upstream Authorization = %q", a)
		}
		if r := e.edge(lc.CompatWorker, "GET", "/api/other/x", tok.Token); r.Status != 403 {
			t.Errorf("v2.7 Worker, another route: %d %s", r.Status, r.Body)
		}
		// Its string-prefix matching (contract §4.4): /api/echoes matches /api/echo.
		if r := e.edge(lc.CompatWorker, "GET", "/api/echoes", tok.Token); r.Status != 200 {
			t.Errorf("v2.7 Worker, /api/echoes: %d %s (string prefix matching expected)", r.Status, r.Body)
		}
		// Its unsigned usage posts are accepted (USAGE_ALLOW_UNSIGNED=true).
		e.eventually(20*time.Second, "the v2.7 Worker's unsigned usage did not arrive", func() bool {
			return e.countUsage(t, "edge-e2e-v27/1.0") >= 2
		})
	})

	// --- Rotation with a short grace period: both secrets work, then only the new one.
	var rotated string
	t.Run("rotation: both secrets work until the grace period ends", func(t *testing.T) {
		const grace = 4 * time.Second
		start := time.Now()
		r := e.must(200, "POST", "/api/tokens/"+tokenID+"/rotate", e.user(adminUser), fmt.Sprintf(`{"grace_period_seconds":%d}`, int(grace.Seconds())))
		var rot struct{ Token string }
		if err := json.Unmarshal(r.Body, &rot); err != nil || rot.Token == "" || rot.Token == tok.Token {
			t.Fatalf("rotate: %s", r.Body)
		}
		rotated = rot.Token
		e.untilKV("rotate → new secret visible", start, lc.Worker, "/api/echo/ping", rotated, 200, "token:"+tokenHash(rotated), true)
		if r := e.edge(lc.Worker, "GET", "/api/echo/ping", tok.Token); r.Status != 200 && time.Since(start) < grace {
			t.Fatalf("the old secret is refused during the grace period: %d %s", r.Status, r.Body)
		}
		r = e.until("rotate → old secret refused after the grace period", start, lc.Worker, "/api/echo/ping", tok.Token, 401)
		if time.Since(start) < grace {
			t.Fatalf("the old secret was refused after %v, before the grace period of %v ended", time.Since(start), grace)
		}
		if errName, _ := workerError(t, r); errName != "Token Expired" && errName != "Invalid API Key" {
			t.Errorf("old secret after grace: %s", r.Body)
		}
		if r := e.edge(lc.Worker, "GET", "/api/echo/ping", rotated); r.Status != 200 {
			t.Fatalf("the new secret: %d %s", r.Status, r.Body)
		}
		// The sweep then removes the old secret from KV altogether.
		e.until("rotate → old secret gone from KV (sweep)", start, lc.Worker, "/api/echo/ping", tok.Token, 401)
		e.eventually(20*time.Second, "the old secret is still in KV after the sweep", func() bool {
			return !e.kvHas(t, "token:"+tokenHash(tok.Token))
		})
	})

	t.Run("an expired token is refused 401", func(t *testing.T) {
		r := e.must(200, "POST", "/api/tokens", e.user(adminUser), `{"name":"short-lived","team_id":"`+team+`","scopes":["*"],"expires_days":1}`)
		var short struct {
			ID    int64
			Token string
		}
		if err := json.Unmarshal(r.Body, &short); err != nil {
			t.Fatal(err)
		}
		e.until("token create → visible (short-lived)", time.Now(), lc.Worker, "/api/echo/ping", short.Token, 200)
		// A day passes: the token's expiry moves into the past, as only
		// time could move it; the expiry sweep takes it out of KV.
		s.sql(t, fmt.Sprintf(`UPDATE token.tokens SET expires_at = now() - interval '1 second' WHERE id = %d`, short.ID))
		start := time.Now()
		r = e.untilKV("expiry → refused (sweep)", start, lc.Worker, "/api/echo/ping", short.Token, 401, "token:"+tokenHash(short.Token), false)
		if errName, _ := workerError(t, r); errName != "Invalid API Key" {
			t.Errorf("expired token: %s, want it gone from KV (Invalid API Key)", r.Body)
		}
		if r := e.edge(lc.CompatWorker, "GET", "/api/echo/ping", short.Token); r.Status != 401 {
			t.Errorf("v2.7 Worker, expired token: %d %s", r.Status, r.Body)
		}
	})

	t.Run("revoke: the Worker refuses the token once the sync ran", func(t *testing.T) {
		start := time.Now()
		e.must(200, "DELETE", "/api/tokens/"+tokenID, e.user(adminUser), "")
		r := e.untilKV("revoke → refused", start, lc.Worker, "/api/echo/ping", rotated, 401, "token:"+tokenHash(rotated), false)
		if errName, _ := workerError(t, r); errName != "Invalid API Key" {
			t.Errorf("after revoke: %s", r.Body)
		}
		if r := e.edge(lc.CompatWorker, "GET", "/api/echo/ping", rotated); r.Status != 401 {
			t.Errorf("v2.7 Worker after revoke: %d %s", r.Status, r.Body)
		}
	})

	t.Run("route delete: the Worker no longer routes it", func(t *testing.T) {
		r := e.must(200, "POST", "/api/tokens", key, `{"name":"all","team_id":"`+team+`","scopes":["*"]}`)
		var all struct{ Token string }
		_ = json.Unmarshal(r.Body, &all)
		e.until("token create → visible (wildcard)", time.Now(), lc.Worker, "/api/other/x", all.Token, 200)
		routes := e.must(200, "GET", "/api/routes", key, "")
		type route struct {
			ID   int64
			Path string
		}
		var list []route
		if err := json.Unmarshal(routes.Body, &list); err != nil {
			t.Fatalf("routes: %s", routes.Body)
		}
		i := slices.IndexFunc(list, func(r route) bool { return r.Path == "/api/other" })
		if i < 0 {
			t.Fatalf("no /api/other in %s", routes.Body)
		}
		start := time.Now()
		e.must(200, "DELETE", fmt.Sprintf("/api/routes/%d", list[i].ID), key, "")
		e.until("route delete → not routed", start, lc.Worker, "/api/other/x", all.Token, 404)
	})

	t.Run("the audit trail shows every step with its actor", func(t *testing.T) {
		type want struct{ action, entity, id, actorType, actorID string }
		wants := []want{
			{"create", "route", "", "admin_key", ""},
			{"create", "token", tokenID, "user", adminUser},
			{"rotate", "token", tokenID, "user", adminUser},
			{"delete", "token", tokenID, "user", adminUser},
			{"delete", "route", "", "admin_key", ""},
		}
		type row struct {
			Action     string `json:"action"`
			EntityType string `json:"entity_type"`
			EntityID   string `json:"entity_id"`
			Actor      struct {
				Type string `json:"type"`
				ID   string `json:"id"`
			} `json:"actor"`
		}
		e.eventually(20*time.Second, "the audit trail lacks a step", func() bool {
			r := e.must(200, "GET", "/api/dashboard/audit-logs?limit=200", key, "")
			var body struct{ Data []row }
			if json.Unmarshal(r.Body, &body) != nil {
				return false
			}
			for _, w := range wants {
				if !slices.ContainsFunc(body.Data, func(d row) bool {
					return d.Action == w.action && d.EntityType == w.entity && (w.id == "" || d.EntityID == w.id) &&
						d.Actor.Type == w.actorType && (w.actorID == "" || d.Actor.ID == w.actorID) && d.Actor.ID != ""
				}) {
					e.stepsLog = []string{fmt.Sprintf("missing %+v", w)}
					return false
				}
			}
			return true
		})
		if r := e.must(200, "GET", "/api/dashboard/audit-logs/verify", key, ""); !strings.Contains(string(r.Body), `"ok":true`) {
			t.Errorf("verify: %s", r.Body)
		}
	})

	t.Run("secrets stay out of logs", func(t *testing.T) {
		for name, p := range s.procs {
			for _, secret := range []string{edgeBackendSecret, tok.Token, rotated, edgeAPIToken} {
				if secret != "" && strings.Contains(p.Logs(), secret) {
					t.Errorf("%s log contains a secret", name)
				}
			}
		}
		if l := lc.Logs(); strings.Contains(l, edgeBackendSecret) || strings.Contains(l, tok.Token) {
			t.Errorf("local-cloudflare (Worker console) log contains a secret")
		}
	})
}

// lastUsed is the token's last_used in GET /api/tokens (zero when null).
func (e *edgeRig) lastUsed(t *testing.T, id string) time.Time {
	r := e.must(200, "GET", "/api/tokens", e.adminKey, "")
	var list []struct {
		ID       int64      `json:"id"`
		LastUsed *time.Time `json:"last_used"`
	}
	if err := json.Unmarshal(r.Body, &list); err != nil {
		t.Fatalf("tokens: %s", r.Body)
	}
	for _, tk := range list {
		if fmt.Sprint(tk.ID) == id && tk.LastUsed != nil {
			return *tk.LastUsed
		}
	}
	return time.Time{}
}

// countUsage counts the stored usage events of one user agent.
func (e *edgeRig) countUsage(t *testing.T, userAgent string) int64 {
	var n int64
	e.query(func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT count(*) FROM usage.events WHERE user_agent = $1`, userAgent).Scan(&n)
	})
	return n
}

// kvHas reports whether the KV namespace holds key, read through the
// Cloudflare API that the token service writes to.
func (e *edgeRig) kvHas(t *testing.T, key string) bool {
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/accounts/%s/storage/kv/namespaces/%s/values/%s",
		e.lc.API, edgeAccount, edgeNamespace, url.PathEscape(key)), nil)
	req.Header.Set("Authorization", "Bearer "+edgeAPIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// report prints the propagation timings: in the log, and into
// $TM_EDGE_REPORT for `make test` to show.
func (e *edgeRig) report(t *testing.T) {
	if len(e.timings) == 0 {
		return
	}
	var b strings.Builder
	ms := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
	fmt.Fprintf(&b, "Edge end-to-end (%s): from the start of the REST call until the change was in KV (Cloudflare API) and until the Worker acted on it\n", t.Name())
	fmt.Fprintf(&b, "  %-52s %12s %12s\n", "change", "in KV", "Worker")
	for _, tm := range e.timings {
		fmt.Fprintf(&b, "  %-52s %12s %12s\n", tm.change, ms(tm.inKV), ms(tm.took))
	}
	b.WriteString("  The token service paces its Cloudflare API calls at TM_KV_RATE_LIMIT (default 4/s, Cloudflare's 1,200 per 5 minutes),\n" +
		"  which is most of these times; `routes` is written at most once a second (Cloudflare's per-key write limit),\n" +
		"  so a second route change within a second waits for it. Grace and expiry rows include their waits.\n")
	for _, l := range e.stepsLog {
		fmt.Fprintf(&b, "  (while waiting for the audit trail: %s)\n", l)
	}
	t.Log("\n" + b.String())
	if path := os.Getenv("TM_EDGE_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Errorf("writing TM_EDGE_REPORT: %v", err)
		}
	}
}
