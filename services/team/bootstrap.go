package team

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/team/store"
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
		if err := teamdb.LockBootstrapKey(ctx, tx); err != nil {
			return err
		}
		if err := teamdb.RevokeOtherBootstrapKeys(ctx, tx, hash); err != nil {
			return fmt.Errorf("revoke previous bootstrap key: %w", err)
		}
		err := teamdb.StoreBootstrapKey(ctx, tx, store.StoreBootstrapKeyParams{KeyHash: hash, Prefix: key[:keyPrefixLen]})
		if err != nil {
			return fmt.Errorf("store bootstrap key: %w", err)
		}
		return nil
	})
}
