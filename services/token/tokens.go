package token

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auditlog"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/authz"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/token/store"
)

// Token is a token as the service shows it (never its plaintext).
type Token struct {
	ID          int64
	Name        string
	TeamID      string
	CreatedBy   string
	Description string
	Preview     string
	Scopes      []string
	CreatedAt   time.Time
	ExpiresAt   *time.Time
	LastUsed    *time.Time
	RevokedAt   *time.Time
	// GraceEndsAt is when the last rotated-out secret stops working, if one still does.
	GraceEndsAt *time.Time
}

// Status is "active", "expired" or "revoked" at now.
func (t *Token) Status(now time.Time) string {
	switch {
	case t.RevokedAt != nil:
		return "revoked"
	case t.ExpiresAt != nil && !t.ExpiresAt.After(now):
		return "expired"
	}
	return "active"
}

// NewTokenInput is what CreateToken needs.
type NewTokenInput struct {
	Name, TeamID, Description string
	Scopes                    []string
	ExpiresDays               *int32
}

// Created is a new (or rotated) token with its plaintext, shown once.
type Created struct {
	Token
	Plaintext string
	// PreviousValidUntil is when the previous secret stops working (rotation).
	PreviousValidUntil time.Time
}

// tokenOf is the domain form of a stored token. Its grace end is the
// stored one while it is still ahead (in_grace, compared with the
// database's now()).
func tokenOf(r *store.TokenRow) *Token {
	t := &Token{}
	fillToken(t, r)
	return t
}

func fillToken(t *Token, r *store.TokenRow) {
	row := r.TokenToken
	*t = Token{ID: row.ID, Name: row.Name, TeamID: row.TeamID, CreatedBy: row.CreatedBy, Description: row.Description,
		Preview: row.Preview, Scopes: row.Scopes, CreatedAt: row.CreatedAt, ExpiresAt: row.ExpiresAt, LastUsed: row.LastUsed,
		RevokedAt: row.RevokedAt}
	if r.InGrace {
		t.GraceEndsAt = row.RotationGraceEndsAt
	}
}

// syncGraceEnd recomputes tokens.rotation_grace_ends_at of the given tokens
// from their secrets, in the transaction that changed the secrets.
func syncGraceEnd(ctx context.Context, tx db.DBTX, tokenIDs []int64) error {
	if len(tokenIDs) == 0 {
		return nil
	}
	return queries.SyncGraceEnd(ctx, tx, tokenIDs)
}

