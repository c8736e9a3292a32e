package outbox_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenmanager/tokenmanager/services/internal/dbtest"
	"github.com/tokenmanager/tokenmanager/services/internal/migrate"
	"github.com/tokenmanager/tokenmanager/services/internal/outbox"
	"github.com/tokenmanager/tokenmanager/services/team"
	"github.com/tokenmanager/tokenmanager/services/token"
)

// describeOutbox is the outbox table of schema as PostgreSQL sees it, with
// the schema's name replaced by "S": its columns (type, nullability,
// default) and its indexes.
func describeOutbox(t *testing.T, pool *pgxpool.Pool, schema string) (columns, indexes []string) {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `
		SELECT column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '-')
		FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'outbox' ORDER BY ordinal_position`, schema)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		columns = append(columns, strings.ReplaceAll(c, schema+".", "S."))
	}
	rows, err = pool.Query(ctx, `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'outbox' ORDER BY indexname`, schema)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			t.Fatal(err)
		}
		indexes = append(indexes, strings.ReplaceAll(d, schema+".", "S."))
	}
	if len(columns) == 0 {
		t.Fatalf("schema %s has no outbox", schema)
	}
	return columns, indexes
}

// TestEverySchemasOutboxIsTableSQL: the outbox of every service schema that
// has one is the table TableSQL (table.sql) creates — same columns, types,
// defaults and indexes; a schema may add indexes of its own — so the one
// relay and Enqueue work on each. Migrations are history and cannot be
// generated; this holds them to the one source.
func TestEverySchemasOutboxIsTableSQL(t *testing.T) {
	t.Parallel()
	ref := dbtest.NewPool(t)
	if _, err := ref.Exec(context.Background(), "CREATE SCHEMA ref; "+outbox.TableSQL("ref")); err != nil {
		t.Fatal(err)
	}
	wantCols, wantIdx := describeOutbox(t, ref, "ref")
	for _, set := range []migrate.Set{token.Migrations, team.Migrations} {
		t.Run(set.Schema, func(t *testing.T) {
			t.Parallel()
			cols, idx := describeOutbox(t, dbtest.NewPool(t, set), set.Schema)
			if !slices.Equal(cols, wantCols) {
				t.Errorf("columns:\n%s\nwant (table.sql):\n%s", strings.Join(cols, "\n"), strings.Join(wantCols, "\n"))
			}
			for _, w := range wantIdx {
				if !slices.Contains(idx, w) {
					t.Errorf("missing index %s (has %v)", w, idx)
				}
			}
		})
	}
}
