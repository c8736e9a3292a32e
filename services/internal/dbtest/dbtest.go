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
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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
	return newDatabase(t, "")
}

// newDatabase creates a database as a copy of template ("" for an empty
// one), dropped when the test ends, and returns its URL.
func newDatabase(t testing.TB, template string) string {
	t.Helper()
	admin, adminURL := adminPool(t)
	name := databaseName(t.Name())
	ctx := context.Background()
	ident := pgx.Identifier{name}.Sanitize()
	create := "CREATE DATABASE " + ident
	if template != "" {
		create += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := admin.Exec(ctx, create); err != nil {
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

// NewPool creates a database as NewDatabase does, in the state the
// migration sets build when applied in order, and returns a pool on it that
// is closed when the test ends.
//
// The migrations run once per server for each distinct list of sets: into a
// template database named by their fingerprint, which every later test
// clones (CREATE DATABASE … TEMPLATE, a file copy) instead of migrating
// again. The template is built under a temporary name and renamed when
// complete, so a concurrent test process never clones a half-migrated one.
func NewPool(t testing.TB, sets ...migrate.Set) *pgxpool.Pool {
	t.Helper()
	var dbURL string
	if len(sets) == 0 {
		dbURL = NewDatabase(t)
	} else {
		tpl, err := template(t, sets)
		if err != nil {
			t.Fatalf("dbtest: %v", err)
		}
		dbURL = newDatabase(t, tpl)
	}
	pool, err := db.Connect(context.Background(), dbURL, db.WithApplicationName("dbtest"))
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	t.Cleanup(pool.Close) // runs before the database is dropped
	return pool
}

// templates holds, per fingerprint of a list of sets, the name of its
// template database once this process has made sure it exists.
var templates sync.Map // string -> func() (string, error)

// template returns the name of the template database of sets, creating it
// if no process has yet.
func template(t testing.TB, sets []migrate.Set) (string, error) {
	h := sha256.New()
	for _, s := range sets {
		fp, err := s.Fingerprint()
		if err != nil {
			return "", err
		}
		h.Write([]byte(fp))
	}
	name := "tmtpl_" + hex.EncodeToString(h.Sum(nil))[:24]
	admin, adminURL := adminPool(t)
	once, _ := templates.LoadOrStore(name, sync.OnceValues(func() (string, error) {
		return name, buildTemplate(admin, adminURL, name, sets)
	}))
	return once.(func() (string, error))()
}

// buildTemplate creates template database name with sets applied, unless
// it already exists.
func buildTemplate(admin *pgxpool.Pool, adminURL *url.URL, name string, sets []migrate.Set) error {
	ctx := context.Background()
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	building := name + "_" + hex.EncodeToString(rnd[:])
	ident := pgx.Identifier{building}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return fmt.Errorf("create template %s: %w", building, err)
	}
	dropBuilding := func() { _, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)") }
	u := *adminURL
	u.Path = "/" + building
	pool, err := db.Connect(ctx, u.String(), db.WithApplicationName("dbtest"))
	if err != nil {
		dropBuilding()
		return err
	}
	for _, s := range sets {
		if _, err := migrate.Up(ctx, pool, s); err != nil {
			pool.Close()
			dropBuilding()
			return err
		}
	}
	pool.Close() // a template is copied only while nobody is connected to it
	_, err = admin.Exec(ctx, "ALTER DATABASE "+ident+" RENAME TO "+pgx.Identifier{name}.Sanitize())
	if db.IsDuplicateDatabase(err) {
		dropBuilding() // another process finished first; its template is the same
		return nil
	}
	if err != nil {
		dropBuilding()
		return fmt.Errorf("rename template %s: %w", building, err)
	}
	return nil
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
