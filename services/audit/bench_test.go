package audit

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/internal/migrate"
)

// benchRows is the size of the read benchmark's trail.
const benchRows = 1_000_000

// The million-event database is built once per process, on first use by a
// benchmark, and dropped by TestMain: benchmark functions run several times
// (b.N ramp-up) and must not pay for it again.
var (
	bigOnce sync.Once
	bigPool *pgxpool.Pool
	bigName string
	bigErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if bigPool != nil {
		bigPool.Close()
		if conn, err := pgx.Connect(context.Background(), os.Getenv(dbtest.EnvVar)); err == nil {
			_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{bigName}.Sanitize()+" WITH (FORCE)")
			_ = conn.Close(context.Background())
		}
	}
	os.Exit(code)
}

// bigTrail returns a pool on a database holding benchRows events, loaded
// with COPY: 50 teams, 6 actions, 8 entity types, 500 actors, a year of
// occurred_at increasing with id. The hash columns hold placeholders — the
// read benchmark does not need a valid chain (VerifyChain would report
// event 1 broken), and computing one would only slow the set-up.
func bigTrail(b *testing.B) *pgxpool.Pool {
	b.Helper()
	raw := os.Getenv(dbtest.EnvVar)
	if raw == "" {
		b.Skipf("%s is not set", dbtest.EnvVar)
	}
	bigOnce.Do(func() { bigPool, bigErr = buildBigTrail(raw) })
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return bigPool
}

