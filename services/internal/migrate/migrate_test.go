package migrate_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/internal/migrate"
)

// files builds a migration directory "migrations" from name/content pairs.
func files(kv ...string) fstest.MapFS {
	m := fstest.MapFS{"migrations/README.md": {Data: []byte("not a migration")}}
	for i := 0; i < len(kv); i += 2 {
		m["migrations/"+kv[i]] = &fstest.MapFile{Data: []byte(kv[i+1])}
	}
	return m
}

var threeFiles = files(
	"0001_things.sql", "CREATE TABLE things (id int PRIMARY KEY);",
	"0002_seed.sql", "INSERT INTO things VALUES (1);",
	"0003_more.sql", "ALTER TABLE things ADD COLUMN name text; CREATE INDEX things_name ON things (name);",
)

func set(fsys fstest.MapFS) migrate.Set {
	return migrate.Set{Schema: "demo", FS: fsys, Dir: "migrations"}
}

func count(t *testing.T, pool *pgxpool.Pool, sql string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql).Scan(&n))
	return n
}

func TestUpAppliesInOrderOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t)

	err := migrate.Check(ctx, pool, set(threeFiles))
	var verr *migrate.VersionError
	if !errors.As(err, &verr) || verr.Current != 0 || verr.Expected != 3 {
		t.Fatalf("Check before Up = %v, want VersionError 0 -> 3", err)
	}
	if want := `schema "demo" is at version 0, binary expects 3: run "tmctl migrate"`; err.Error() != want {
		t.Errorf("Check error = %q, want %q", err, want)
	}

	got, err := migrate.Up(ctx, pool, set(threeFiles))
	require.NoError(t, err)
	if want := []string{"0001_things.sql", "0002_seed.sql", "0003_more.sql"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("applied %v, want %v", got, want)
	}
	if err := migrate.Check(ctx, pool, set(threeFiles)); err != nil {
		t.Errorf("Check after Up = %v", err)
	}

	got, err = migrate.Up(ctx, pool, set(threeFiles))
	require.NoError(t, err)
	if len(got) != 0 {
		t.Errorf("second Up applied %v, want nothing", got)
	}
	if n := count(t, pool, "SELECT count(*) FROM demo.things"); n != 1 {
		t.Errorf("demo.things has %d rows, want 1", n)
	}
}

func TestUpConcurrentRunnersApplyEachMigrationOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := dbtest.NewDatabase(t)

	const runners = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied []string
		errs    []error
	)
	for range runners {
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, url) // one connection per runner, as separate processes would have
			if err == nil {
				defer conn.Close(ctx)
				var names []string
				names, err = migrate.Up(ctx, conn, set(threeFiles))
				mu.Lock()
				applied = append(applied, names...)
				mu.Unlock()
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Empty(t, errs)
	if len(applied) != 3 {
		t.Errorf("runners applied %v together, want each of the 3 files once", applied)
	}
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var rows, versions int
	require.NoError(t, conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM demo.things), (SELECT count(*) FROM demo.schema_migrations)").Scan(&rows, &versions))
	if rows != 1 || versions != 3 {
		t.Errorf("things rows = %d, versions = %d; want 1 and 3", rows, versions)
	}
}

func TestUpRejectsBadFileSets(t *testing.T) {
	t.Parallel()
	pool := dbtest.NewPool(t)
	tests := []struct {
		name    string
		set     migrate.Set
		wantErr string
	}{
		{"gap", set(files("0001_a.sql", "SELECT 1", "0003_c.sql", "SELECT 1")), "version 2 is missing"},
		{"not starting at 1", set(files("0002_b.sql", "SELECT 1")), "version 1 is missing"},
		{"duplicate", set(files("0001_a.sql", "SELECT 1", "001_b.sql", "SELECT 1")), "same version 1"},
		{"bad name", set(files("0001 a.sql", "SELECT 1")), "not named NNNN_description.sql"},
		{"no schema", migrate.Set{FS: threeFiles, Dir: "migrations"}, "Schema is empty"},
		{"no dir", migrate.Set{Schema: "demo", FS: threeFiles, Dir: "nope"}, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := migrate.Up(context.Background(), pool, tt.set)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Up() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
	if n := count(t, pool, "SELECT count(*) FROM pg_namespace WHERE nspname = 'demo'"); n != 0 {
		t.Errorf("rejected sets created the schema")
	}
}

func TestUpFailedMigrationRollsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t)
	bad := set(files(
		"0001_ok.sql", "CREATE TABLE ok (id int);",
		"0002_bad.sql", "CREATE TABLE half (id int); SELECT 1/0;",
	))

	got, err := migrate.Up(ctx, pool, bad)
	if err == nil || !strings.Contains(err.Error(), "0002_bad.sql") || !strings.Contains(err.Error(), "division by zero") {
		t.Fatalf("Up() = %v, want the division error naming 0002_bad.sql", err)
	}
	if len(got) != 1 || got[0] != "0001_ok.sql" {
		t.Errorf("applied %v, want [0001_ok.sql]", got)
	}
	if n := count(t, pool, "SELECT count(*) FROM pg_tables WHERE schemaname = 'demo' AND tablename = 'half'"); n != 0 {
		t.Error("table of the failed migration exists")
	}
	if n := count(t, pool, "SELECT max(version) FROM demo.schema_migrations"); n != 1 {
		t.Errorf("recorded version %d, want 1", n)
	}

	// Fixing the file lets the next run apply it.
	fixed := set(files("0001_ok.sql", "CREATE TABLE ok (id int);", "0002_bad.sql", "CREATE TABLE half (id int);"))
	got, err = migrate.Up(ctx, pool, fixed)
	require.NoError(t, err)
	if len(got) != 1 || got[0] != "0002_bad.sql" {
		t.Errorf("applied %v after the fix, want [0002_bad.sql]", got)
	}
}

func TestDatabaseAheadOrChanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t, set(threeFiles))

	older := set(files(
		"0001_things.sql", "CREATE TABLE things (id int PRIMARY KEY);",
		"0002_seed.sql", "INSERT INTO things VALUES (1);",
	))
	edited := set(files(
		"0001_things.sql", "CREATE TABLE things (id bigint PRIMARY KEY);",
		"0002_seed.sql", "INSERT INTO things VALUES (1);",
		"0003_more.sql", "ALTER TABLE things ADD COLUMN name text; CREATE INDEX things_name ON things (name);",
	))
	tests := []struct {
		name    string
		set     migrate.Set
		wantErr string
	}{
		{"database newer than files", older, `schema "demo" is at version 3, newer than this binary expects (2)`},
		{"applied file edited", edited, "0001_things.sql was changed after it was applied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for fn, run := range map[string]func() error{
				"Up":    func() error { _, err := migrate.Up(ctx, pool, tt.set); return err },
				"Check": func() error { return migrate.Check(ctx, pool, tt.set) },
			} {
				if err := run(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("%s() = %v, want error containing %q", fn, err, tt.wantErr)
				}
			}
		})
	}
}

func TestCheckBehind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t, set(files("0001_things.sql", "CREATE TABLE things (id int PRIMARY KEY);")))
	err := migrate.Check(ctx, pool, set(threeFiles))
	if want := `schema "demo" is at version 1, binary expects 3: run "tmctl migrate"`; err == nil || err.Error() != want {
		t.Errorf("Check() = %v, want %q", err, want)
	}
}
