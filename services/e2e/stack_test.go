// Package e2e runs the whole stack — the five service binaries, the gateway
// binary, a real PostgreSQL and a fake Clerk speaking the real wire protocol —
// and checks it from the outside, over REST, as the dashboard would.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/internal/testnet"
)

// binDir holds the binaries built once for all tests of the package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tm-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	pkgs := []string{
		"github.com/tokenmanager/tokenmanager/services/cmd/token",
		"github.com/tokenmanager/tokenmanager/services/cmd/team",
		"github.com/tokenmanager/tokenmanager/services/cmd/audit",
		"github.com/tokenmanager/tokenmanager/services/cmd/usage",
		"github.com/tokenmanager/tokenmanager/services/cmd/health",
		"github.com/tokenmanager/tokenmanager/services/cmd/tmctl",
		"github.com/tokenmanager/tokenmanager/gateway/cmd/gateway",
	}
	build := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building binaries:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address for a process the test starts.
func freeAddr(t *testing.T) string { return testnet.FreeAddr(t) }

// process is one running binary with its captured log.
type process struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan error
}

func (p *process) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// stack is a running Token Manager.
type stack struct {
	t        *testing.T
	url      string // gateway base URL
	clerk    *authtest.FakeClerk
	adminKey string
	env      []string
	procs    map[string]*process
	metrics  map[string]string // service → metrics address
}

// stackOption adjusts a stack before it starts.
type stackOption func(*stackConfig)

type stackConfig struct {
	env      map[string][]string // binary name → extra KEY=value entries
	httpAddr string              // the gateway's listen address (default: a free port)
	dbURL    string              // the database (default: a new one on the shared test server)
}

// withDatabaseURL runs the stack on the database at url (a server the test
// owns and may crash) instead of a new database of the shared test server.
func withDatabaseURL(url string) stackOption {
	return func(c *stackConfig) { c.dbURL = url }
}

// withHTTPAddr makes the gateway listen on addr, for peers that must know
// the gateway's URL before the stack starts (the Worker posts usage to it).
func withHTTPAddr(addr string) stackOption {
	return func(c *stackConfig) { c.httpAddr = addr }
}

// withEnv adds KEY=value entries to the environment of one binary ("token",
// "team", "audit", "usage", "health", "gateway") or of all ("*").
func withEnv(binary string, kv ...string) stackOption {
	return func(c *stackConfig) { c.env[binary] = append(c.env[binary], kv...) }
}

func startStack(t *testing.T, opts ...stackOption) *stack {
	t.Helper()
	sc := &stackConfig{env: map[string][]string{}}
	for _, o := range opts {
		o(sc)
	}
	s := &stack{t: t, clerk: authtest.NewClerk(t), adminKey: auth.NewAdminKey(), procs: map[string]*process{}, metrics: map[string]string{}}
	// A failed test shows what every process logged (registered before the
	// processes' own cleanups, so it runs after them: the logs are complete).
	t.Cleanup(func() {
		if t.Failed() {
			s.dumpLogs()
		}
	})
	dbURL := sc.dbURL
	if dbURL == "" {
		dbURL = dbtest.NewDatabase(t)
	}
	addrs := map[string]string{}
	for _, name := range []string{"token", "team", "audit", "usage", "health"} {
		addrs[name] = freeAddr(t)
		s.metrics[name] = freeAddr(t)
	}
	httpAddr := sc.httpAddr
	if httpAddr == "" {
		httpAddr = freeAddr(t)
	}
	s.url = "http://" + httpAddr
	common := []string{
		"DATABASE_URL=" + dbURL,
		"TM_SERVICE_SECRET=e2e-service-secret-0123456789abcdef0123456789",
		"TM_LOG_LEVEL=debug",
		"CLERK_API_URL=" + s.clerk.URL(),
		"CLERK_SECRET_KEY=" + authtest.SecretKey,
		"ALLOWED_FRONTEND_ORIGINS=" + authtest.DefaultOrigin + ",https://token.example.com",
		"TM_TOKEN_ADDR=" + addrs["token"], "TM_TEAM_ADDR=" + addrs["team"], "TM_AUDIT_ADDR=" + addrs["audit"],
		"TM_USAGE_ADDR=" + addrs["usage"], "TM_HEALTH_ADDR=" + addrs["health"],
		"PATH=" + os.Getenv("PATH"),
	}
	common = append(common, sc.env["*"]...)
	s.env = common

	migrate := exec.Command(filepath.Join(binDir, "tmctl"), "migrate")
	migrate.Env = common
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("tmctl migrate: %v\n%s", err, out)
	}

	extra := map[string][]string{
		"token": {"TOKEN_ENCRYPTION_KEY=" + "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8M="},
		"team":  {"TM_BOOTSTRAP_ADMIN_KEY=" + s.adminKey},
	}
	for _, name := range []string{"team", "token", "audit", "usage", "health"} {
		env := append(append([]string{}, common...), extra[name]...)
		env = append(env, "TM_GRPC_ADDR="+addrs[name], "TM_METRICS_ADDR="+s.metrics[name])
		env = append(env, sc.env[name]...)
		s.start(name, name, env)
	}
	gwEnv := append(append([]string{}, common...), "TM_HTTP_ADDR="+httpAddr, "TM_METRICS_ADDR="+freeAddr(t))
	gwEnv = append(gwEnv, sc.env["gateway"]...)
	s.start("gateway", "gateway", gwEnv)

	// Generous: on a loaded 2-core CI machine seven processes start at once.
	const startup = 60 * time.Second
	deadline := time.Now().Add(startup)
	var last string
	for {
		resp, err := http.Get(s.url + "/health/detailed")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var h struct{ Status string }
			_ = json.Unmarshal(body, &h)
			if h.Status == "healthy" {
				break
			}
			last = string(body)
		} else {
			last = err.Error()
		}
		for name, p := range s.procs {
			select {
			case err := <-p.done:
				p.done <- err
				t.Fatalf("%s exited during start-up: %v", name, err)
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stack not healthy after %v; last /health/detailed: %s", startup, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

func (s *stack) start(name, bin string, env []string) {
	s.t.Helper()
	p := &process{name: name, done: make(chan error, 1)}
	p.cmd = exec.Command(filepath.Join(binDir, bin))
	p.cmd.Env = env
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() { err := p.cmd.Wait(); _ = pw.Close(); p.done <- err }()
	s.procs[name] = p
	s.t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
		}
	})
}

