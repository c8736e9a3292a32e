package token

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/cftest"
	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/internal/outbox"
	"github.com/tokenmanager/tokenmanager/services/token/keyring"
	"github.com/tokenmanager/tokenmanager/services/token/kvsync"
)

const testKey = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8M="

type fakeTeams map[string]bool

func (f fakeTeams) TeamName(_ context.Context, id string) (string, bool, error) {
	return "Team " + id, f[id], nil
}

func newService(t testing.TB) *Service {
	t.Helper()
	pool := dbtest.NewPool(t, Migrations)
	ring, err := keyring.New(testKey, []keyring.Key{{ID: keyring.DefaultKeyID, Fernet: testKey}})
	if err != nil {
		t.Fatal(err)
	}
	return &Service{Pool: pool, Ring: ring, Teams: fakeTeams{"core-team": true, "backend-team": true, "media-team": true}}
}

var (
	globalAdmin = &auth.Principal{Kind: auth.KindAdminKey, ID: "key_admin", GlobalRole: auth.RoleAdmin}
	outsider    = &auth.Principal{Kind: auth.KindUser, ID: "user_out", TeamRoles: map[string]auth.Role{"media-team": auth.RoleAdmin}}
	service     = &auth.Principal{Kind: auth.KindService, ID: "usage"}
)

func member(id, team string, role auth.Role) *auth.Principal {
	return &auth.Principal{Kind: auth.KindUser, ID: id, Email: id + "@example.com", TeamRoles: map[string]auth.Role{team: role}}
}

func ptr[T any](v T) *T { return &v }

var discard = slog.New(slog.DiscardHandler)

// count returns a single integer from SQL.
func count(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// kvRig is a KV relay of svc against a fake Cloudflare.
type kvRig struct {
	fake   *cftest.Server
	syncer *kvsync.Syncer
	svc    *Service
	stop   func()
}

func newKVRig(t testing.TB, svc *Service) *kvRig {
	t.Helper()
	fake := cftest.New(t)
	client, err := kvsync.NewClient(kvsync.Config{AccountID: cftest.AccountID, APIToken: cftest.APIToken,
		NamespaceID: cftest.NamespaceID, BaseURL: fake.BaseURL(), RateLimit: 1000, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := &kvRig{fake: fake, svc: svc, syncer: NewSyncer(svc, client, discard)}
	r.start(t)
	return r
}

// start runs a relay (again); stop kills it.
func (r *kvRig) start(t testing.TB) {
	relay := NewKVRelay(r.svc, r.syncer, discard, 300*time.Millisecond)
	relay.MinBackoff = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = relay.Run(ctx) })
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(r.stop)
}

// desired is what KV should hold now.
func desired(t testing.TB, svc *Service) map[string]string {
	t.Helper()
	all, err := KVSource{Ring: svc.Ring}.All(context.Background(), svc.Pool)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range all {
		out[k] = string(v)
	}
	// An empty routing table is only written once a route changed (or the
	// reconciler runs); tests that never touch routes do not expect it.
	if out[routesKey] == "{}" {
		delete(out, routesKey)
	}
	return out
}

func kvStrings(f *cftest.Server) map[string]string {
	out := map[string]string{}
	for k, v := range f.KV() {
		out[k] = string(v)
	}
	return out
}

// waitSynced waits until the KV outbox is empty and KV equals PostgreSQL.
func waitSynced(t testing.TB, r *kvRig, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st, err := r.syncer.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Depth == 0 && mapsEqual(desired(t, r.svc), kvStrings(r.fake)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("KV not in sync after %v: depth %d, last error %q\nwant %v\n got %v", within, st.Depth, st.LastError,
				keysOf(desired(t, r.svc)), keysOf(kvStrings(r.fake)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

var _ = outbox.Stats
