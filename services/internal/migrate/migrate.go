package migrate

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
)

// Set is the migrations of one schema.
type Set struct {
	Schema string // PostgreSQL schema the migrations belong to, e.g. "token"
	FS     fs.FS  // holds the migration files
	Dir    string // directory of the files within FS; "" or "." for its root
}

// migration is one parsed file of a Set.
type migration struct {
	version  int
	name     string // file name, e.g. "0001_init.sql"
	sql      string
	checksum string // hex SHA-256 of the file
}

// applied is one row of schema_migrations.
type applied struct {
	version  int
	name     string
	checksum string
}

var fileName = regexp.MustCompile(`^([0-9]+)_[A-Za-z0-9_-]+\.sql$`)

// load reads and validates the files of s: versions must run 1, 2, 3, ...
// with no gap and no duplicate. Files not ending in .sql are ignored.
func (s Set) load() ([]migration, error) {
	if s.Schema == "" {
		return nil, errors.New("migrate: Set.Schema is empty")
	}
	dir := s.Dir
	if dir == "" {
		dir = "."
	}
	entries, err := fs.ReadDir(s.FS, dir)
	if err != nil {
		return nil, fmt.Errorf("migrate: %s: %w", s.Schema, err)
	}
	var ms []migration
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migrate: %s: file %s is not named NNNN_description.sql", s.Schema, e.Name())
		}
		v, err := strconv.Atoi(m[1])
		if err != nil {
			return nil, fmt.Errorf("migrate: %s: file %s: bad version number", s.Schema, e.Name())
		}
		b, err := fs.ReadFile(s.FS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("migrate: %s: %w", s.Schema, err)
		}
		sum := sha256.Sum256(b)
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b), checksum: hex.EncodeToString(sum[:])})
	}
	// fs.ReadDir sorts by name; zero padding may differ, so sort by number.
	slices.SortFunc(ms, func(a, b migration) int { return cmp.Compare(a.version, b.version) })
	for i, m := range ms {
		switch want := i + 1; {
		case m.version == want:
		case i > 0 && m.version == ms[i-1].version:
			return nil, fmt.Errorf("migrate: %s: files %s and %s have the same version %d", s.Schema, ms[i-1].name, m.name, m.version)
		default:
			return nil, fmt.Errorf("migrate: %s: version %d is missing (next file is %s); versions must run 1, 2, 3, ... without gaps", s.Schema, want, m.name)
		}
	}
	return ms, nil
}

// verify checks that the applied rows match the first len(done) files.
func verify(schema string, ms []migration, done []applied) error {
	for i, a := range done {
		if a.version > len(ms) {
			return &VersionError{Schema: schema, Current: done[len(done)-1].version, Expected: len(ms)}
		}
		if a.version != i+1 {
			return fmt.Errorf("migrate: %s: schema_migrations skips version %d", schema, i+1)
		}
		if m := ms[i]; a.checksum != m.checksum {
			return fmt.Errorf("migrate: %s: %s was changed after it was applied as %s (checksum differs); add a new migration instead of editing an applied one", schema, m.name, a.name)
		}
	}
	return nil
}

// VersionError says that a schema is not at the version a binary expects.
type VersionError struct {
	Schema   string
	Current  int // latest version applied to the database
	Expected int // latest version among the binary's files
}

func (e *VersionError) Error() string {
	if e.Current > e.Expected {
		return fmt.Sprintf("schema %q is at version %d, newer than this binary expects (%d): deploy a newer binary", e.Schema, e.Current, e.Expected)
	}
	return fmt.Sprintf("schema %q is at version %d, binary expects %d: run \"tmctl migrate\"", e.Schema, e.Current, e.Expected)
}

