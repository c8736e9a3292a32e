package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/backoff"
)

// Beginner starts transactions: *pgxpool.Pool and *pgx.Conn are Beginners.
type Beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// maxAttempts bounds how often InTx runs fn when PostgreSQL keeps reporting
// serialization failures or deadlocks.
const maxAttempts = 5

// txRetry is the pause before retrying a transaction that lost a race.
var txRetry = backoff.Policy{Min: 10 * time.Millisecond, Max: 80 * time.Millisecond}

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
			if !txRetry.Wait(ctx, attempt) {
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
