package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auth/authtest"
	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/usage"
)

// startPrivatePostgres starts a server this test owns, so that it may
// crash it (fsync on: what a crash must not lose is what was acknowledged),
// or skips the test when the server binaries are missing — and fails under
// CI, where a skipped chaos test would prove nothing.
func startPrivatePostgres(t *testing.T) *dbtest.Server {
	t.Helper()
	pg, err := dbtest.StartServer(t, dbtest.ServerOptions{Fsync: true, MaxConnections: 200})
	if errors.Is(err, dbtest.ErrNoServerBinaries) {
		if ci := os.Getenv("CI"); ci == "" || ci == "0" || ci == "false" {
			t.Skipf("%v: cannot crash a private server", err)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return pg
}

// crashSend is one request of the load; a transport error is status 0
// with the error as the body (the load runs outside the test goroutine, so
// it may not stop the test).
func crashSend(url, method, bearer string, body []byte, header map[string]string) response {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return response{Body: []byte(err.Error())}
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := crashClient.Do(req)
	if err != nil {
		return response{Body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// crashClient gives up on a request the stack leaves hanging: that is a
// failure too (status 0), not a test that never ends.
var crashClient = &http.Client{Timeout: 20 * time.Second}

// crashOp is one kind of request of the load.
type crashOp struct {
	name string
	send func(n int64) response
}

// outcome is what one request got.
type outcome struct {
	op, phase string
	status    int
	detail    bool
	retry     string
	body      string
	tokenID   string // a created token
	eventID   string // an acknowledged usage event
}

// TestPostgresCrashRestart hammers the stack with reads and writes while
// PostgreSQL crashes (pg_ctl stop -m immediate), stays down a few seconds
// and restarts. Every answer is the normal success or a 503 with
// {"detail"} and Retry-After — never a 500, never an authentication
// failure; the stack recovers by itself within seconds; and every token
// and usage event acknowledged with 200 exists afterwards.
func TestPostgresCrashRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("PostgreSQL crash test skipped under -short")
	}
	pg := startPrivatePostgres(t)
	s := startStack(t, withDatabaseURL(pg.URL), withEnv("usage", "USAGE_INGEST_SECRET="+e2eIngestSecret))
	defer func() {
		if t.Failed() {
			log, _ := os.ReadFile(pg.LogFile)
			t.Logf("---- postgres ----\n%s", log)
		}
	}()
	key := s.adminKey
	s.clerk.AddUser(authtest.FakeUser{ID: "user_crash_mgr", Email: "crash-mgr@example.com"})
	const team = "crash-team"
	s.teamMust(t, 200, "POST", "/api/teams", key, `{"id":"`+team+`","name":"Crash Team"}`)
	s.teamMust(t, 200, "POST", "/api/users/user_crash_mgr/team-membership", key, `{"team_id":"`+team+`","role":"MANAGER"}`)
	r := s.teamMust(t, 200, "POST", "/api/tokens", key, `{"name":"crash-seed","team_id":"`+team+`","scopes":["*"],"expires_days":30}`)
	seedID := idOf(t, r.Body)
	r = s.teamMust(t, 200, "GET", "/api/tokens/"+seedID+"/reveal", key, "")
	var plain struct{ Token string }
	if err := json.Unmarshal(r.Body, &plain); err != nil || plain.Token == "" {
		t.Fatalf("reveal: %v", err)
	}
	seedHash := e2eHash(plain.Token)

	// Both kinds of credential: the admin key and a person's session (each
	// resolved through the team service, which also reads PostgreSQL).
	person := func() string { return s.clerk.SessionToken(t, "user_crash_mgr") }
	get := func(path string, who func() string) func(int64) response {
		return func(int64) response { return crashSend(s.url+path, "GET", who(), nil, nil) }
	}
	asKey := func() string { return key }
	ops := []crashOp{
		{"GET /api/tokens (key)", get("/api/tokens", asKey)},
		{"GET /api/tokens (session)", get("/api/tokens", person)},
		{"GET /api/teams (session)", get("/api/teams", person)},
		{"GET /api/dashboard/overview (key)", get("/api/dashboard/overview", asKey)},
		{"GET /api/usage/stats (session)", get("/api/usage/stats", person)},
		{"POST /api/tokens (key)", func(n int64) response {
			return crashSend(s.url+"/api/tokens", "POST", key,
				fmt.Appendf(nil, `{"name":"crash-%d","team_id":"%s","scopes":["*"],"expires_days":30}`, n, team), nil)
		}},
		{"POST /api/tokens (session)", func(n int64) response {
			return crashSend(s.url+"/api/tokens", "POST", person(),
				fmt.Appendf(nil, `{"name":"crash-%d","team_id":"%s","scopes":["*"],"expires_days":30}`, n, team), nil)
		}},
		{"POST /api/usage-log", func(n int64) response {
			body, _ := json.Marshal(map[string]any{"event_id": fmt.Sprintf("crash-%d", n), "token_hash": seedHash, "route": "/crash",
				"timestamp": time.Now().UnixMilli(), "response_status": 200, "response_time_ms": 5, "request_method": "GET"})
			ts := strconv.FormatInt(time.Now().Unix(), 10)
			return crashSend(s.url+"/api/usage-log", "POST", "", body, map[string]string{
				"X-TM-Timestamp": ts, "X-TM-Signature": usage.Sign([]byte(e2eIngestSecret), ts, body)})
		}},
	}

	var (
		mu       sync.Mutex
		outcomes []outcome
		phase    atomic.Value
		seq      atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	phase.Store("before")
	const workers = 4
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				op := ops[i%len(ops)]
				n := seq.Add(1)
				ph := phase.Load().(string)
				resp := op.send(n)
				o := outcome{op: op.name, phase: ph, status: resp.Status, retry: resp.Header.Get("Retry-After"), body: truncateBody(resp.Body)}
				var b struct {
					Detail *string `json:"detail"`
					ID     json.Number
				}
				if json.Unmarshal(resp.Body, &b) == nil {
					o.detail = b.Detail != nil
					if resp.Status == 200 && strings.HasPrefix(op.name, "POST /api/tokens") {
						o.tokenID = b.ID.String()
					}
				}
				if resp.Status == 200 && op.name == "POST /api/usage-log" {
					o.eventID = fmt.Sprintf("crash-%d", n)
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	time.Sleep(2 * time.Second)
	phase.Store("down")
	crashedAt := time.Now()
	if err := pg.Crash(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	phase.Store("restarting")
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	restartedAt := time.Now()
	phase.Store("after")

	// Recovered: every kind of request succeeds again, in a row.
	const recoveryLimit = 20 * time.Second
	recovered := time.Duration(-1)
	for time.Since(restartedAt) < recoveryLimit {
		ok := true
		for _, op := range ops {
			if resp := op.send(seq.Add(1)); resp.Status != 200 {
				ok = false
				break
			}
		}
		if ok {
			recovered = time.Since(restartedAt)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Then an operator (or a failover) ends every session of the stack,
	// five times: each open connection gets 57P01 admin_shutdown, which is
	// Unavailable as well.
	time.Sleep(time.Second)
	phase.Store("terminated")
	var terminated int64
	for range 5 {
		s.withDB(t, func(ctx context.Context, c *pgx.Conn) error {
			var n int64
			err := c.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`).Scan(&n)
			terminated += n
			return err
		})
		time.Sleep(300 * time.Millisecond)
	}
	phase.Store("after")
	time.Sleep(2 * time.Second) // more load after recovery
	close(stop)
	wg.Wait()

	// Every answer: success, or 503 with {"detail"} and Retry-After.
	// (The phase is the one a request was sent in.) Each kind of wrong
	// answer is reported three times at most, with its count.
	counts := map[string]map[int]int{}
	wrong := map[string]int{}
	var created, acked []string
	for _, o := range outcomes {
		if counts[o.phase] == nil {
			counts[o.phase] = map[int]int{}
		}
		counts[o.phase][o.status]++
		var problem string
		switch {
		case o.status == 200:
		case o.status == 503 && o.detail && o.retry != "":
		case o.status == 503:
			problem = fmt.Sprintf("%s (%s): 503 without {\"detail\"} or Retry-After (%q)", o.op, o.phase, o.retry)
		default:
			problem = fmt.Sprintf("%s (%s): %d, want 200 or 503", o.op, o.phase, o.status)
		}
		if problem != "" {
			if wrong[problem]++; wrong[problem] <= 3 {
				t.Errorf("%s: %s", problem, o.body)
			}
		}
		if o.tokenID != "" {
			created = append(created, o.tokenID)
		}
		if o.eventID != "" {
			acked = append(acked, o.eventID)
		}
	}
	for problem, n := range wrong {
		t.Errorf("%d× %s", n, problem)
	}
	for _, ph := range []string{"before", "down", "restarting", "terminated", "after"} {
		t.Logf("%-10s %v", ph, counts[ph])
	}
	t.Logf("PostgreSQL down for %v; every request kind succeeded %v after the restart; %d requests, %d tokens and %d usage events acknowledged",
		restartedAt.Sub(crashedAt).Round(time.Millisecond), recovered.Round(time.Millisecond), len(outcomes), len(created), len(acked))
	// The test is worth something only if the outage was seen, and load ran
	// on both sides of it.
	if counts["down"][503] == 0 {
		t.Errorf("no 503 while PostgreSQL was down: the crash was not observed")
	}
	if terminated == 0 {
		t.Errorf("pg_terminate_backend ended no session of the stack")
	}
	t.Logf("%d sessions terminated", terminated)
	if counts["before"][200] == 0 || counts["after"][200] == 0 {
		t.Errorf("no success before or after the outage: %v", counts)
	}
	if recovered < 0 {
		t.Fatalf("the stack did not recover within %v of PostgreSQL's restart", recoveryLimit)
	}

	// Nothing acknowledged was lost.
	r = s.teamMust(t, 200, "GET", "/api/tokens", key, "")
	var list []struct{ ID json.Number }
	if err := json.Unmarshal(r.Body, &list); err != nil {
		t.Fatalf("token list: %v", err)
	}
	have := map[string]bool{}
	for _, tok := range list {
		have[tok.ID.String()] = true
	}
	for _, id := range created {
		if !have[id] {
			t.Errorf("token %s was created with 200 but is gone after the crash", id)
		}
	}
	if len(acked) > 0 {
		var n int64
		s.withDB(t, func(ctx context.Context, c *pgx.Conn) error {
			return c.QueryRow(ctx, `SELECT count(DISTINCT event_id) FROM usage.events WHERE event_id = ANY($1)`, acked).Scan(&n)
		})
		if n != int64(len(acked)) {
			t.Errorf("%d usage events acknowledged, %d stored after the crash", len(acked), n)
		}
	}
	if len(created) == 0 || len(acked) == 0 {
		t.Errorf("no write was acknowledged (%d tokens, %d usage events): the loss check proves nothing", len(created), len(acked))
	}
}
