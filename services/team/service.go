package team

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auditlog"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/outbox"
)

// schema is the team service's PostgreSQL schema (and outbox).
const schema = "team"

// Options are the team service's collaborators; zero values work (no
// Clerk, no token service) with the features that need them unavailable.
type Options struct {
	// Directory is Clerk; nil when CLERK_SECRET_KEY is not set.
	Directory *Directory
	// Tokens retires a team's id in the token service before the team is
	// deleted; nil means it cannot, so team deletion is refused.
	Tokens TeamTokens
	Log    *slog.Logger
	// UserTTL is how long a cached Clerk profile (e-mail, name) is used
	// before it is fetched again (TM_USER_CACHE_TTL).
	UserTTL time.Duration
	// InvitationRedirectURL is where Clerk sends invitees
	// (TM_INVITATION_REDIRECT_URL); empty leaves Clerk's default.
	InvitationRedirectURL string
}

// Service holds the team service's use cases: one method per operation,
// each authorizing with package authz, validating, and writing changes with
// their audit events and Clerk mirror messages in one transaction.
type Service struct {
	pool *pgxpool.Pool
	Options
}

// NewService returns the use cases over pool.
func NewService(pool *pgxpool.Pool, o Options) *Service {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.UserTTL <= 0 {
		o.UserTTL = 10 * time.Minute
	}
	return &Service{pool: pool, Options: o}
}

// write runs fn in a transaction.
func (s *Service) write(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return db.InTx(ctx, s.pool, fn)
}

// TopicClerkRoles is the outbox topic of "write this user's roles to Clerk"
// messages (payload {"user_id": ...}, keyed by user id).
const TopicClerkRoles = "clerk_roles"

// mirror enqueues a Clerk metadata update for each user, in tx. The message
// names only the user: the relay writes whatever PostgreSQL holds when it
// runs, so messages are idempotent and a late one never undoes a newer
// change.
func mirror(ctx context.Context, tx db.DBTX, users ...string) error {
	msgs := make([]outbox.Message, 0, len(users))
	for _, u := range users {
		msgs = append(msgs, outbox.Message{Topic: TopicClerkRoles, Key: u, Payload: map[string]string{"user_id": u}})
	}
	return outbox.Enqueue(ctx, tx, schema, msgs...)
}

// audit records changes in tx's outbox.
func audit(ctx context.Context, tx db.DBTX, changes ...auditlog.Change) error {
	return auditlog.Record(ctx, tx, schema, changes...)
}

// TeamTokens is the token service's side of a team's lifecycle.
type TeamTokens interface {
	// RetireTeam ends the team's life in the token service. It fails with
	// FailedPrecondition while the team owns live tokens; once it has
	// succeeded, no token can be created for the team id again.
	RetireTeam(ctx context.Context, team string) error
}

// TokenServiceTeams calls the token service's RetireTeam.
type TokenServiceTeams struct{ Client tokenv1.TokenServiceClient }

// RetireTeam implements TeamTokens.
func (c TokenServiceTeams) RetireTeam(ctx context.Context, team string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := c.Client.RetireTeam(ctx, &tokenv1.RetireTeamRequest{TeamId: team})
	return err
}