// CreateToken issues a token for in.TeamID.
func (s *Service) CreateToken(ctx context.Context, p *auth.Principal, in NewTokenInput) (*Created, error) {
	if err := checkText("name", in.Name, maxNameLen, true); err != nil {
		return nil, err
	}
	if err := checkTeamID(in.TeamID); err != nil {
		return nil, err
	}
	if err := checkText("description", in.Description, maxTokenDescLen, false); err != nil {
		return nil, err
	}
	scopes, err := normalizeScopes(in.Scopes)
	if err != nil {
		return nil, err
	}
	if in.ExpiresDays != nil && (*in.ExpiresDays < 1 || *in.ExpiresDays > maxExpiresDays) {
		return nil, errs.Invalid("expires_days must be between 1 and 3650, or null for a token that never expires")
	}
	if err := authz.Authorize(p, authz.TokenCreate, authz.Resource{Team: in.TeamID}); err != nil {
		return nil, err
	}
	teamName, ok, err := s.Teams.TeamName(ctx, in.TeamID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errs.Invalid("Team does not exist: " + in.TeamID)
	}

	now := s.now().UTC()
	var expires *time.Time
	if in.ExpiresDays != nil {
		e := now.Add(time.Duration(*in.ExpiresDays) * 24 * time.Hour)
		expires = &e
	}
	plain := NewToken()
	hash := HashToken(plain)
	ct, err := s.Ring.Seal([]byte(plain), tokenKey(hash))
	if err != nil {
		return nil, err
	}
	out := &Created{Plaintext: plain, Token: Token{Name: in.Name, TeamID: in.TeamID, CreatedBy: p.ID,
		Description: in.Description, Preview: Preview(plain), Scopes: scopes, CreatedAt: now, ExpiresAt: expires}}
	err = db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := checkScopesKnown(ctx, tx, scopes); err != nil {
			return err
		}
		if err := claimTeam(ctx, tx, in.TeamID); err != nil {
			return err
		}
		id, err := queries.InsertToken(ctx, tx, store.InsertTokenParams{Name: in.Name, TeamID: in.TeamID, CreatedBy: p.ID,
			Description: in.Description, Scopes: scopes, Preview: out.Preview, CreatedAt: now, ExpiresAt: expires})
		if err != nil {
			return err
		}
		out.ID = id
		if err := queries.InsertTokenSecret(ctx, tx, store.InsertTokenSecretParams{Hash: hash, TokenID: id, Ciphertext: &ct, CreatedAt: now}); err != nil {
			return err
		}
		if err := enqueueKV(ctx, tx, tokenKey(hash)); err != nil {
			return err
		}
		return auditlog.Record(ctx, tx, schema, auditlog.Change{
			Action: "create", EntityType: "token", EntityID: strconv.FormatInt(out.ID, 10), Team: in.TeamID,
			Details: map[string]any{"name": in.Name, "team_id": in.TeamID, "team_name": teamName, "scopes": anySlice(scopes),
				"description": in.Description, "expires_at": timeOrNil(expires)},
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// claimTeam locks the team's row of token.team_registry for the rest of tx,
// creating it if need be, and refuses a retired team. A token inserted in tx
// is then ordered against RetireTeam: whichever locks the row second sees
// the other's commit.
func claimTeam(ctx context.Context, tx pgx.Tx, team string) error {
	retired, err := lockTeam(ctx, tx, team)
	if err != nil {
		return err
	}
	if retired {
		return errs.Invalid("Team does not exist: " + team)
	}
	return nil
}

// lockTeam locks (creating it if need be) the team's registry row for the rest
// of tx and says whether the team is retired.
func lockTeam(ctx context.Context, tx pgx.Tx, team string) (retired bool, err error) {
	retired, err = queries.LockTeam(ctx, tx, team)
	if err != nil {
		return false, fmt.Errorf("lock team: %w", err)
	}
	return retired, nil
}

// RetireTeam ends a team's life here, for the team service's DeleteTeam: it
// refuses while the team owns live tokens and otherwise marks the id retired,
// after which claimTeam refuses it for good. Calling it again is harmless.
func (s *Service) RetireTeam(ctx context.Context, team string) error {
	if err := checkTeamID(team); err != nil {
		return err
	}
	return db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		if _, err := lockTeam(ctx, tx, team); err != nil {
			return err
		}
		// The row lock is held: this count sees every token committed by a
		// CreateToken that locked the row first, and none can follow.
		live, err := queries.CountLiveTeamTokens(ctx, tx, team)
		if err != nil {
			return fmt.Errorf("count team tokens: %w", err)
		}
		if live > 0 {
			return errs.Precondition(fmt.Sprintf("Cannot delete team with %d tokens. Please revoke them first.", live))
		}
		return queries.RetireTeam(ctx, tx, team)
	})
}

// ListTokens returns the live tokens the caller may read, newest first.
func (s *Service) ListTokens(ctx context.Context, p *auth.Principal) ([]*Token, error) {
	all, teams := authz.ReadScope(p)
	if !all && len(teams) == 0 {
		return []*Token{}, nil
	}
	// Tokens are filled into chunks of a few hundred rather than allocated
	// one by one, straight from the rows: at 10,000 tokens per-row
	// allocations were a visible share of the list's latency (GC).
	out := []*Token{}
	var chunk []Token
	err := queries.EachToken(ctx, s.Pool, store.ListTokensParams{AllTeams: all, Teams: teams}, func(r *store.TokenRow) error {
		if len(chunk) == cap(chunk) {
			chunk = make([]Token, 0, 256)
		}
		chunk = chunk[:len(chunk)+1]
		t := &chunk[len(chunk)-1]
		fillToken(t, r)
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// visibleToken is liveToken for a caller: a token of a team the caller may
// not read is "Token not found" too, as GitHub answers 404 for what is
// outside your reach, so that refusals never tell who owns which id.
func visibleToken(ctx context.Context, q db.DBTX, p *auth.Principal, id int64, lock bool) (*Token, error) {
	t, err := liveToken(ctx, q, id, lock)
	if err != nil {
		return nil, err
	}
	if p != nil && p.Kind != auth.KindService && !authz.CanRead(p, t.TeamID) {
		return nil, errs.NotFound("Token not found")
	}
	return t, nil
}

// liveToken loads a token that is not revoked, locked for update when
// lock is set; "Token not found" otherwise.
func liveToken(ctx context.Context, q db.DBTX, id int64, lock bool) (*Token, error) {
	var row *store.TokenRow
	var err error
	if lock {
		var r *store.LockLiveTokenRow
		r, err = queries.LockLiveToken(ctx, q, id)
		row = (*store.TokenRow)(r)
	} else {
		var r *store.LiveTokenRow
		r, err = queries.LiveToken(ctx, q, id)
		row = (*store.TokenRow)(r)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errs.NotFound("Token not found")
	}
	if err != nil {
		return nil, err
	}
	return tokenOf(row), nil
}

// TokenPatch is an update; nil fields stay as they are.
type TokenPatch struct {
	Name, Description *string
	Scopes            []string
	ScopesSet         bool
}

// UpdateToken changes name, description or scopes.
func (s *Service) UpdateToken(ctx context.Context, p *auth.Principal, id int64, in TokenPatch) (*Token, error) {
	if in.Name == nil && in.Description == nil && !in.ScopesSet {
		return nil, errs.Invalid("No fields to update")
	}
	if in.Name != nil {
		if err := checkText("name", *in.Name, maxNameLen, true); err != nil {
			return nil, err
		}
	}
	if in.Description != nil {
		if err := checkText("description", *in.Description, maxTokenDescLen, false); err != nil {
			return nil, err
		}
	}
	if in.ScopesSet {
		if len(in.Scopes) == 0 {
			return nil, errs.Invalid("scopes must have at least one entry")
		}
		sc, err := normalizeScopes(in.Scopes)
		if err != nil {
			return nil, err
		}
		in.Scopes = sc
	}
	teamName := s.tokenTeamName(ctx, id)
	var out *Token
	err := db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		t, err := visibleToken(ctx, tx, p, id, true)
		if err != nil {
			return err
		}
		if err := authz.Authorize(p, authz.TokenUpdate, authz.Resource{Team: t.TeamID, CreatedBy: t.CreatedBy}); err != nil {
			return err
		}
		// changes is the before/after of what changed; the dashboard's keys
		// (name, scopes) hold the values after the update.
		changes := map[string]any{}
		kvChanged := false
		if in.Name != nil && *in.Name != t.Name {
			changes["name"] = map[string]any{"from": t.Name, "to": *in.Name}
			t.Name, kvChanged = *in.Name, true
		}
		if in.Description != nil && *in.Description != t.Description {
			changes["description"] = map[string]any{"from": t.Description, "to": *in.Description}
			t.Description = *in.Description
		}
		if in.ScopesSet {
			if err := checkScopesKnown(ctx, tx, in.Scopes); err != nil {
				return err
			}
			if !slices.Equal(t.Scopes, in.Scopes) {
				changes["scopes"] = map[string]any{"from": anySlice(t.Scopes), "to": anySlice(in.Scopes)}
			}
			t.Scopes, kvChanged = in.Scopes, true
		}
		if err := queries.UpdateToken(ctx, tx, store.UpdateTokenParams{ID: id, Name: t.Name, Description: t.Description, Scopes: t.Scopes}); err != nil {
			return err
		}
		if kvChanged {
			hashes, err := queries.LiveHashes(ctx, tx, id) // every secret whose KV entry may exist
			if err != nil {
				return err
			}
			if err := enqueueTokenKeys(ctx, tx, hashes); err != nil {
				return err
			}
		}
		out = t
		details := tokenDetails(t, teamName)
		details["scopes"], details["changes"] = anySlice(t.Scopes), changes
		return auditlog.Record(ctx, tx, schema, auditlog.Change{Action: "update", EntityType: "token",
			EntityID: strconv.FormatInt(id, 10), Team: t.TeamID, Details: details})
	})
	return out, err
}

// DeleteToken revokes a token: the row stays (usage and audit history
// resolve it), every KV entry of its secrets is deleted through the outbox.
func (s *Service) DeleteToken(ctx context.Context, p *auth.Principal, id int64) error {
	teamName := s.tokenTeamName(ctx, id)
	return db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		t, err := visibleToken(ctx, tx, p, id, true)
		if err != nil {
			return err
		}
		if err := authz.Authorize(p, authz.TokenDelete, authz.Resource{Team: t.TeamID, CreatedBy: t.CreatedBy}); err != nil {
			return err
		}
		if err := queries.RevokeToken(ctx, tx, store.RevokeTokenParams{ID: id, RevokedBy: &p.ID}); err != nil {
			return err
		}
		removed, err := queries.RemoveTokenSecretsFromKV(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := enqueueTokenKeys(ctx, tx, removed); err != nil {
			return err
		}
		return auditlog.Record(ctx, tx, schema, auditlog.Change{Action: "delete", EntityType: "token",
			EntityID: strconv.FormatInt(id, 10), Team: t.TeamID, Details: tokenDetails(t, teamName)})
	})
}

// tokenDetails are the audit details v2.7 gave every token event
// (contract §8): the token's name and team; the actor is added by auditlog.
func tokenDetails(t *Token, teamName string) map[string]any {
	if teamName == "" {
		teamName = t.TeamID
	}
	return map[string]any{"name": t.Name, "team_id": t.TeamID, "team_name": teamName}
}

// tokenTeamName is the name of token id's team, for its audit event. It is
// looked up before the change's transaction, so that no row lock is held
// across a call to the team service; a token's team never changes. "" when
// the token is not found (the transaction then answers for it).
func (s *Service) tokenTeamName(ctx context.Context, id int64) string {
	team, err := queries.TokenTeam(ctx, s.Pool, id)
	if err != nil || team == "" {
		return ""
	}
	return s.teamNameOf(ctx, team)
}

// enqueueTokenKeys enqueues the KV sync of the token:<hash> keys of hashes.
func enqueueTokenKeys(ctx context.Context, tx db.DBTX, hashes []string) error {
	return enqueueKV(ctx, tx, tokenKeys(hashes)...)
}

// RevealToken returns the plaintext of a token's current secret, audited.
func (s *Service) RevealToken(ctx context.Context, p *auth.Principal, id int64) (string, error) {
	teamName := s.tokenTeamName(ctx, id)
	var plain string
	err := db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		t, err := visibleToken(ctx, tx, p, id, false)
		if err != nil {
			return err
		}
		if err := authz.Authorize(p, authz.TokenReveal, authz.Resource{Team: t.TeamID, CreatedBy: t.CreatedBy}); err != nil {
			return err
		}
		cur, err := queries.CurrentSecret(ctx, tx, id)
		hash, ct := cur.Hash, cur.Ciphertext
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && ct == nil) {
			return errs.Invalid("This token cannot be revealed: it was created without a stored copy (legacy token)")
		}
		if err != nil {
			return err
		}
		pt, err := s.Ring.Open(*ct, tokenKey(hash))
		if err != nil {
			return errs.Wrap(err, errs.ErrFailedPrecondition, "This token cannot be decrypted with the configured keys")
		}
		plain = string(pt)
		return auditlog.Record(ctx, tx, schema, auditlog.Change{Action: "reveal", EntityType: "token",
			EntityID: strconv.FormatInt(id, 10), Team: t.TeamID, Details: tokenDetails(t, teamName)})
	})
	return plain, err
}