func buildBigTrail(adminURL string) (*pgxpool.Pool, error) {
	ctx := context.Background()
	bigName = fmt.Sprintf("tmbench_audit_%d", time.Now().UnixNano())
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{bigName}.Sanitize()); err != nil {
		return nil, err
	}
	u, err := url.Parse(adminURL)
	if err != nil {
		return nil, err
	}
	u.Path = "/" + bigName
	pool, err := db.Connect(ctx, u.String(), db.WithApplicationName("audit-bench"), db.WithMaxConns(16))
	if err != nil {
		return nil, err
	}
	if _, err := migrate.Up(ctx, pool, Migrations); err != nil {
		return nil, err
	}
	actions := []string{"create", "update", "delete", "reveal", "rotate", "revoke"}
	entities := []string{"token", "route", "team", "membership", "invitation", "admin_key", "secret", "user"}
	start := time.Now().Add(-365 * 24 * time.Hour).UTC()
	step := 365 * 24 * time.Hour / benchRows
	fake := strings.Repeat("f", 64)
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i == benchRows {
			return nil, nil
		}
		i++
		team := fmt.Sprintf("team-%02d", i%50)
		if i%20 == 0 {
			team = ""
		}
		actor := i * 7919 % 500
		at := start.Add(time.Duration(i) * step)
		return []any{int64(i), "bench-" + strconv.Itoa(i), at, at, "user", fmt.Sprintf("user_%d", actor),
			fmt.Sprintf("user%d@example.com", actor), "Bench User", actions[i%len(actions)], entities[i*31%len(entities)],
			strconv.Itoa(i % 5000), team, fmt.Sprintf(`{"name":"token-%d","team_id":"%s","scopes":["*"]}`, i%5000, team),
			"req-" + strconv.Itoa(i), "203.0.113.7", "bench/1.0", fake, fake}, nil
	})
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"audit", "events"}, insertColumns, src); err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, `UPDATE audit.chain_head SET last_id = $1, last_hash = $2`, benchRows, fake); err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE audit.events`); err != nil {
		return nil, err
	}
	return pool, nil
}

type listCase struct {
	name string
	req  *auditv1.ListAuditLogsRequest
	// scoped runs the case as a member of three teams instead of the
	// global admin.
	scoped bool
}

func listCases() []listCase {
	now := time.Now().UTC()
	return []listCase{
		{"everything", &auditv1.ListAuditLogsRequest{}, false},
		{"action", &auditv1.ListAuditLogsRequest{Action: "reveal"}, false},
		{"team", &auditv1.ListAuditLogsRequest{TeamId: "team-07"}, false},
		{"entity+action", &auditv1.ListAuditLogsRequest{EntityType: "route", Action: "delete"}, false},
		{"actor e-mail", &auditv1.ListAuditLogsRequest{Actor: "User42@example.com"}, false},
		{"last week", &auditv1.ListAuditLogsRequest{From: timestamppb.New(now.Add(-7 * 24 * time.Hour)), To: timestamppb.New(now)}, false},
		{"page 20", &auditv1.ListAuditLogsRequest{Limit: wrapperspb.Int32(50), Offset: 1000}, false},
		{"scoped member", &auditv1.ListAuditLogsRequest{}, true},
		{"scoped member, action", &auditv1.ListAuditLogsRequest{Action: "create"}, true},
	}
}

// BenchmarkListAuditLogs1M measures ListAuditLogs over a million events,
// through the gRPC handler (auth, validation, the two queries, proto
// conversion, the wire) and the same two queries run directly on the pool,
// alternately in the same loop, and reports p50/p99 of both and the ratio.
func BenchmarkListAuditLogs1M(b *testing.B) {
	pool := bigTrail(b)
	f := newFixtureOn(b, pool)
	res := &auth.Principal{TeamRoles: map[string]auth.Role{"team-01": auth.RoleViewer, "team-02": auth.RoleViewer, "team-03": auth.RoleViewer}}
	scopedKey := f.member(res)
	cases := listCases()
	ctx := context.Background()
	var viaGRPC, direct []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c := cases[i%len(cases)]
		cred, p := f.admin, &auth.Principal{GlobalRole: auth.RoleAdmin}
		if c.scoped {
			cred, p = scopedKey, res
		}
		t := time.Now()
		if _, err := f.client.ListAuditLogs(as(cred), c.req); err != nil {
			b.Fatal(err)
		}
		viaGRPC = append(viaGRPC, time.Since(t))

		fl, err := filterOf(c.req.Action, c.req.EntityType, c.req.TeamId, c.req.Actor, c.req.From, c.req.To)
		if err != nil {
			b.Fatal(err)
		}
		limit := 50
		if c.req.Limit != nil {
			limit = int(c.req.Limit.Value)
		}
		t = time.Now()
		if _, err := f.svc.List(ctx, p, fl, limit, int(c.req.Offset)); err != nil {
			b.Fatal(err)
		}
		direct = append(direct, time.Since(t))
	}
	b.StopTimer()
	g50, g99 := percentiles(viaGRPC)
	d50, d99 := percentiles(direct)
	b.ReportMetric(ms(g50), "grpc_p50_ms")
	b.ReportMetric(ms(g99), "grpc_p99_ms")
	b.ReportMetric(ms(d50), "sql_p50_ms")
	b.ReportMetric(ms(d99), "sql_p99_ms")
	b.ReportMetric(ms(g99)/ms(d99), "p99_ratio")
}

// BenchmarkListAuditLogs1MPerCase reports p99 per filter, to see which
// filter is the slow one.
func BenchmarkListAuditLogs1MPerCase(b *testing.B) {
	pool := bigTrail(b)
	f := newFixtureOn(b, pool)
	scoped := f.member(&auth.Principal{TeamRoles: map[string]auth.Role{"team-01": auth.RoleViewer, "team-02": auth.RoleViewer, "team-03": auth.RoleViewer}})
	for _, c := range listCases() {
		b.Run(c.name, func(b *testing.B) {
			cred := f.admin
			if c.scoped {
				cred = scoped
			}
			var d []time.Duration
			for b.Loop() {
				t := time.Now()
				if _, err := f.client.ListAuditLogs(as(cred), c.req); err != nil {
					b.Fatal(err)
				}
				d = append(d, time.Since(t))
			}
			p50, p99 := percentiles(d)
			b.ReportMetric(ms(p50), "p50_ms")
			b.ReportMetric(ms(p99), "p99_ms")
		})
	}
}

// BenchmarkRecord measures appending batches of 1000 events through
// Record (validation, dedup check, chain lock, hashing, COPY) against a
// plain multi-row INSERT of the same rows into a table of the same shape
// and indexes without the chain, in the same loop, and reports events per
// second of both and their ratio.
func BenchmarkRecord(b *testing.B) {
	const batch = 1000
	f := newFixture(b)
	ctx := context.Background()
	if _, err := f.pool.Exec(ctx, `CREATE TABLE audit.plain (LIKE audit.events INCLUDING ALL)`); err != nil {
		b.Fatal(err)
	}
	var recordT, plainT time.Duration
	var n int
	for i := 0; b.Loop(); i++ {
		events := make([]*auditv1.AuditEvent, batch)
		for j := range events {
			events[j] = ev(fmt.Sprintf("b%d-%d", i, j), "create", "token", "alpha", map[string]any{"name": "t", "scopes": []any{"*"}})
		}
		t := time.Now()
		if _, err := f.client.Record(as(f.service), &auditv1.RecordRequest{Events: events}); err != nil {
			b.Fatal(err)
		}
		recordT += time.Since(t)

		// The same rows as plain INSERT ... VALUES (...), (...).
		var sb strings.Builder
		args := make([]any, 0, batch*len(insertColumns))
		sb.WriteString("INSERT INTO audit.plain (" + strings.Join(insertColumns, ",") + ") VALUES ")
		for j, e := range events {
			if j > 0 {
				sb.WriteByte(',')
			}
			sb.WriteByte('(')
			for k := range insertColumns {
				if k > 0 {
					sb.WriteByte(',')
				}
				sb.WriteString("$" + strconv.Itoa(len(args)+k+1))
			}
			sb.WriteByte(')')
			args = append(args, int64(n+j+1), e.EventId, e.OccurredAt.AsTime(), time.Now(), e.Actor.Type, e.Actor.Id, e.Actor.Email,
				e.Actor.Name, e.Action, e.EntityType, e.EntityId, e.TeamId, `{"name":"t","scopes":["*"]}`, e.RequestId,
				e.ClientIp, e.UserAgent, GenesisHash, GenesisHash)
		}
		t = time.Now()
		if _, err := f.pool.Exec(ctx, sb.String(), args...); err != nil {
			b.Fatal(err)
		}
		plainT += time.Since(t)
		n += batch
	}
	b.ReportMetric(float64(n)/recordT.Seconds(), "record_events/s")
	b.ReportMetric(float64(n)/plainT.Seconds(), "insert_events/s")
	b.ReportMetric(recordT.Seconds()/plainT.Seconds(), "record/insert_time_ratio")
}

// member mints an admin key for a principal with the given roles.
func (f *fixture) member(p *auth.Principal) string {
	return f.addKey(p)
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)*50/100], s[min(len(s)-1, len(s)*99/100)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
