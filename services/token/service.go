package token

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/token/keyring"
)

// Teams answers what the token service needs to know of teams (the team
// service owns them): whether one exists, and its name for audit details.
type Teams interface {
	// TeamName is the name of team id; ok is false when there is no such team.
	TeamName(ctx context.Context, id string) (name string, ok bool, err error)
}

// TeamClient is Teams over TeamService.LookupTeams.
type TeamClient struct{ Client teamv1.TeamServiceClient }

// TeamName implements Teams.
func (c TeamClient) TeamName(ctx context.Context, id string) (string, bool, error) {
	resp, err := c.Client.LookupTeams(ctx, &teamv1.LookupTeamsRequest{TeamIds: []string{id}})
	if err != nil {
		return "", false, errs.Wrap(err, errs.ErrUnavailable, "Team service unavailable")
	}
	for _, t := range resp.GetTeams() {
		if t.GetId() == id {
			return t.GetName(), true, nil
		}
	}
	return "", false, nil
}

// teamNameTimeout bounds the team-name lookup of an audit event, so a slow
// team service delays a token change by at most this much.
const teamNameTimeout = 2 * time.Second

// teamNameOf is the name of team id for an audit event's team_name, or
// the id when the team service cannot say (as v2.7's dashboard falls back
// to the id for a team that is gone): a name in the trail is not worth
// failing an update, revocation or reveal over.
func (s *Service) teamNameOf(ctx context.Context, id string) string {
	cctx, cancel := context.WithTimeout(ctx, teamNameTimeout)
	defer cancel()
	name, ok, err := s.Teams.TeamName(cctx, id)
	if err != nil || !ok || name == "" {
		return id
	}
	return name
}

// Service holds the use cases of tokens and routes.
type Service struct {
	Pool  *pgxpool.Pool
	Ring  *keyring.Ring
	Teams Teams
	Now   func() time.Time // default time.Now
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}
