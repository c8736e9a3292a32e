package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestOrphanedTokensCommand: a token left alive by a team deletion from
// before the token service's team registry (simulated by deleting the team
// row behind the services' backs) is found by "tmctl orphaned-tokens",
// revoked with -revoke (gone from the API, audited), and its team id can
// neither be re-created nor get a new token.
func TestOrphanedTokensCommand(t *testing.T) {
	s := startStack(t)
	key := s.adminKey
	s.teamMust(t, 200, "POST", "/api/teams", key, `{"id":"gone-team","name":"Gone"}`)
	s.teamMust(t, 200, "POST", "/api/teams", key, `{"id":"live-team","name":"Live"}`)
	orphan := send(t, "POST", s.url+"/api/tokens", key, `{"name":"left-behind","team_id":"gone-team","scopes":["*"]}`, nil)
	kept := send(t, "POST", s.url+"/api/tokens", key, `{"name":"kept","team_id":"live-team","scopes":["*"]}`, nil)
	if orphan.Status != 200 || kept.Status != 200 {
		t.Fatalf("tokens: %d %s / %d %s", orphan.Status, orphan.Body, kept.Status, kept.Body)
	}
	s.exec(t, `DELETE FROM team.teams WHERE id = 'gone-team'`)

	run := func(args ...string) (map[string][]map[string]any, int, string) {
		out, errOut, code := s.tmctl(t, append([]string{"orphaned-tokens"}, args...)...)
		var res map[string][]map[string]any
		if code == 0 {
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
		}
		return res, code, errOut
	}
	res, code, errOut := run()
	if code != 0 || len(res["orphaned_teams"]) != 1 || res["orphaned_teams"][0]["team_id"] != "gone-team" ||
		res["orphaned_teams"][0]["live_tokens"] != 1.0 || res["orphaned_teams"][0]["revoked"] != nil {
		t.Fatalf("list: %d %v %s", code, res, errOut)
	}
	if !strings.Contains(string(s.teamMust(t, 200, "GET", "/api/tokens", key, "").Body), "left-behind") {
		t.Fatal("listing must not revoke")
	}
	if _, code, errOut := run("-revoke", "extra"); code != 2 || !strings.Contains(errOut, "usage") {
		t.Errorf("stray argument: %d %q", code, errOut)
	}

	res, code, errOut = run("-revoke")
	if code != 0 || len(res["orphaned_teams"]) != 1 || res["orphaned_teams"][0]["revoked"] != 1.0 {
		t.Fatalf("revoke: %d %v %s", code, res, errOut)
	}
	list := string(s.teamMust(t, 200, "GET", "/api/tokens", key, "").Body)
	if strings.Contains(list, "left-behind") || !strings.Contains(list, `"kept"`) {
		t.Errorf("after -revoke the tokens are %s", list)
	}
	if r := send(t, "POST", s.url+"/api/teams", key, `{"id":"gone-team","name":"Squatter"}`, nil); r.Status != 409 {
		t.Errorf("re-creating the orphan's team: %d %s", r.Status, r.Body)
	}
	if r := send(t, "POST", s.url+"/api/tokens", key, `{"name":"new","team_id":"gone-team","scopes":["*"]}`, nil); r.Status != 400 {
		t.Errorf("a token for the retired id: %d %s", r.Status, r.Body)
	}
	audited := func() int64 {
		return s.count(t, `SELECT count(*) FROM audit.events WHERE entity_type = 'token' AND action = 'delete' AND details::text LIKE '%no longer exists%'`)
	}
	for deadline := time.Now().Add(15 * time.Second); audited() == 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if n := audited(); n != 1 {
		t.Errorf("%d audit events of the revocation, want 1", n)
	}
	if res, code, _ := run(); code != 0 || len(res["orphaned_teams"]) != 0 {
		t.Errorf("afterwards: %d %v", code, res)
	}
}
