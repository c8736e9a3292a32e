package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// EventFilter narrows the newest-events lists beyond the caller's scope.
type EventFilter struct {
	Scope Scope
	// TokenID, when not 0, keeps the events of this token only.
	TokenID int64
	// RoutePath, when not "", keeps the events on this route only.
	RoutePath string
}

// EventRow is one stored event as the lists show it.
type EventRow struct {
	ID             int64
	EventID        string
	TokenHash      string
	TokenID        int64
	TeamID         string
	RoutePath      *string
	UsedAt         time.Time
	ResponseStatus *int32
	ResponseTimeMS *int32
	IPAddress      *string
	UserAgent      *string
	RequestMethod  *string
	ErrorMessage   *string
}

const eventColumns = `id, event_id, token_hash, token_id, team_id, route_path, used_at, response_status,
	response_time_ms, ip_address, user_agent, request_method, error_message`

// RecentEvents returns the newest limit events of f, by index: per team for
// a scoped caller, so no sort of a team's whole history is needed.
func (*Queries) RecentEvents(ctx context.Context, db DBTX, f EventFilter, limit int) ([]EventRow, error) {
	// The filter is on $4; $1 and $2 are the scope, $3 the limit.
	args := []any{f.Scope.All, f.Scope.TeamIDs(), limit}
	cond := "true"
	switch {
	case f.TokenID != 0:
		cond = "token_id = $4"
		args = append(args, f.TokenID)
	case f.RoutePath != "":
		cond = "route_path = $4"
		args = append(args, f.RoutePath)
	}
	var sql string
	if f.Scope.All {
		sql = fmt.Sprintf(`SELECT %s FROM usage.events WHERE $1 AND %s AND $2::text[] IS NOT NULL
			ORDER BY used_at DESC, id DESC LIMIT $3`, eventColumns, cond)
	} else {
		sql = fmt.Sprintf(`SELECT e.* FROM unnest($2::text[]) AS t(team),
			LATERAL (SELECT %s FROM usage.events WHERE team_id = t.team AND NOT $1 AND %s
			         ORDER BY used_at DESC, id DESC LIMIT $3) e
			ORDER BY e.used_at DESC, e.id DESC LIMIT $3`, eventColumns, cond)
	}
	rows, _ := db.Query(ctx, sql, args...)
	var out []EventRow
	var r EventRow
	_, err := pgx.ForEachRow(rows, []any{&r.ID, &r.EventID, &r.TokenHash, &r.TokenID, &r.TeamID, &r.RoutePath, &r.UsedAt,
		&r.ResponseStatus, &r.ResponseTimeMS, &r.IPAddress, &r.UserAgent, &r.RequestMethod, &r.ErrorMessage}, func() error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage logs: %w", err)
	}
	return out, nil
}
