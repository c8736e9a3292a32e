package db

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Beginner starts transactions: *pgxpool.Pool and *pgx.Conn are Beginners.
type Beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// maxAttempts bounds how often InTx runs fn when PostgreSQL keeps reporting
// serialization failures or deadlocks.
const maxAttempts = 5

// InTx runs fn in a read-committed transaction and commits it; see InTxWith.
func InTx(ctx context.Context, b Beginner, fn func(pgx.Tx) error) error {
	return InTxWith(ctx, b, pgx.TxOptions{}, fn)
}

// InTxWith runs fn in a transaction with opts and commits it, or rolls it
// back when fn returns an error or panics. When fn or the commit fails with
// a serialization failure or a deadlock (SQLSTATE 40001, 40P01), which
// PostgreSQL asks clients to retry, InTxWith retries the whole transaction a
// few times after a short jittered pause; any other error is returned as is.
// So fn may run more than once and must have no effects outside tx.
func InTxWith(ctx context.Context, b Beginner, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	var err error
	for attempt := range maxAttempts {
		if attempt > 0 {
			// 5-10ms, 10-20ms, 20-40ms, 40-80ms: enough for the competing
			// transaction to finish, jittered so that retries do not collide.
			d := time.Duration(5<<(attempt-1)) * time.Millisecond
			d += rand.N(d)
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return fmt.Errorf("%w (gave up retrying: %w)", err, ctx.Err())
			}
		}
		if err = runTx(ctx, b, opts, fn); !IsSerializationFailure(err) {
			return err
		}
	}
	return err
}

func runTx(ctx context.Context, b Beginner, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	tx, err := b.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	// After Commit, Rollback is a no-op; after a panic or an error, it ends
	// the transaction before the connection goes back to the pool.
	defer func() { _ = tx.Rollback(ctx) }()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// SQLSTATE codes this package tests for.
const (
	codeUniqueViolation      = "23505"
	codeForeignKeyViolation  = "23503"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
	codeDuplicateDatabase    = "42P04"
)

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// IsSerializationFailure reports whether err is a serialization failure or
// a deadlock: the transaction lost a race and may succeed if run again.
func IsSerializationFailure(err error) bool {
	c := pgCode(err)
	return c == codeSerializationFailure || c == codeDeadlockDetected
}

// IsUniqueViolation reports whether err is a unique constraint violation.
func IsUniqueViolation(err error) bool { return pgCode(err) == codeUniqueViolation }

// IsForeignKeyViolation reports whether err is a foreign key violation.
func IsForeignKeyViolation(err error) bool { return pgCode(err) == codeForeignKeyViolation }

// IsDuplicateDatabase reports whether err says a database of that name
// already exists.
func IsDuplicateDatabase(err error) bool { return pgCode(err) == codeDuplicateDatabase }

// ConstraintName returns the name of the constraint err violated, or "".
// Stores use it to tell which unique key a duplicate hit.
func ConstraintName(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.ConstraintName
	}
	return ""
}
