package db_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
)

func TestConnect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := dbtest.NewDatabase(t)
	withPoolSize := dbURL + "&pool_max_conns=3"
	if !strings.Contains(dbURL, "?") {
		withPoolSize = dbURL + "?pool_max_conns=3"
	}
	tests := []struct {
		name         string
		url          string
		opts         []db.Option
		wantAppName  string
		wantMaxConns int32
	}{
		{"defaults", dbURL, nil, "db.test", 10},
		{"options", dbURL, []db.Option{db.WithApplicationName("token"), db.WithMaxConns(4)}, "token", 4},
		{"URL settings win", withPoolSize + "&application_name=fromurl", []db.Option{db.WithApplicationName("token")}, "fromurl", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := db.Connect(ctx, tt.url, tt.opts...)
			require.NoError(t, err)
			defer pool.Close()
			var app string
			require.NoError(t, pool.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&app))
			if app != tt.wantAppName {
				t.Errorf("application_name = %q, want %q", app, tt.wantAppName)
			}
			if got := pool.Config().MaxConns; got != tt.wantMaxConns {
				t.Errorf("MaxConns = %d, want %d", got, tt.wantMaxConns)
			}
			if got := pool.Config().ConnConfig.ConnectTimeout; got <= 0 {
				t.Errorf("ConnectTimeout = %v, want a limit", got)
			}
		})
	}
}

func TestConnectErrorsHideThePassword(t *testing.T) {
	t.Parallel()
	const password = "Sup3rS3cretPassw0rd"
	server, err := url.Parse(dbtest.NewDatabase(t))
	require.NoError(t, err)
	server.User = url.UserPassword("postgres", password)
	withDB := func(name string) string { u := *server; u.Path = "/" + name; return u.String() }

	tests := []struct {
		name string
		url  string
	}{
		{"bad port", "postgres://postgres:" + password + "@localhost:notaport/db"},
		{"bad sslmode", withDB("postgres") + "&sslmode=bogus"},
		{"bad escape", "postgres://postgres:" + password + "%zz@localhost/db"},
		{"key=value form", "host=localhost port=x password=" + password},
		{"nothing listening", "postgres://postgres:" + password + "@127.0.0.1:1/db?sslmode=disable"},
		{"unknown database", withDB("no_such_database")},
		{"unknown user", "postgres://nobody_here:" + password + "@" + server.Host + "/postgres?sslmode=disable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, err := db.Connect(context.Background(), tt.url)
			if err == nil {
				pool.Close()
				t.Fatal("Connect succeeded, want an error")
			}
			if strings.Contains(err.Error(), password) || strings.Contains(fmt.Sprintf("%+v", err), password) {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestInTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t)
	_, err := pool.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY)")
	require.NoError(t, err)

	// raise makes PostgreSQL itself fail with code, as a conflicting
	// transaction would.
	raise := func(tx pgx.Tx, code string) error {
		_, err := tx.Exec(ctx, fmt.Sprintf("DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '%s'; END $$", code))
		return err
	}
	errApp := errors.New("application error")
	tests := []struct {
		name         string
		failures     int    // attempts that fail before one succeeds
		code         string // SQLSTATE of those failures, or "" for errApp
		wantAttempts int
		wantErr      func(error) bool
		wantRows     int
	}{
		{"commits", 0, "", 1, nil, 1},
		{"retries serialization failures", 2, "40001", 3, nil, 1},
		{"retries deadlocks", 1, "40P01", 2, nil, 1},
		{"gives up after a few attempts", 100, "40001", 5, db.IsSerializationFailure, 0},
		{"does not retry other database errors", 100, "23505", 1, db.IsUniqueViolation, 0},
		{"does not retry application errors", 100, "", 1, func(err error) bool { return errors.Is(err, errApp) }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pool.Exec(ctx, "TRUNCATE t")
			require.NoError(t, err)
			attempts := 0
			err = db.InTx(ctx, pool, func(tx pgx.Tx) error {
				attempts++
				// Every attempt writes first, so a retried attempt would
				// collide with a leftover of an earlier one.
				if _, err := tx.Exec(ctx, "INSERT INTO t VALUES (1)"); err != nil {
					return err
				}
				switch {
				case attempts > tt.failures:
					return nil
				case tt.code == "":
					return errApp
				default:
					return raise(tx, tt.code)
				}
			})
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !tt.wantErr(err) {
				t.Errorf("InTx() = %v", err)
			}
			if attempts != tt.wantAttempts {
				t.Errorf("fn ran %d times, want %d", attempts, tt.wantAttempts)
			}
			var rows int
			require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&rows))
			if rows != tt.wantRows {
				t.Errorf("%d rows committed, want %d", rows, tt.wantRows)
			}
		})
	}
}

func TestInTxRollsBackOnPanic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t)
	_, err := pool.Exec(ctx, "CREATE TABLE t (id int)")
	require.NoError(t, err)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic was swallowed")
			}
		}()
		_ = db.InTx(ctx, pool, func(tx pgx.Tx) error {
			_, _ = tx.Exec(ctx, "INSERT INTO t VALUES (1)")
			panic("boom")
		})
	}()
	var rows int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&rows))
	if rows != 0 {
		t.Errorf("%d rows committed after a panic, want 0", rows)
	}
}

func TestErrorPredicates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.NewPool(t)
	_, err := pool.Exec(ctx, `
		CREATE TABLE parent (id int CONSTRAINT parent_pkey PRIMARY KEY);
		CREATE TABLE child (parent_id int CONSTRAINT child_parent_fkey REFERENCES parent);
		INSERT INTO parent VALUES (1);`)
	require.NoError(t, err)

	exec := func(sql string) error { _, err := pool.Exec(ctx, sql); return err }
	tests := []struct {
		name           string
		err            error
		unique, fk     bool
		wantConstraint string
	}{
		{"unique", exec("INSERT INTO parent VALUES (1)"), true, false, "parent_pkey"},
		{"foreign key", exec("INSERT INTO child VALUES (2)"), false, true, "child_parent_fkey"},
		{"wrapped", fmt.Errorf("create: %w", exec("INSERT INTO parent VALUES (1)")), true, false, "parent_pkey"},
		{"other database error", exec("SELECT 1/0"), false, false, ""},
		{"not a database error", errors.New("x"), false, false, ""},
		{"nil", nil, false, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := db.IsUniqueViolation(tt.err); got != tt.unique {
				t.Errorf("IsUniqueViolation(%v) = %v", tt.err, got)
			}
			if got := db.IsForeignKeyViolation(tt.err); got != tt.fk {
				t.Errorf("IsForeignKeyViolation(%v) = %v", tt.err, got)
			}
			if got := db.ConstraintName(tt.err); got != tt.wantConstraint {
				t.Errorf("ConstraintName(%v) = %q, want %q", tt.err, got, tt.wantConstraint)
			}
		})
	}
}
