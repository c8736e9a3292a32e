package usage

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	usagev1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/usage/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/internal/logging"
	"github.com/tokenmanager/tokenmanager/services/internal/migrate"
	"github.com/tokenmanager/tokenmanager/services/internal/testnet"
)

// childEnv makes the test binary run the usage service instead of tests,
// so the reliability test can SIGKILL a real service process.
const childEnv = "TM_USAGE_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		cfg, _, err := app.Load(os.LookupEnv, LoadConfig)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := Run(ctx, cfg, logging.New(os.Stderr, cfg.LogLevel, "usage")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// privatePG starts a PostgreSQL server the test owns, so it can restart
// it (a crash: no checkpoint, recovery from WAL). ok is false when that is
// impossible here.
func privatePG(t *testing.T) (url string, restart func(), ok bool) {
	t.Helper()
	pg, err := dbtest.StartServer(t, dbtest.ServerOptions{})
	if err != nil {
		t.Logf("no private PostgreSQL: %v", err)
		return "", nil, false
	}
	return pg.URL, func() {
		if err := pg.Restart(); err != nil {
			t.Errorf("restart PostgreSQL: %v", err)
		}
	}, true
}

func freePort(t testing.TB) int { return testnet.FreePort(t) }

// child is the usage service running as a separate process.
type child struct {
	cmd *exec.Cmd
	log *bytes.Buffer
}

func startChild(t *testing.T, env []string) *child {
	t.Helper()
	c := &child{log: &bytes.Buffer{}}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReliability posts signed batches from concurrent clients while the
// usage service is SIGKILLed and restarted twice and PostgreSQL is
// restarted (crash-style) once. Clients retry every request until it is
// acknowledged, as the Worker does. Afterwards every acknowledged event is
// stored exactly once and the rollups agree with the raw events.
func TestReliability(t *testing.T) {
	if testing.Short() {
		t.Skip("reliability load test skipped under -short")
	}
	var adminURL string
	pgURL, restartPG, own := privatePG(t)
	if own {
		adminURL = pgURL
	} else {
		t.Log("no private PostgreSQL possible here: restarting PostgreSQL is replaced by terminating every backend of the test database")
	}
	var dbURL string
	if own {
		dbURL = adminURL
	} else {
		dbURL = dbtest.NewDatabase(t)
	}
	ctx := context.Background()
	pool, err := db.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := migrate.Up(ctx, pool, Migrations); err != nil {
		t.Fatal(err)
	}
	if !own {
		restartPG = func() {
			_, _ = pool.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
		}
	}

	tok := newFakeToken()
	hashes := []string{tok.add(1, "t1", "core-team"), tok.add(2, "t2", "core-team"), tok.add(3, "t3", "backend-team")}
	fakes := serveFakes(t, tok)
	grpcAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	env := []string{
		childEnv + "=1", "DATABASE_URL=" + dbURL, "TM_GRPC_ADDR=" + grpcAddr,
		"TM_METRICS_ADDR=127.0.0.1:" + strconv.Itoa(freePort(t)),
		"TM_SERVICE_SECRET=reliability-service-secret-0123456789abcdef",
		"TM_TOKEN_ADDR=" + fakes.Target(), "TM_TEAM_ADDR=" + fakes.Target(), "TM_AUDIT_ADDR=" + fakes.Target(),
		"USAGE_INGEST_SECRET=" + testSecret, "TM_LOG_LEVEL=info",
	}
	var mu sync.Mutex
	svc := startChild(t, env)
	var logs bytes.Buffer
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		_ = svc.cmd.Process.Kill()
		_ = svc.cmd.Wait()
		if t.Failed() {
			t.Logf("usage logs:\n%s%s", logs.String(), svc.log.String())
		}
	}()

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := usagev1.NewUsageServiceClient(conn)

	const (
		workers   = 8
		perWorker = 150 // requests; 1..20 events each: at most 24,000 events
		loadFor   = 12 * time.Second
	)
	deadline := time.Now().Add(25 * time.Second)
	var acked, attempts, failures atomic.Int64
	var wg sync.WaitGroup
	stopLoad := time.Now().Add(loadFor)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < perWorker && time.Now().Before(stopLoad); r++ {
				n := 1 + (w*7+r*13)%20
				evs := make([]any, n)
				at := time.Now()
				for i := range evs {
					evs[i] = event(hashes[(w+i)%3], at.Add(-time.Duration(i)*time.Millisecond), map[string]any{
						"event_id": fmt.Sprintf("w%d-r%d-e%d", w, r, i), "response_status": 200 + ((r+i)%4)*100, "response_time_ms": (r * i) % 900,
					})
				}
				body := mustJSON(t, map[string]any{"events": evs})
				for {
					attempts.Add(1)
					ts := strconv.FormatInt(time.Now().Unix(), 10)
					cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
					resp, err := client.Ingest(cctx, &usagev1.IngestRequest{Body: body, Signature: Sign([]byte(testSecret), ts, body), SignatureTimestamp: ts})
					cancel()
					if err == nil {
						if int(resp.GetAccepted()+resp.GetDuplicates()) != n {
							t.Errorf("answer %v for %d events", resp, n)
						}
						acked.Add(int64(n))
						break
					}
					failures.Add(1)
					if time.Now().After(deadline) {
						t.Errorf("request w%d-r%d never acknowledged: %v", w, r, err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}

	kill := func() {
		mu.Lock()
		defer mu.Unlock()
		_ = svc.cmd.Process.Signal(syscall.SIGKILL)
		_ = svc.cmd.Wait()
		logs.WriteString(svc.log.String() + "---- SIGKILL, restart ----\n")
		svc = startChild(t, env)
	}
	time.Sleep(2 * time.Second)
	kill()
	time.Sleep(3 * time.Second)
	restartPG()
	time.Sleep(3 * time.Second)
	kill()
	wg.Wait()

	// Let the last process finish cleanly (graceful shutdown flushes).
	mu.Lock()
	_ = svc.cmd.Process.Signal(syscall.SIGTERM)
	_ = svc.cmd.Wait()
	mu.Unlock()

	var rows, distinct int64
	if err := pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT event_id) FROM usage.events").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events acknowledged in %d attempts (%d failed while the service or PostgreSQL was down); %d rows stored",
		acked.Load(), attempts.Load(), failures.Load(), rows)
	if failures.Load() == 0 {
		t.Error("no request failed: the faults did not happen")
	}
	if rows != distinct {
		t.Errorf("%d rows for %d event ids: stored twice", rows, distinct)
	}
	if rows != acked.Load() {
		t.Errorf("%d rows stored, %d events acknowledged", rows, acked.Load())
	}
	checkRollups(t, pool)
	checkDims(t, pool)
}
