// Package dbtest gives each test its own PostgreSQL database, so tests of
// every service run against real PostgreSQL, in parallel, without seeing
// each other's rows.
//
// The server is the one TM_TEST_DATABASE_URL names (`make test` sets it);
// its role must be allowed to CREATE DATABASE. When the variable is unset,
// tests are skipped, except under CI (CI set to anything but "", "0" or
// "false"), where they fail: a CI run that silently skips every database
// test would prove nothing.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/migrate"
)

// EnvVar names the variable holding the admin URL of the test server.
const EnvVar = "TM_TEST_DATABASE_URL"

// NewDatabase creates an empty database with a unique name, drops it when
// the test ends, and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin, adminURL := adminPool(t)
	name := databaseName(t.Name())
	ctx := context.Background()
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("dbtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		// FORCE ends connections a test leaked, such as an unclosed pool.
		if _, err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("dbtest: drop database %s: %v", name, err)
		}
	})
	u := *adminURL
	u.Path = "/" + name
	return u.String()
}

// NewPool creates a database as NewDatabase does, applies the migration
// sets to it in order, and returns a pool on it that is closed when the
// test ends.
func NewPool(t testing.TB, sets ...migrate.Set) *pgxpool.Pool {
	t.Helper()
	dbURL := NewDatabase(t)
	ctx := context.Background()
	pool, err := db.Connect(ctx, dbURL, db.WithApplicationName("dbtest"))
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	t.Cleanup(pool.Close) // runs before the database is dropped
	for _, s := range sets {
		if _, err := migrate.Up(ctx, pool, s); err != nil {
			t.Fatalf("dbtest: %v", err)
		}
	}
	return pool
}

// adminPool returns the pool on the admin URL, shared by every test of the
// process, and the parsed URL.
func adminPool(t testing.TB) (*pgxpool.Pool, *url.URL) {
	t.Helper()
	raw := os.Getenv(EnvVar)
	if raw == "" {
		if ci := os.Getenv("CI"); ci != "" && ci != "0" && ci != "false" {
			t.Fatalf("dbtest: %s is not set; CI must provide a PostgreSQL server for database tests", EnvVar)
		}
		t.Skipf("dbtest: %s is not set; run `make test`, which starts PostgreSQL and sets it", EnvVar)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("dbtest: %s must be a postgres:// URL", EnvVar)
	}
	pool, err := admin()
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	return pool, u
}

var admin = sync.OnceValues(func() (*pgxpool.Pool, error) {
	return db.Connect(context.Background(), os.Getenv(EnvVar), db.WithApplicationName("dbtest"))
})

// databaseName is a unique name that also says which test owns the
// database, for whoever finds it in pg_stat_activity or left behind by a
// killed run.
func databaseName(test string) string {
	var b strings.Builder
	b.WriteString("tmtest_")
	for _, r := range strings.ToLower(test) {
		if b.Len() >= 40 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(rnd[:]))
	return b.String()
}
