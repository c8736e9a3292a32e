package team

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/internal/outbox"
)

// MirrorRoles is the outbox handler of TopicClerkRoles: it writes a user's
// current roles from PostgreSQL into their Clerk publicMetadata, so the
// v2.7 dashboard's role-aware screens (which read the session's metadata)
// stay right. It writes the whole state, not a diff: team ids Clerk still
// holds but PostgreSQL no longer does are sent as null, which Clerk's deep
// merge deletes. So a message can be delivered twice, or late, harmlessly.
func MirrorRoles(pool *pgxpool.Pool, dir *Directory, log *slog.Logger) outbox.Handler {
	return func(ctx context.Context, entries []outbox.Entry) []error {
		results := make([]error, len(entries))
		failed := false
		for i, e := range entries {
			var msg struct {
				UserID string `json:"user_id"`
			}
			if err := json.Unmarshal(e.Payload, &msg); err != nil || msg.UserID == "" {
				log.ErrorContext(ctx, "dropping undecodable clerk_roles message", "id", e.ID)
				continue
			}
			if dir == nil {
				continue // Clerk not configured: nothing to mirror to
			}
			if err := mirrorUser(ctx, pool, dir, msg.UserID); err != nil {
				if errors.Is(err, errs.ErrNotFound) {
					// Not a Clerk user (deleted, or a test id): nothing to update.
					log.InfoContext(ctx, "roles not mirrored: user not in Clerk", "user_id", msg.UserID)
					continue
				}
				results[i], failed = err, true
			}
		}
		if !failed {
			return nil
		}
		return results
	}
}

func mirrorUser(ctx context.Context, pool *pgxpool.Pool, dir *Directory, userID string) error {
	p, err := userPrincipal(ctx, pool, userID)
	if err != nil {
		return err
	}
	u, err := dir.GetUser(ctx, userID)
	if err != nil {
		return err
	}
	roles := map[string]any{}
	var meta map[string]any
	_ = json.Unmarshal(u.PublicMetadata, &meta)
	if old, ok := meta[metaTeamRoles].(map[string]any); ok {
		for t := range old {
			roles[t] = nil
		}
	}
	for t, r := range p.TeamRoles {
		roles[t] = string(r)
	}
	patch := map[string]any{metaTeamRoles: roles, metaGlobalRole: nil}
	if p.IsGlobalAdmin() {
		patch[metaGlobalRole] = string(p.GlobalRole)
	}
	if err := dir.UpdatePublicMetadata(ctx, userID, patch); err != nil {
		return fmt.Errorf("mirror roles of %s: %w", userID, err)
	}
	return nil
}