// RotateToken gives a token a new secret; the previous one keeps working
// for grace (0 = stops at once) and is then removed from KV by the sweep.
func (s *Service) RotateToken(ctx context.Context, p *auth.Principal, id int64, graceSeconds *int32) (*Created, error) {
	grace := int32(defaultGrace)
	if graceSeconds != nil {
		grace = *graceSeconds
	}
	if grace < 0 || grace > maxGraceSeconds {
		return nil, errs.Invalid("grace_period_seconds must be between 0 and 2592000 (30 days)")
	}
	teamName := s.tokenTeamName(ctx, id)
	var out *Created
	err := db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		t, err := visibleToken(ctx, tx, p, id, true)
		if err != nil {
			return err
		}
		if err := authz.Authorize(p, authz.TokenRotate, authz.Resource{Team: t.TeamID, CreatedBy: t.CreatedBy}); err != nil {
			return err
		}
		now := s.now().UTC()
		if t.Status(now) == "expired" {
			return errs.Precondition("Token has expired; create a new one")
		}
		until := now.Add(time.Duration(grace) * time.Second)
		// Every secret still valid past the grace end now ends there.
		changed, err := queries.EndSecretsBy(ctx, tx, store.EndSecretsByParams{TokenID: id, Until: &until})
		if err != nil {
			return err
		}
		keys := make([]string, 0, len(changed)+1)
		keys = append(keys, tokenKeys(changed)...) // new expires_at in KV, or removal
		if grace == 0 {
			ended, err := queries.RemoveEndedSecretsFromKV(ctx, tx, store.RemoveEndedSecretsFromKVParams{TokenID: id, At: &now})
			if err != nil {
				return err
			}
			keys = append(keys, tokenKeys(ended)...)
		}
		plain := NewToken()
		hash := HashToken(plain)
		ct, err := s.Ring.Seal([]byte(plain), tokenKey(hash))
		if err != nil {
			return err
		}
		if err := queries.InsertTokenSecret(ctx, tx, store.InsertTokenSecretParams{Hash: hash, TokenID: id, Ciphertext: &ct, CreatedAt: now}); err != nil {
			return err
		}
		t.Preview = Preview(plain)
		if err := queries.SetTokenPreview(ctx, tx, store.SetTokenPreviewParams{ID: id, Preview: t.Preview}); err != nil {
			return err
		}
		if err := syncGraceEnd(ctx, tx, []int64{id}); err != nil {
			return err
		}
		t.GraceEndsAt = nil
		if grace > 0 {
			t.GraceEndsAt = &until
		}
		if err := enqueueKV(ctx, tx, append(keys, tokenKey(hash))...); err != nil {
			return err
		}
		out = &Created{Token: *t, Plaintext: plain, PreviousValidUntil: until}
		details := tokenDetails(t, teamName)
		details["previous_secret_valid_until"], details["grace_period_seconds"] = until.Format(time.RFC3339), float64(grace)
		return auditlog.Record(ctx, tx, schema, auditlog.Change{Action: "rotate", EntityType: "token",
			EntityID: strconv.FormatInt(id, 10), Team: t.TeamID, Details: details})
	})
	return out, err
}