func (s *stack) dumpLogs() {
	for name, p := range s.procs {
		s.t.Logf("---- %s ----\n%s", name, p.Logs())
	}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// send is every e2e HTTP call: a raw JSON body ("" for none, then no
// Content-Type), a bearer credential ("" for none) and extra headers.
func send(t testing.TB, method, url, bearer, body string, header map[string]string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// do calls the gateway without a body.
func (s *stack) do(method, path, bearer string, header map[string]string) response {
	s.t.Helper()
	return send(s.t, method, s.url+path, bearer, "", header)
}

// lastCharChanged is s with its last character replaced by another one (a
// key whose checksum no longer matches): always a different string, which
// appending a fixed character is not when s already ends with it.
func lastCharChanged(s string) string {
	c := byte('x')
	if s[len(s)-1] == c {
		c = 'y'
	}
	return s[:len(s)-1] + string(c)
}

// envOf is the value of key in the stack's environment.
func (s *stack) envOf(key string) string {
	for _, kv := range s.env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	s.t.Fatalf("stack has no %s", key)
	return ""
}

// withDB runs f on a connection to the stack's database, as its
// (superuser) owner.
func (s *stack) withDB(t testing.TB, f func(ctx context.Context, c *pgx.Conn) error) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.envOf("DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := f(ctx, conn); err != nil {
		t.Fatal(err)
	}
}

// exec runs one statement with args on the stack's database.
func (s *stack) exec(t testing.TB, q string, args ...any) {
	t.Helper()
	s.withDB(t, func(ctx context.Context, c *pgx.Conn) error {
		if _, err := c.Exec(ctx, q, args...); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
		return nil
	})
}

// sql runs statements (each may hold several, e.g. a BEGIN … COMMIT) on the
// stack's database.
func (s *stack) sql(t testing.TB, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		s.exec(t, q)
	}
}

// count runs a query that returns one integer.
func (s *stack) count(t testing.TB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	s.withDB(t, func(ctx context.Context, c *pgx.Conn) error { return c.QueryRow(ctx, q, args...).Scan(&n) })
	return n
}

func detail(t *testing.T, r response) string {
	t.Helper()
	var b struct {
		Detail *string `json:"detail"`
	}
	if err := json.Unmarshal(r.Body, &b); err != nil || b.Detail == nil {
		t.Fatalf("body %q is not {\"detail\": string}", r.Body)
	}
	return *b.Detail
}

