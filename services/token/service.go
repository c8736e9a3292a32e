package token

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/token/keyring"
)

// Teams answers whether a team exists (the team service owns teams).
type Teams interface {
	TeamExists(ctx context.Context, id string) (bool, error)
}

// TeamClient is Teams over TeamService.LookupTeams.
type TeamClient struct{ Client teamv1.TeamServiceClient }

// TeamExists implements Teams.
func (c TeamClient) TeamExists(ctx context.Context, id string) (bool, error) {
	resp, err := c.Client.LookupTeams(ctx, &teamv1.LookupTeamsRequest{TeamIds: []string{id}})
	if err != nil {
		return false, errs.Wrap(err, errs.ErrUnavailable, "Team service unavailable")
	}
	for _, t := range resp.GetTeams() {
		if t.GetId() == id {
			return true, nil
		}
	}
	return false, nil
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
