package token

import (
	"context"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/outbox"
)

// schema is the token service's PostgreSQL schema.
const schema = "token"

// KVTopic is the outbox topic of KV changes. A message names a KV key only:
// the relay reads the key's wanted value from PostgreSQL when it sends, so a
// late or repeated message can never write an old value (see kvstate.go).
const KVTopic = "kv"

// KV keys (contract §3.2).
const routesKey = "routes"

func tokenKey(hash string) string  { return "token:" + hash }
func secretKey(name string) string { return "secret:" + name }

// enqueueKV schedules the sync of keys in tx's outbox. The outbox key is the
// KV key, so messages of one key are delivered in order.
func enqueueKV(ctx context.Context, tx db.DBTX, keys ...string) error {
	msgs := make([]outbox.Message, 0, len(keys))
	seen := map[string]bool{}
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			msgs = append(msgs, outbox.Message{Topic: KVTopic, Key: k, Payload: struct{}{}})
		}
	}
	return outbox.Enqueue(ctx, tx, schema, msgs...)
}