func TestStack(t *testing.T) {
	s := startStack(t)

	t.Run("health", func(t *testing.T) {
		r := s.do("GET", "/health", "", nil)
		if r.Status != 200 {
			t.Fatalf("status %d", r.Status)
		}
		assertGolden(t, "health.json", r.Body, nil)
	})

	t.Run("health detailed", func(t *testing.T) {
		r := s.do("GET", "/health/detailed", "", nil)
		if r.Status != 200 {
			t.Fatalf("status %d", r.Status)
		}
		var body struct {
			Status string
			Checks map[string]struct{ Status, Message string }
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"database": "healthy", "clerk": "healthy", "cloudflare_kv": "skipped",
			"token_service": "healthy", "team_service": "healthy", "audit_service": "healthy",
			"usage_service": "healthy", "health_service": "healthy",
		}
		for name, st := range want {
			if got := body.Checks[name].Status; got != st {
				t.Errorf("checks.%s.status = %q, want %q (%s)", name, got, st, body.Checks[name].Message)
			}
		}
		if body.Status != "healthy" {
			t.Errorf("status = %q", body.Status)
		}
		assertGolden(t, "health_detailed.json", r.Body, []string{"timestamp", "latency_ms"})
	})

	t.Run("credentials", func(t *testing.T) {
		cases := []struct {
			name   string
			bearer string
			status int
		}{
			{"none", "", 401},
			{"malformed jwt", "not-a-jwt", 401},
			{"expired jwt", s.clerk.SessionToken(t, "user_e2e", authtest.ExpiredFor(time.Minute)), 401},
			{"foreign azp", s.clerk.SessionToken(t, "user_e2e", authtest.AZP("https://evil.example")), 401},
			{"jwt signed by another key", s.clerk.SessionToken(t, "user_e2e", authtest.WrongKey()), 401},
			{"unknown admin key", auth.NewAdminKey(), 401},
			{"admin key with bad checksum", lastCharChanged(s.adminKey), 401},
			{"bootstrap admin key", s.adminKey, 200},
			{"valid session, no roles yet", s.clerk.SessionToken(t, "user_e2e"), 200},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := s.do("GET", "/api/tokens", c.bearer, nil)
				if r.Status != c.status {
					t.Fatalf("GET /api/tokens: %d %s, want %d", r.Status, r.Body, c.status)
				}
				if r.Status >= 400 {
					if d := detail(t, r); c.bearer != "" && strings.Contains(d, c.bearer) {
						t.Errorf("detail echoes the credential: %q", d)
					}
				}
			})
		}
	})

	t.Run("every service authenticates", func(t *testing.T) {
		for _, path := range []string{"/api/tokens", "/api/teams", "/api/dashboard/audit-logs", "/api/usage/stats"} {
			if r := s.do("GET", path, "", nil); r.Status != 401 {
				t.Errorf("GET %s without credential: %d, want 401", path, r.Status)
			}
			// Authenticated: whatever the service answers, it is not an
			// authentication or permission failure.
			if r := s.do("GET", path, s.adminKey, nil); r.Status == 401 || r.Status == 403 {
				t.Errorf("GET %s with the bootstrap admin key: %d %s", path, r.Status, r.Body)
			}
		}
	})

	t.Run("request id flows to the service", func(t *testing.T) {
		r := s.do("GET", "/api/tokens", s.adminKey, map[string]string{"X-Request-Id": "e2e-req-42"})
		if got := r.Header.Get("X-Request-Id"); got != "e2e-req-42" {
			t.Fatalf("X-Request-Id echoed %q", got)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(s.procs["token"].Logs(), `"request_id":"e2e-req-42"`) {
			if time.Now().After(deadline) {
				t.Fatalf("token service log has no line with the request id:\n%s", s.procs["token"].Logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("CORS on errors", func(t *testing.T) {
		r := s.do("GET", "/api/tokens", "", map[string]string{"Origin": "https://token.example.com"})
		if r.Status != 401 || r.Header.Get("Access-Control-Allow-Origin") != "https://token.example.com" {
			t.Errorf("401 without CORS: %d %v", r.Status, r.Header)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get("http://" + s.metrics["token"] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "grpc_server_handled_total") {
			t.Errorf("token /metrics lacks grpc_server_handled_total")
		}
	})

	t.Run("secrets stay out of logs", func(t *testing.T) {
		for name, p := range s.procs {
			logs := p.Logs()
			for _, secret := range []string{s.adminKey, authtest.SecretKey, "e2e-service-secret"} {
				if strings.Contains(logs, secret) {
					t.Errorf("%s log contains a secret", name)
				}
			}
		}
	})

	t.Run("graceful shutdown", func(t *testing.T) {
		for _, name := range []string{"gateway", "health", "usage", "audit", "token", "team"} {
			p := s.procs[name]
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-p.done:
				if err != nil {
					t.Errorf("%s exited with %v after SIGTERM", name, err)
				}
				p.done <- err // for the cleanup
			case <-time.After(10 * time.Second):
				t.Errorf("%s did not stop within 10s of SIGTERM", name)
			}
		}
	})
}

// TestBinariesRefuseBadConfig checks that every binary lists every problem
// at once and exits 2 without starting.
func TestBinariesRefuseBadConfig(t *testing.T) {
	for _, bin := range []string{"token", "team", "audit", "usage", "health", "gateway"} {
		cmd := exec.Command(filepath.Join(binDir, bin))
		cmd.Env = []string{"TM_GRPC_ADDR=nonsense", "TM_HTTP_ADDR=nonsense", "TM_LOG_LEVEL=loud", "TM_SERVICE_SECRET=short"}
		out, err := cmd.CombinedOutput()
		exit, ok := err.(*exec.ExitError)
		if !ok || exit.ExitCode() != 2 {
			t.Errorf("%s: exit %v, want 2\n%s", bin, err, out)
			continue
		}
		if !strings.Contains(string(out), "TM_LOG_LEVEL") {
			t.Errorf("%s: output does not name every problem:\n%s", bin, out)
		}
		if strings.Contains(string(out), "short") && bin != "gateway" {
			t.Errorf("%s: output echoes a secret value:\n%s", bin, out)
		}
	}
}

// tmctl runs the tmctl binary with args against the stack's database and
// returns its output and exit code.
func (s *stack) tmctl(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "tmctl"), args...)
	cmd.Env = s.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}
