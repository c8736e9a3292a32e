package dbtest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/internal/migrate"
)

func TestNewDatabaseIsFreshAndDropped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var name string
	t.Run("use", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, dbtest.NewDatabase(t))
		require.NoError(t, err)
		defer conn.Close(ctx)
		var tables int
		require.NoError(t, conn.QueryRow(ctx,
			"SELECT current_database(), (SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema'))").
			Scan(&name, &tables))
		if !strings.HasPrefix(name, "tmtest_testnewdatabaseisfreshanddropped") || tables != 0 {
			t.Errorf("database %s with %d tables, want a fresh one named after the test", name, tables)
		}
	})
	if name == "" {
		return // skipped: no server
	}
	conn, err := pgx.Connect(ctx, os.Getenv(dbtest.EnvVar))
	require.NoError(t, err)
	defer conn.Close(ctx)
	var exists bool
	require.NoError(t, conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", name).Scan(&exists))
	if exists {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestNewPoolAppliesMigrations(t *testing.T) {
	t.Parallel()
	sets := []migrate.Set{
		{Schema: "one", FS: fstest.MapFS{"0001_a.sql": {Data: []byte("CREATE TABLE one.a (id int)")}}},
		{Schema: "two", FS: fstest.MapFS{"0001_b.sql": {Data: []byte("CREATE TABLE two.b (id int)")}}},
	}
	pool := dbtest.NewPool(t, sets...)
	for _, s := range sets {
		if err := migrate.Check(context.Background(), pool, s); err != nil {
			t.Error(err)
		}
	}
}

// TestNewPoolClonesOneTemplate: the migrations of a list of sets run once,
// into one template; every pool is a copy of it and sees only its own rows;
// a change to any file makes a new template.
func TestNewPoolClonesOneTemplate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const marker = "dbtest_tpl"
	sets := func(sql string) migrate.Set {
		return migrate.Set{Schema: marker, FS: fstest.MapFS{"0001_a.sql": {Data: []byte(sql)}}}
	}
	v1 := sets("CREATE TABLE " + marker + ".a (id int); INSERT INTO " + marker + ".a VALUES (1)")
	a, b := dbtest.NewPool(t, v1), dbtest.NewPool(t, v1)
	_, err := a.Exec(ctx, "INSERT INTO "+marker+".a VALUES (2)")
	require.NoError(t, err)
	var n int
	require.NoError(t, b.QueryRow(ctx, "SELECT count(*) FROM "+marker+".a").Scan(&n))
	require.Equal(t, 1, n, "a clone sees another clone's rows")
	c := dbtest.NewPool(t, sets("CREATE TABLE "+marker+".a (id int)"))
	require.NoError(t, c.QueryRow(ctx, "SELECT count(*) FROM "+marker+".a").Scan(&n))
	require.Equal(t, 0, n, "a changed migration reused the old template")
	fps := map[string]bool{}
	for _, s := range []migrate.Set{v1, sets("CREATE TABLE " + marker + ".a (id int)")} {
		fp, err := s.Fingerprint()
		require.NoError(t, err)
		fps[fp] = true
	}
	require.Len(t, fps, 2)
}

// TestWithoutServer runs this test binary again without TM_TEST_DATABASE_URL
// and checks that a database test is skipped, or fails under CI.
func TestWithoutServer(t *testing.T) {
	if os.Getenv("DBTEST_CHILD") != "" {
		dbtest.NewDatabase(t)
		return
	}
	t.Parallel()
	tests := []struct {
		ci       string
		wantFail bool
		wantOut  string
	}{
		{"", false, "run `make test`"},
		{"false", false, "run `make test`"},
		{"true", true, "CI must provide a PostgreSQL server"},
	}
	for _, tt := range tests {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestWithoutServer$", "-test.v")
			cmd.Env = append(withoutServer(os.Environ()), "DBTEST_CHILD=1", "CI="+tt.ci)
			out, err := cmd.CombinedOutput()
			if failed := err != nil; failed != tt.wantFail || !strings.Contains(string(out), tt.wantOut) {
				t.Errorf("failed = %v, want %v; output:\n%s", failed, tt.wantFail, out)
			}
		})
	}
}

func withoutServer(env []string) []string {
	var kept []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, dbtest.EnvVar+"=") && !strings.HasPrefix(kv, "CI=") {
			kept = append(kept, kv)
		}
	}
	return kept
}
