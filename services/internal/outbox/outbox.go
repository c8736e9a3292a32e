package outbox

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
)

//go:embed table.sql
var tableSQL string

// TableSQL returns the statements that create the outbox table of schema,
// for a service's migration. The same text, with __SCHEMA__ in place of the
// schema name, is in table.sql in this package.
func TableSQL(schema string) string {
	return strings.ReplaceAll(tableSQL, "__SCHEMA__", pgx.Identifier{schema}.Sanitize())
}

// Message is a message to enqueue.
type Message struct {
	Topic string // what the message is about, e.g. "kv"; relays may filter on it
	// Key orders messages: those with the same Topic and non-empty Key are
	// delivered one at a time, oldest first.
	Key string
	// Payload is stored as JSON: a json.RawMessage as it is, anything else
	// through encoding/json.
	Payload any
}

// Entry is a pending message as a Handler receives it.
type Entry struct {
	ID        int64
	Topic     string
	Key       string
	Payload   json.RawMessage
	Attempts  int // failed attempts so far
	CreatedAt time.Time
}

// channel is the NOTIFY channel of schema's outbox.
func channel(schema string) string { return schema + "_outbox" }

// table is the quoted name of schema's outbox table.
func table(schema string) string { return pgx.Identifier{schema, "outbox"}.Sanitize() }

// Enqueue adds msgs to the outbox of schema and notifies the relays. Call it
// with the transaction that makes the change the messages announce: they
// are delivered only if it commits (NOTIFY, too, takes effect at commit).
func Enqueue(ctx context.Context, tx db.DBTX, schema string, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	topics := make([]string, len(msgs))
	keys := make([]string, len(msgs))
	payloads := make([]string, len(msgs))
	for i, m := range msgs {
		if m.Topic == "" {
			return errors.New("outbox: message without a topic")
		}
		b, err := json.Marshal(m.Payload)
		if err != nil {
			return fmt.Errorf("outbox: payload of %s message: %w", m.Topic, err)
		}
		topics[i], keys[i], payloads[i] = m.Topic, m.Key, string(b)
	}
	// One statement, so that rows and notification go together even when
	// tx is not a transaction.
	_, err := tx.Exec(ctx, fmt.Sprintf(`
		WITH inserted AS (
			INSERT INTO %s (topic, key, payload)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[]::jsonb[])
			RETURNING 1
		)
		SELECT pg_notify($4, '') WHERE EXISTS (SELECT FROM inserted)`, table(schema)),
		topics, keys, payloads, channel(schema))
	if err != nil {
		return fmt.Errorf("outbox: enqueue: %w", err)
	}
	return nil
}

// Stats returns how many messages the outbox of schema holds and how long
// ago the oldest of them was enqueued: the lag of delivery.
func Stats(ctx context.Context, q db.DBTX, schema string) (depth int, oldestPendingAge time.Duration, err error) {
	var age float64
	err = q.QueryRow(ctx, fmt.Sprintf(`
		SELECT count(*), COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)), 0)::float8
		FROM %s`, table(schema))).Scan(&depth, &age)
	if err != nil {
		return 0, 0, fmt.Errorf("outbox: stats of %s: %w", schema, err)
	}
	return depth, time.Duration(age * float64(time.Second)), nil
}

// RetryAfter wraps err, returned by a Handler for one entry, to ask that the
// entry be tried again after d rather than after the usual backoff: for a
// receiver that answered HTTP 429 with Retry-After, for example.
func RetryAfter(d time.Duration, err error) error {
	return &retryAfterError{after: d, err: err}
}

type retryAfterError struct {
	after time.Duration
	err   error
}

func (e *retryAfterError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("retry after %v", e.after)
	}
	return fmt.Sprintf("%v (retry after %v)", e.err, e.after)
}

func (e *retryAfterError) Unwrap() error { return e.err }
