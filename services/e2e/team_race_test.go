package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestTeamDeleteRacesTokenCreate sends DELETE /api/teams/X and
// POST /api/tokens for team X at the same moment, round after round. The
// team and token services keep their own schemas, so only the token
// service's team registry orders the two: in every round exactly one of them
// wins, and no live token is ever left whose team is gone. Afterwards no
// deleted id can be taken by a new team, so nobody inherits what it left.
func TestTeamDeleteRacesTokenCreate(t *testing.T) {
	s := startStack(t)
	const rounds = 200
	key := s.adminKey
	var deleted, kept []string
	for i := range rounds {
		id := fmt.Sprintf("race-%d", i)
		s.teamMust(t, 200, "POST", "/api/teams", key, `{"id":"`+id+`","name":"Race `+id+`"}`)
		var del, create response
		var start, done sync.WaitGroup
		start.Add(1)
		done.Add(2)
		go func() {
			defer done.Done()
			start.Wait()
			del = send(t, "DELETE", s.url+"/api/teams/"+id, key, "", nil)
		}()
		go func() {
			defer done.Done()
			start.Wait()
			create = send(t, "POST", s.url+"/api/tokens", key, `{"name":"racer","team_id":"`+id+`","scopes":["*"]}`, nil)
		}()
		start.Done()
		done.Wait()
		switch {
		case del.Status == 200 && create.Status == 200:
			t.Fatalf("round %d: the team was deleted and a token created for it: %s", i, create.Body)
		case del.Status == 200 && create.Status >= 400 && create.Status < 500:
			deleted = append(deleted, id)
		case create.Status == 200 && del.Status >= 400 && del.Status < 500 && strings.Contains(string(del.Body), "Cannot delete team with 1 tokens"):
			kept = append(kept, id)
		default:
			t.Fatalf("round %d: delete %d %s, create %d %s", i, del.Status, del.Body, create.Status, create.Body)
		}
	}
	t.Logf("%d rounds: the deletion won %d, the token won %d", rounds, len(deleted), len(kept))

	orphans := s.count(t, `SELECT count(*) FROM token.tokens t WHERE t.revoked_at IS NULL
		AND NOT EXISTS (SELECT 1 FROM team.teams m WHERE m.id = t.team_id)`)
	if orphans != 0 {
		t.Fatalf("%d live tokens whose team no longer exists", orphans)
	}
	if n := s.count(t, `SELECT count(*) FROM token.tokens WHERE team_id = ANY($1)`, deleted); n != 0 {
		t.Fatalf("%d tokens (live or not) in deleted teams", n)
	}

	// A deleted id is never given out again: not to the global admin, not to
	// anyone, so nobody inherits its trail, usage or (were there any) tokens.
	for _, id := range deleted[:min(len(deleted), 3)] {
		r := s.teamMust(t, 409, "POST", "/api/teams", key, `{"id":"`+id+`","name":"Again"}`)
		if !strings.Contains(detail(t, r), "deleted team") {
			t.Errorf("re-creating %s: %s", id, r.Body)
		}
		if r := send(t, "POST", s.url+"/api/tokens", key, `{"name":"late","team_id":"`+id+`","scopes":["*"]}`, nil); r.Status < 400 || r.Status >= 500 {
			t.Errorf("token for deleted team %s: %d %s", id, r.Status, r.Body)
		}
	}
	// A team that kept its token is deleted once the token is revoked.
	if len(kept) > 0 {
		id := kept[0]
		var tokenID int64
		s.withDB(t, func(ctx context.Context, c *pgx.Conn) error {
			return c.QueryRow(ctx, `SELECT id FROM token.tokens WHERE team_id = $1 AND revoked_at IS NULL`, id).Scan(&tokenID)
		})
		s.teamMust(t, 200, "DELETE", fmt.Sprintf("/api/tokens/%d", tokenID), key, "")
		s.teamMust(t, 200, "DELETE", "/api/teams/"+id, key, "")
	}
}
