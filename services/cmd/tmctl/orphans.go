package main

import (
	"encoding/json"
	"os"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/team"
	"github.com/tokenmanager/tokenmanager/services/token"
)

// orphanedTeams lists the teams that own live tokens but exist no more: a
// team deleted before the token service kept its team registry (token
// migration 0004) could leave tokens behind, valid in KV. Only this
// operator tool reads across two schemas; the services never do.
const orphanedTeams = `
	SELECT t.team_id, count(*) FROM token.tokens t
	WHERE t.revoked_at IS NULL AND NOT EXISTS (SELECT FROM team.teams m WHERE m.id = t.team_id)
	GROUP BY 1 ORDER BY 1`

// runOrphanedTokens prints the teams with orphaned tokens and, with revoke,
// revokes those tokens (audited, removed from KV by the running token
// service's relay), retires the ids in the token service and records them
// as deleted teams, so that nobody can create a team under one and be
// mistaken for its owner.
func runOrphanedTokens(cfg migrateConfig, revoke bool) error {
	ctx, pool, done, err := open(cfg.DatabaseURL, "tmctl-orphaned-tokens", token.Migrations, team.Migrations)
	if err != nil {
		return err
	}
	defer done()
	type orphan struct {
		TeamID     string `json:"team_id"`
		LiveTokens int64  `json:"live_tokens"`
		Revoked    *int   `json:"revoked,omitempty"`
	}
	rows, _ := pool.Query(ctx, orphanedTeams)
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (orphan, error) {
		var o orphan
		return o, r.Scan(&o.TeamID, &o.LiveTokens)
	})
	if err != nil {
		return err
	}
	if revoke {
		svc := &token.Service{Pool: pool}
		for i := range list {
			n, err := svc.RevokeOrphanedTeam(ctx, team.TmctlPrincipal, list[i].TeamID)
			if err != nil {
				return err
			}
			list[i].Revoked = &n
			if _, err := pool.Exec(ctx, `INSERT INTO team.deleted_teams (id, name, deleted_by) VALUES ($1, $1, $2)
				ON CONFLICT (id) DO NOTHING`, list[i].TeamID, team.TmctlPrincipal.ID); err != nil {
				return err
			}
		}
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"orphaned_teams": list})
}
