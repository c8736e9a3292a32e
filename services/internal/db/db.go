package db

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DBTX is what query functions take, so that they run unchanged on a
// *pgxpool.Pool, a *pgx.Conn or inside a pgx.Tx.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

var (
	_ DBTX = (*pgxpool.Pool)(nil)
	_ DBTX = (*pgx.Conn)(nil)
	_ DBTX = pgx.Tx(nil)
)

// Option adjusts the pool configuration Connect builds, after its defaults
// are applied.
type Option func(*pgxpool.Config)

// WithApplicationName sets application_name, which pg_stat_activity shows
// for each connection. The default is the name of the running binary; a
// value in the URL wins over both.
func WithApplicationName(name string) Option {
	return func(c *pgxpool.Config) { c.ConnConfig.RuntimeParams["application_name"] = name }
}

// WithMaxConns sets the maximum pool size.
func WithMaxConns(n int32) Option {
	return func(c *pgxpool.Config) { c.MaxConns = n }
}

// Pool defaults. The URL's pool_max_conns and connect_timeout parameters
// take precedence.
const (
	defaultMaxConns       = 10
	defaultConnectTimeout = 5 * time.Second
	// Spread reconnections after MaxConnLifetime (1h) so that every
	// connection of a pool does not reconnect at the same moment.
	defaultLifetimeJitter = 5 * time.Minute
)

// Connect returns a pool for url (a postgres:// URL or key=value string)
// after checking that a connection can be made, so that a wrong URL fails
// at start-up rather than at the first request. Its errors never contain the
// URL or its password.
func Connect(ctx context.Context, url string, opts ...Option) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx quotes the URL with the password masked, best effort; keep
		// only the reason, which follows the quoted URL.
		msg := err.Error()
		if i := strings.LastIndex(msg, "`: "); i >= 0 {
			msg = msg[i+len("`: "):]
		}
		return nil, fmt.Errorf("db: invalid connection URL: %s", msg)
	}
	// The parsed config cannot tell a default from a value in the URL.
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = defaultMaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if cfg.MaxConnLifetimeJitter == 0 {
		cfg.MaxConnLifetimeJitter = defaultLifetimeJitter
	}
	params := cfg.ConnConfig.RuntimeParams
	appName, appNameInURL := params["application_name"]
	params["application_name"] = filepath.Base(os.Args[0])
	for _, opt := range opts {
		opt(cfg)
	}
	if appNameInURL {
		params["application_name"] = appName
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, wrap(err, cfg.ConnConfig.Password)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, wrap(err, cfg.ConnConfig.Password)
	}
	return pool, nil
}

// wrap prefixes err, and masks password in it as a last line of defence
// (pgx's messages name host, user and database, not the password), at the
// cost of the error chain in that unlikely case.
func wrap(err error, password string) error {
	if password != "" && strings.Contains(err.Error(), password) {
		return errors.New("db: " + strings.ReplaceAll(err.Error(), password, "xxxxx"))
	}
	return fmt.Errorf("db: %w", err)
}
