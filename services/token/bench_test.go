package token

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/cftest"
	"github.com/tokenmanager/tokenmanager/services/token/kvsync"
)

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func report(b *testing.B, name string, d []time.Duration) {
	b.ReportMetric(float64(percentile(d, 0.50).Microseconds())/1000, name+"_p50_ms")
	b.ReportMetric(float64(percentile(d, 0.99).Microseconds())/1000, name+"_p99_ms")
}

// BenchmarkPropagation: commit of a create (and of a revoke) → the fake
// Cloudflare API applying the change, through outbox, relay and
// cloudflare-go; beside a direct cloudflare-go write to the same fake.
func BenchmarkPropagation(b *testing.B) {
	ctx := context.Background()
	svc := newService(b)
	rig := newKVRig(b, svc)
	var mu sync.Mutex
	seen := map[string]chan time.Time{}
	wait := func(key string) chan time.Time {
		mu.Lock()
		defer mu.Unlock()
		if seen[key] == nil {
			seen[key] = make(chan time.Time, 1)
		}
		return seen[key]
	}
	rig.fake.OnChange(func(c cftest.Change) {
		select {
		case wait(fmt.Sprint(c.Key, c.Deleted)) <- c.At:
		default:
		}
	})
	var create, revoke, direct []time.Duration
	client, _ := kvsync.NewClient(kvsync.Config{AccountID: cftest.AccountID, APIToken: cftest.APIToken, NamespaceID: cftest.NamespaceID,
		BaseURL: rig.fake.BaseURL(), RateLimit: 1000})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		c, err := svc.CreateToken(ctx, globalAdmin, NewTokenInput{Name: "b", TeamID: "backend-team", Scopes: []string{"*"}})
		if err != nil {
			b.Fatal(err)
		}
		key := "token:" + HashToken(c.Plaintext)
		// The commit happened just before CreateToken returned.
		committed := time.Now()
		at := <-wait(fmt.Sprint(key, false))
		create = append(create, max(at.Sub(committed), 0))
		_ = start
		if err := svc.DeleteToken(ctx, globalAdmin, c.ID); err != nil {
			b.Fatal(err)
		}
		committed = time.Now()
		at = <-wait(fmt.Sprint(key, true))
		revoke = append(revoke, max(at.Sub(committed), 0))

		start = time.Now()
		dk := fmt.Sprintf("direct:%d", i)
		if err := client.Put(ctx, []Pair{{Key: dk, Value: []byte(`{}`)}}); err != nil {
			b.Fatal(err)
		}
		direct = append(direct, time.Since(start))
	}
	b.StopTimer()
	report(b, "create", create)
	report(b, "revoke", revoke)
	report(b, "direct_cfgo", direct)
}

// Pair aliases kvsync.Pair for the benchmark.
type Pair = kvsync.Pair

// BenchmarkListTokens10k: ListTokens (gRPC handler) at 10,000 tokens vs the
// same query run directly with pgx.
func BenchmarkListTokens10k(b *testing.B) {
	ctx := context.Background()
	svc := newService(b)
	_, err := svc.Pool.Exec(ctx, `
		INSERT INTO token.tokens (name, team_id, scopes, created_by, preview, created_at)
		SELECT 'tok-' || g, (ARRAY['backend-team','media-team','core-team'])[1 + g % 3], '{*}', 'user_b', 'ntk_xxxxxxxx...yyyyyy',
		       now() - g * interval '1 minute'
		FROM generate_series(1, 10000) g`)
	if err != nil {
		b.Fatal(err)
	}
	_, err = svc.Pool.Exec(ctx, `INSERT INTO token.token_secrets (hash, token_id) SELECT encode(sha256(id::text::bytea), 'hex'), id FROM token.tokens`)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = svc.Pool.Exec(ctx, `ANALYZE`)
	srv := NewServer(svc, nil)
	pctx := auth.WithPrincipal(ctx, globalAdmin)
	var viaRPC, viaPgx []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		resp, err := srv.ListTokens(pctx, &tokenv1.ListTokensRequest{})
		if err != nil || len(resp.Tokens) != 10000 {
			b.Fatal(err)
		}
		viaRPC = append(viaRPC, time.Since(start))

		start = time.Now()
		// The list's query (store/queries/tokens.sql), rows read but not
		// decoded: the floor under the handler.
		rows, _ := svc.Pool.Query(ctx, `SELECT t.*, coalesce(t.rotation_grace_ends_at > now(), false)
			FROM token.tokens t WHERE t.revoked_at IS NULL AND ($1 OR t.team_id = ANY($2))
			ORDER BY t.created_at DESC, t.id DESC`, true, []string{})
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		if rows.Err() != nil || n != 10000 {
			b.Fatal(rows.Err())
		}
		viaPgx = append(viaPgx, time.Since(start))
	}
	b.StopTimer()
	report(b, "rpc", viaRPC)
	report(b, "pgx", viaPgx)
	b.ReportMetric(float64(percentile(viaRPC, 0.99))/float64(percentile(viaPgx, 0.99)), "p99_ratio")
}

var _ = pgx.Identifier{}