// SweepExpired enqueues the KV removal of every secret whose token expired
// or whose grace period ended, once (kv_removed_at). Idempotent; run
// periodically.
func (s *Service) SweepExpired(ctx context.Context) (int, error) {
	var n int
	err := db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		// Lock the tokens first, in id order, as RotateToken and DeleteToken
		// do (token, then its secrets): the sweep also writes the token row
		// (its grace end), and the opposite order could deadlock with them.
		ids, err := queries.LockTokensDueForSweep(ctx, tx)
		if err != nil || len(ids) == 0 {
			return err
		}
		hashes, err := queries.SweepSecrets(ctx, tx, ids)
		if err != nil {
			return err
		}
		n = len(hashes)
		if err := syncGraceEnd(ctx, tx, ids); err != nil {
			return err
		}
		return enqueueTokenKeys(ctx, tx, hashes)
	})
	return n, err
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func timeOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

// RevokeOrphanedTeam revokes every live token of a team that no longer
// exists and retires its id, for tokens left behind by a team deletion from
// before the registry (tmctl orphaned-tokens): each revocation leaves KV
// through the outbox and is audited as a delete. The caller (an operator
// tool) has established that the team is gone; nothing here can, as the
// team service owns teams.
func (s *Service) RevokeOrphanedTeam(ctx context.Context, p *auth.Principal, team string) (int, error) {
	if err := checkTeamID(team); err != nil {
		return 0, err
	}
	var n int
	err := db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		if _, err := lockTeam(ctx, tx, team); err != nil {
			return err
		}
		revoked, err := queries.RevokeTeamTokens(ctx, tx, store.RevokeTeamTokensParams{TeamID: team, RevokedBy: &p.ID})
		if err != nil {
			return err
		}
		for _, r := range revoked {
			removed, err := queries.RemoveTokenSecretsFromKV(ctx, tx, r.ID)
			if err != nil {
				return err
			}
			if err := enqueueTokenKeys(ctx, tx, removed); err != nil {
				return err
			}
			details := tokenDetails(&Token{Name: r.Name, TeamID: team}, "")
			details["reason"] = "its team no longer exists"
			if err := auditlog.Record(ctx, tx, schema, auditlog.Change{Action: "delete", EntityType: "token",
				EntityID: strconv.FormatInt(r.ID, 10), Team: team, Details: details}); err != nil {
				return err
			}
		}
		n = len(revoked)
		return queries.RetireTeam(ctx, tx, team)
	})
	return n, err
}