// Up applies the migrations of s that the database lacks, creating the
// schema if needed, and returns the names of the files it applied, in order.
// It is safe to run from several processes at once: each migration is
// applied exactly once.
func Up(ctx context.Context, b db.Beginner, s Set) (appliedNames []string, err error) {
	ms, err := s.load()
	if err != nil {
		return nil, err
	}
	for {
		var name string
		err = db.InTx(ctx, b, func(tx pgx.Tx) error {
			var err error
			name, err = applyNext(ctx, tx, s.Schema, ms)
			return err
		})
		if err != nil {
			return appliedNames, err
		}
		if name == "" {
			return appliedNames, nil
		}
		appliedNames = append(appliedNames, name)
	}
}

// applyNext applies the first migration the database lacks and returns its
// name, or "" when there is none.
func applyNext(ctx context.Context, tx pgx.Tx, schema string, ms []migration) (string, error) {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(schema)); err != nil {
		return "", fmt.Errorf("migrate: %s: lock: %w", schema, err)
	}
	ident := pgx.Identifier{schema}.Sanitize()
	_, err := tx.Exec(ctx, fmt.Sprintf(`
		CREATE SCHEMA IF NOT EXISTS %[1]s;
		CREATE TABLE IF NOT EXISTS %[1]s.schema_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			checksum   text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		);
		SET LOCAL search_path TO %[1]s`, ident))
	if err != nil {
		return "", fmt.Errorf("migrate: %s: create schema_migrations: %w", schema, err)
	}
	done, err := readApplied(ctx, tx, schema)
	if err != nil {
		return "", err
	}
	if err := verify(schema, ms, done); err != nil {
		return "", err
	}
	if len(done) == len(ms) {
		return "", nil
	}
	m := ms[len(done)]
	if _, err := tx.Exec(ctx, m.sql); err != nil {
		return "", fmt.Errorf("migrate: %s: %s: %w", schema, m.name, err)
	}
	_, err = tx.Exec(ctx, fmt.Sprintf("INSERT INTO %s.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", ident),
		m.version, m.name, m.checksum)
	if err != nil {
		return "", fmt.Errorf("migrate: %s: record %s: %w", schema, m.name, err)
	}
	return m.name, nil
}

// Check returns nil when every migration of s, and no other, is applied;
// a *VersionError when the schema is behind or ahead of the files; or an
// error when an applied file has changed since.
func Check(ctx context.Context, q db.DBTX, s Set) error {
	ms, err := s.load()
	if err != nil {
		return err
	}
	var exists bool
	err = q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL",
		pgx.Identifier{s.Schema, "schema_migrations"}.Sanitize()).Scan(&exists)
	if err != nil {
		return fmt.Errorf("migrate: %s: %w", s.Schema, err)
	}
	var done []applied
	if exists {
		if done, err = readApplied(ctx, q, s.Schema); err != nil {
			return err
		}
	}
	if err := verify(s.Schema, ms, done); err != nil {
		return err
	}
	if len(done) != len(ms) {
		return &VersionError{Schema: s.Schema, Current: len(done), Expected: len(ms)}
	}
	return nil
}

func readApplied(ctx context.Context, q db.DBTX, schema string) ([]applied, error) {
	rows, _ := q.Query(ctx, fmt.Sprintf("SELECT version, name, checksum FROM %s.schema_migrations ORDER BY version",
		pgx.Identifier{schema}.Sanitize()))
	done, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (applied, error) {
		var a applied
		err := r.Scan(&a.version, &a.name, &a.checksum)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: %s: read schema_migrations: %w", schema, err)
	}
	return done, nil
}

// lockKey is the advisory lock key of schema, the same in every process.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("tokenmanager/migrate/" + schema))
	return int64(h.Sum64())
}

// Fingerprint identifies the schema s builds: its name and every file's
// name and content. Two sets with the same fingerprint migrate a database
// to the same state (dbtest keys its template databases by it).
func (s Set) Fingerprint() (string, error) {
	ms, err := s.load()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", s.Schema)
	for _, m := range ms {
		fmt.Fprintf(h, "%s %s\n", m.name, m.checksum)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
