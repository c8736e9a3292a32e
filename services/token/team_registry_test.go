package token

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// TestRetireTeam: a team with live tokens cannot be retired; once retired,
// no token can be created for it, and retiring again is harmless.
func TestRetireTeam(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	in := NewTokenInput{Name: "n", TeamID: "backend-team", Scopes: []string{"*"}}
	tok, err := svc.CreateToken(ctx, globalAdmin, in)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.RetireTeam(ctx, "backend-team"); !errors.Is(err, errs.ErrFailedPrecondition) {
		t.Fatalf("retire with a live token: %v", err)
	}
	if _, err := svc.CreateToken(ctx, globalAdmin, in); err != nil {
		t.Fatalf("a refused retirement must leave the team usable: %v", err)
	}
	for _, id := range []int64{tok.ID, tok.ID + 1} {
		if err := svc.DeleteToken(ctx, globalAdmin, id); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := svc.RetireTeam(ctx, "backend-team"); err != nil {
			t.Fatalf("retire without live tokens: %v", err)
		}
	}
	if _, err := svc.CreateToken(ctx, globalAdmin, in); !errors.Is(err, errs.ErrInvalidArgument) {
		t.Fatalf("token for a retired team: %v", err)
	}
	if err := svc.RetireTeam(ctx, "Bad Team"); !errors.Is(err, errs.ErrInvalidArgument) {
		t.Fatalf("retire a malformed id: %v", err)
	}
}

// TestRetireTeamRacesCreateToken runs RetireTeam and CreateToken on one team
// at the same moment, 200 times: exactly one of them wins each round.
func TestRetireTeamRacesCreateToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	teams := fakeTeams{}
	svc.Teams = teams
	const rounds = 200
	for i := range rounds {
		teams[fmt.Sprintf("race-%d", i)] = true
	}
	won := map[string]int{}
	for i := range rounds {
		team := fmt.Sprintf("race-%d", i)
		var retireErr, createErr error
		var start, done sync.WaitGroup
		start.Add(1)
		done.Add(2)
		go func() { defer done.Done(); start.Wait(); retireErr = svc.RetireTeam(ctx, team) }()
		go func() {
			defer done.Done()
			start.Wait()
			_, createErr = svc.CreateToken(ctx, globalAdmin, NewTokenInput{Name: "n", TeamID: team, Scopes: []string{"*"}})
		}()
		start.Done()
		done.Wait()
		switch {
		case retireErr == nil && errors.Is(createErr, errs.ErrInvalidArgument):
			won["retire"]++
		case createErr == nil && errors.Is(retireErr, errs.ErrFailedPrecondition):
			won["create"]++
		default:
			t.Fatalf("round %d: retire %v, create %v", i, retireErr, createErr)
		}
	}
	if n := count(t, svc.Pool, `SELECT count(*) FROM token.tokens t JOIN token.team_registry r USING (team_id)
		WHERE r.retired_at IS NOT NULL AND t.revoked_at IS NULL`); n != 0 {
		t.Fatalf("%d live tokens in retired teams", n)
	}
	t.Logf("%d rounds: %v", rounds, won)
}

// TestRevokeOrphanedTeam: the tokens a team left behind (deleted before the
// registry existed) are revoked, leave KV, are audited, and the id can get
// no new token; other teams' tokens are untouched.
func TestRevokeOrphanedTeam(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := newService(t)
	var orphans []*Created
	for i := range 2 {
		c, err := svc.CreateToken(ctx, globalAdmin, NewTokenInput{Name: fmt.Sprint("orphan-", i), TeamID: "backend-team", Scopes: []string{"*"}})
		if err != nil {
			t.Fatal(err)
		}
		orphans = append(orphans, c)
	}
	other, err := svc.CreateToken(ctx, globalAdmin, NewTokenInput{Name: "kept", TeamID: "media-team", Scopes: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RevokeOrphanedTeam(ctx, service, "Bad Id"); !errors.Is(err, errs.ErrInvalidArgument) {
		t.Errorf("bad team id: %v", err)
	}
	n, err := svc.RevokeOrphanedTeam(ctx, service, "backend-team")
	if err != nil || n != 2 {
		t.Fatalf("revoked %d, %v", n, err)
	}
	kv := desired(t, svc)
	for _, c := range orphans {
		if _, ok := kv["token:"+HashToken(c.Plaintext)]; ok {
			t.Errorf("%s is still wanted in KV", c.Name)
		}
	}
	if _, ok := kv["token:"+HashToken(other.Plaintext)]; !ok {
		t.Error("another team's token was touched")
	}
	if got := count(t, svc.Pool, `SELECT count(*) FROM token.outbox WHERE topic = 'audit' AND payload::text LIKE '%no longer exists%'`); got != 2 {
		t.Errorf("%d audit events of the revocations, want 2", got)
	}
	if _, err := svc.CreateToken(ctx, globalAdmin, NewTokenInput{Name: "new", TeamID: "backend-team", Scopes: []string{"*"}}); !errors.Is(err, errs.ErrInvalidArgument) {
		t.Errorf("a token for the retired id: %v", err)
	}
	if n, err := svc.RevokeOrphanedTeam(ctx, service, "backend-team"); err != nil || n != 0 {
		t.Errorf("again: %d, %v", n, err)
	}
}
