package token

import (
	"context"
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/internal/migrate"
)

// migrationsUpTo is the token schema's migrations up to version n.
func migrationsUpTo(t *testing.T, n int) migrate.Set {
	t.Helper()
	names, err := fs.Glob(migrations, "migrations/*.sql")
	require.NoError(t, err)
	out := fstest.MapFS{}
	for _, name := range names[:n] {
		b, err := fs.ReadFile(migrations, name)
		require.NoError(t, err)
		out[name] = &fstest.MapFile{Data: b}
	}
	return migrate.Set{Schema: schema, FS: out, Dir: "migrations"}
}

// TestRouteSecretMigration: secrets stored before they belonged to their
// route (global names, sealed with secret:<name>) keep their values, move to
// secret:<path>#<name> in KV, and the old keys are scheduled for deletion.
func TestRouteSecretMigration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t, migrationsUpTo(t, 4))
	svc := newService(t) // for its keyring only
	ct, err := svc.Ring.Seal([]byte("sk-before"), legacySecretKey("OPENAI_API_KEY"))
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `
		WITH r AS (INSERT INTO token.routes (name, path, backend_url, backend_auth_type, backend_auth_config)
		           VALUES ('OpenAI', '/api/openai', 'https://api.openai.com/v1', 'bearer', '{"token_ref":"OPENAI_API_KEY"}')
		           RETURNING id)
		INSERT INTO token.route_secrets (name, route_id, ciphertext) SELECT 'OPENAI_API_KEY', id, $1 FROM r`, ct)
	require.NoError(t, err)

	_, err = migrate.Up(ctx, pool, Migrations)
	require.NoError(t, err)

	all, err := KVSource{Ring: svc.Ring}.All(ctx, pool)
	require.NoError(t, err)
	require.JSONEq(t, `{"value":"sk-before"}`, string(all["secret:/api/openai#OPENAI_API_KEY"]))
	require.JSONEq(t, `{"/api/openai":{"url":"https://api.openai.com/v1","tags":[],"auth":{"type":"bearer","config":{"token_ref":"/api/openai#OPENAI_API_KEY"}}}}`, string(all["routes"]))
	require.NotContains(t, all, "secret:OPENAI_API_KEY")
	rows, _ := pool.Query(ctx, `SELECT key FROM token.outbox WHERE topic = 'kv' ORDER BY id`)
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"secret:/api/openai#OPENAI_API_KEY", "routes", "secret:OPENAI_API_KEY"}, keys)

	// The next write of the secret seals it under its new key.
	svc.Pool = pool
	var id int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT id FROM token.routes`).Scan(&id))
	_, err = svc.UpdateRoute(ctx, globalAdmin, id, RoutePatch{Secrets: map[string]string{"OPENAI_API_KEY": "sk-after"}})
	require.NoError(t, err)
	require.Zero(t, count(t, pool, `SELECT count(*) FROM token.route_secrets WHERE sealed_as_legacy`))
	all, err = KVSource{Ring: svc.Ring}.All(ctx, pool)
	require.NoError(t, err)
	require.JSONEq(t, `{"value":"sk-after"}`, string(all["secret:/api/openai#OPENAI_API_KEY"]))
}
