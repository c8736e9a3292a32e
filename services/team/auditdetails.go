package team

import (
	"context"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/team/store"
)

// The audit details of the team service's events. v2.7 audited none of
// these changes, but its dashboard lists every event of the trail and
// shows details.name as the resource and details.team_name as related
// information (contract §7.2, §8): every event names what it is about — the
// team, the member's e-mail, the admin key, the invitee's e-mail — and the
// team it happened in. The actor is added by auditlog.

// teamDetails are the details every event of a team carries.
func teamDetails(name string, t Team) map[string]any {
	return map[string]any{"name": name, "team_id": t.ID, "team_name": t.Name}
}

// membershipDetails are the details of a change to user's role in team t
// (role "" when it ends, previous "" when it begins).
func membershipDetails(ctx context.Context, q store.DBTX, userID string, t Team, role, previous auth.Role) (map[string]any, error) {
	name, err := memberName(ctx, q, userID)
	if err != nil {
		return nil, err
	}
	d := teamDetails(name, t)
	d["user_id"], d["previous_role"] = userID, string(previous)
	if role != "" {
		d["role"] = string(role)
	}
	return d, nil
}

// memberName names a user in the trail: the e-mail the users cache holds
// (every user the dashboard can pick was cached when it listed them), else
// the user id.
func memberName(ctx context.Context, q store.DBTX, userID string) (string, error) {
	u, ok, err := cachedUser(ctx, q, userID)
	if err != nil {
		return "", err
	}
	if ok && u.Email != nil && *u.Email != "" {
		return *u.Email, nil
	}
	return userID, nil
}

// principalName names the caller in the trail when it is the subject of
// its own event (the creator of a team becomes its ADMIN).
func principalName(p *auth.Principal) string {
	if p.Email != "" {
		return p.Email
	}
	if p.Name != "" {
		return p.Name
	}
	return p.ID
}

// teamNames maps the ids of teams to their names (an id not found to
// itself), for the team_name of events that span teams.
func teamNames(ctx context.Context, q store.DBTX, ids []string) (map[string]string, error) {
	names := make(map[string]string, len(ids))
	for _, id := range ids {
		names[id] = id
	}
	teams, err := teamsByID(ctx, q, ids)
	if err != nil {
		return nil, err
	}
	for _, t := range teams {
		names[t.ID] = t.Name
	}
	return names, nil
}
