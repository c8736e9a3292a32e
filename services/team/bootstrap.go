package team

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
)

// keyPrefixLen is how much of an admin key is kept in clear, to tell keys
// apart in listings: "tmak_" and 7 random characters (42 bits — no help to
// an attacker, who needs the other 190).
const keyPrefixLen = 12

// EnsureBootstrapKey makes key (TM_BOOTSTRAP_ADMIN_KEY) a live global-admin
// admin key. It is idempotent: run at every start-up, by any number of
// replicas at once, it leaves exactly one live bootstrap key — this one. A
// previous bootstrap key (the variable was changed) is revoked, so rotating
// the variable rotates the key.
func EnsureBootstrapKey(ctx context.Context, pool db.Beginner, key string) error {
	if !auth.ParseAdminKey(key) {
		return fmt.Errorf("TM_BOOTSTRAP_ADMIN_KEY is not a valid admin key (generate one with: tmctl admin-key new)")
	}
	hash := auth.HashKey(key)
	return db.InTx(ctx, pool, func(tx pgx.Tx) error {
		// Serialize concurrent start-ups on one lock rather than on the
		// unique index, so no replica ever sees a half-done swap.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('team.bootstrap_admin_key'))`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			UPDATE team.admin_keys SET revoked_at = now()
			 WHERE bootstrap AND revoked_at IS NULL AND key_hash <> $1`, hash); err != nil {
			return fmt.Errorf("revoke previous bootstrap key: %w", err)
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO team.admin_keys (id, name, key_hash, prefix, global_role, bootstrap, created_by)
			VALUES ('ak_bootstrap_' || left($1, 12), 'bootstrap', $1, $2, 'ADMIN', true, 'system')
			ON CONFLICT (key_hash) DO UPDATE SET revoked_at = NULL, bootstrap = true, global_role = 'ADMIN'`,
			hash, key[:keyPrefixLen])
		if err != nil {
			return fmt.Errorf("store bootstrap key: %w", err)
		}
		return nil
	})
}
