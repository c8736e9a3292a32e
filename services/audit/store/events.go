package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// This file is the one query sqlc cannot hold: the audit-log page's list,
// its total and the export, whose WHERE clause has a condition per filter
// the caller sets. Each filter is one fixed condition with a bound
// argument; only which of them appear varies.

// EventFilter selects events; zero fields select everything.
type EventFilter struct {
	// AllTeams selects the events of every team and of none; otherwise
	// only those of Teams (ids of teams, never "") and, of the events of no
	// team, those whose entity type is one of TeamlessEntityTypes.
	AllTeams            bool
	Teams               []string
	TeamlessEntityTypes []string

	Action     string
	EntityType string
	TeamID     string
	// Actor matches the actor id exactly or the actor e-mail ignoring case.
	Actor string
	// From and To bound occurred_at, both included.
	From, To time.Time
}

// eventColumns are audit.events' columns in the order scanEvents reads them.
const eventColumns = `id, event_id, occurred_at, recorded_at, actor_type, actor_id, actor_email, actor_name,
	action, entity_type, entity_id, team_id, details, request_id, client_ip, user_agent, prev_hash, hash`

// where is the WHERE clause of f ("" when f selects everything) and its
// arguments, numbered from $1.
func (f EventFilter) where() (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		conds = append(conds, strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(args))))
	}
	if !f.AllTeams {
		teams := f.Teams
		if teams == nil {
			teams = []string{}
		}
		if len(f.TeamlessEntityTypes) > 0 {
			args = append(args, teams, f.TeamlessEntityTypes)
			conds = append(conds, fmt.Sprintf("(team_id = ANY($%d) OR (team_id = '' AND entity_type = ANY($%d)))", len(args)-1, len(args)))
		} else {
			add("team_id = ANY($?)", teams)
		}
	}
	if f.Action != "" {
		add("action = $?", f.Action)
	}
	if f.EntityType != "" {
		add("entity_type = $?", f.EntityType)
	}
	if f.TeamID != "" {
		add("team_id = $?", f.TeamID)
	}
	if f.Actor != "" {
		add("(actor_id = $? OR lower(actor_email) = lower($?))", f.Actor)
	}
	if !f.From.IsZero() {
		add("occurred_at >= $?", f.From)
	}
	if !f.To.IsZero() {
		add("occurred_at <= $?", f.To)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// ListEvents returns a page of the events f selects, newest first.
func ListEvents(ctx context.Context, db DBTX, f EventFilter, limit, offset int) ([]AuditEvent, error) {
	where, args := f.where()
	args = append(args, limit, offset)
	q := fmt.Sprintf(`SELECT %s FROM audit.events%s ORDER BY id DESC LIMIT $%d OFFSET $%d`,
		eventColumns, where, len(args)-1, len(args))
	return scanEvents(ctx, db, q, args)
}

// EventsBefore returns up to n events f selects whose id is below before
// (0: from the newest), newest first: keyset paging, whose cost does not
// grow with the depth of the page.
func EventsBefore(ctx context.Context, db DBTX, f EventFilter, before int64, n int) ([]AuditEvent, error) {
	where, args := f.where()
	if before > 0 {
		args = append(args, before)
		if where == "" {
			where = " WHERE "
		} else {
			where += " AND "
		}
		where += fmt.Sprintf("id < $%d", len(args))
	}
	args = append(args, n)
	q := fmt.Sprintf(`SELECT %s FROM audit.events%s ORDER BY id DESC LIMIT $%d`, eventColumns, where, len(args))
	return scanEvents(ctx, db, q, args)
}

// CountEvents returns how many events f selects: exactly when there are at
// most limit, else PostgreSQL's estimate of the number, never below
// limit+1. Counting at most limit+1 matches is an index range scan however
// many there are; EXPLAIN plans the query with the bound values (a utility
// statement's plan is not cached), so the estimate is that of these
// filters. When f selects everything it reads the chain head (ids are
// gapless), which is exact at any size.
func CountEvents(ctx context.Context, db DBTX, f EventFilter, limit int64) (int64, error) {
	where, args := f.where()
	if where == "" {
		head, err := New().ChainHead(ctx, db)
		return head.LastID, err
	}
	var n int64
	q := fmt.Sprintf(`SELECT count(*) FROM (SELECT 1 FROM audit.events%s LIMIT %d) m`, where, limit+1)
	if err := db.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		return 0, err
	}
	if n <= limit {
		return n, nil
	}
	var plan []byte
	if err := db.QueryRow(ctx, `EXPLAIN (FORMAT JSON) SELECT 1 FROM audit.events`+where, args...).Scan(&plan); err != nil {
		return 0, fmt.Errorf("estimate: %w", err)
	}
	var est []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	if err := json.Unmarshal(plan, &est); err != nil || len(est) == 0 {
		return 0, fmt.Errorf("estimate: unexpected plan %.200q: %v", plan, err)
	}
	return max(int64(est[0].Plan.Rows), limit+1), nil
}

// scanEvents runs q, which selects eventColumns, and reads its rows.
func scanEvents(ctx context.Context, db DBTX, q string, args []any) ([]AuditEvent, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var items []AuditEvent
	for rows.Next() {
		var i AuditEvent
		if err := rows.Scan(&i.ID, &i.EventID, &i.OccurredAt, &i.RecordedAt, &i.ActorType, &i.ActorID,
			&i.ActorEmail, &i.ActorName, &i.Action, &i.EntityType, &i.EntityID, &i.TeamID, &i.Details,
			&i.RequestID, &i.ClientIp, &i.UserAgent, &i.PrevHash, &i.Hash); err != nil {
			return nil, err
		}
		items = append(items, i)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return items, nil
}
