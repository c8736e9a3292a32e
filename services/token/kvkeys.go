package token

import (
	"context"
	"strings"

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

func tokenKey(hash string) string { return "token:" + hash }

// tokenKeys are the token:<hash> keys of hashes.
func tokenKeys(hashes []string) []string {
	keys := make([]string, len(hashes))
	for i, h := range hashes {
		keys[i] = tokenKey(h)
	}
	return keys
}

// routeSecretRef is the name under which route path's secret name is
// published: what the routes map's *_ref fields say and what follows
// "secret:" in its KV key. A route's secrets are its own: the name carries
// the path, which no other route has and which never changes, and "#" can
// appear in neither a path nor a secret name, so the split is unambiguous.
// The Worker resolves a reference only when it carries its route's path.
func routeSecretRef(path, name string) string { return path + "#" + name }

// splitRouteSecretRef is the path and name of a routeSecretRef; ok is false
// for anything else.
func splitRouteSecretRef(ref string) (path, name string, ok bool) {
	i := strings.LastIndexByte(ref, '#')
	if i <= 0 || i == len(ref)-1 {
		return "", "", false
	}
	return ref[:i], ref[i+1:], true
}

// routeSecretKey is the KV key of route path's secret name.
func routeSecretKey(path, name string) string { return "secret:" + routeSecretRef(path, name) }

// legacySecretKey is where a secret was published before it belonged to its
// route (secret:<name>; migration 0005), and the associated data it was
// sealed with.
func legacySecretKey(name string) string { return "secret:" + name }

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
