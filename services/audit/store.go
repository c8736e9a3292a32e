package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
)

// Filter selects events; zero fields select everything.
type Filter struct {
	Action     string
	EntityType string
	TeamID     string
	// Actor matches the actor id exactly or the actor e-mail ignoring case.
	Actor string
	// From and To bound occurred_at, both included.
	From, To time.Time
}

// Scope is which events a reader may see.
type Scope struct {
	All bool
	// Teams are the teams whose events are visible; "" stands for the
	// events of no team that core-team governs (coreTeamEntityTypes: the
	// routes), never those of admin keys, global roles, invitations or
	// role imports, which are a global ADMIN's and may name any team.
	Teams []string
}

// coreTeamEntityTypes are the team-less entities core-team's members
// manage (authz: routes), whose events "" in Scope.Teams makes visible.
var coreTeamEntityTypes = []string{"route"}

// Store is the audit service's SQL.
type Store struct {
	pool db.Beginner
	q    db.DBTX
}

// pool is what Store needs of a *pgxpool.Pool.
type pool interface {
	db.Beginner
	db.DBTX
}

// NewStore returns a Store on p.
func NewStore(p pool) *Store { return &Store{pool: p, q: p} }

const eventColumns = `id, event_id, occurred_at, recorded_at, actor_type, actor_id, actor_email, actor_name,
	action, entity_type, entity_id, team_id, details, request_id, client_ip, user_agent, prev_hash, hash`

func scanEvent(row pgx.Row) (Event, error) {
	var e Event
	err := row.Scan(&e.ID, &e.EventID, &e.OccurredAt, &e.RecordedAt, &e.ActorType, &e.ActorID, &e.ActorEmail,
		&e.ActorName, &e.Action, &e.EntityType, &e.EntityID, &e.TeamID, &e.Details, &e.RequestID, &e.ClientIP,
		&e.UserAgent, &e.PrevHash, &e.Hash)
	return e, err
}

// Append adds events (already validated, distinct event ids) to the end of
// the chain and returns how many were new; events whose event_id is stored
// already are skipped (outbox redelivery). Appends are serialized on the
// chain head row, so every event links to the one before it and ids stay
// gapless. now is the recorded_at of the batch.
func (s *Store) Append(ctx context.Context, events []Event, now time.Time) (recorded int, err error) {
	err = db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		recorded = 0
		var lastID int64
		var lastHash string
		if err := tx.QueryRow(ctx, `SELECT last_id, last_hash FROM audit.chain_head FOR UPDATE`).Scan(&lastID, &lastHash); err != nil {
			return fmt.Errorf("lock chain head: %w", err)
		}
		ids := make([]string, len(events))
		for i, e := range events {
			ids[i] = e.EventID
		}
		// Under the lock, so no concurrent batch can store one of these ids
		// between this check and the insert.
		rows, _ := tx.Query(ctx, `SELECT event_id FROM audit.events WHERE event_id = ANY($1)`, ids)
		stored, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("find stored events: %w", err)
		}
		seen := make(map[string]bool, len(stored))
		for _, id := range stored {
			seen[id] = true
		}
		recordedAt := now.UTC().Truncate(time.Microsecond)
		fresh := make([][]any, 0, len(events))
		for _, e := range events {
			if seen[e.EventID] {
				continue
			}
			lastID++
			e.ID, e.RecordedAt, e.PrevHash = lastID, recordedAt, lastHash
			e.Hash = ComputeHash(&e)
			lastHash = e.Hash
			fresh = append(fresh, []any{e.ID, e.EventID, e.OccurredAt, e.RecordedAt, e.ActorType, e.ActorID,
				e.ActorEmail, e.ActorName, e.Action, e.EntityType, e.EntityID, e.TeamID, string(e.Details),
				e.RequestID, e.ClientIP, e.UserAgent, e.PrevHash, e.Hash})
		}
		if len(fresh) == 0 {
			return nil
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit", "events"}, insertColumns, pgx.CopyFromRows(fresh)); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE audit.chain_head SET last_id = $1, last_hash = $2, updated_at = now()`, lastID, lastHash); err != nil {
			return fmt.Errorf("move chain head: %w", err)
		}
		recorded = len(fresh)
		return nil
	})
	return recorded, err
}

var insertColumns = strings.Split("id,event_id,occurred_at,recorded_at,actor_type,actor_id,actor_email,actor_name,"+
	"action,entity_type,entity_id,team_id,details,request_id,client_ip,user_agent,prev_hash,hash", ",")

// where builds the WHERE clause of f within sc, with its arguments.
func (f Filter) where(sc Scope) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		conds = append(conds, strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(args))))
	}
	if !sc.All {
		teams := slices.DeleteFunc(slices.Clone(sc.Teams), func(t string) bool { return t == "" })
		if teams == nil {
			teams = []string{}
		}
		if slices.Contains(sc.Teams, "") {
			args = append(args, teams, coreTeamEntityTypes)
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

// List returns a page of the events f selects within sc, newest first.
func (s *Store) List(ctx context.Context, f Filter, sc Scope, limit, offset int) ([]Event, error) {
	where, args := f.where(sc)
	args = append(args, limit, offset)
	q := fmt.Sprintf(`SELECT %s FROM audit.events%s ORDER BY id DESC LIMIT $%d OFFSET $%d`,
		eventColumns, where, len(args)-1, len(args))
	rows, _ := s.q.Query(ctx, q, args...)
	events, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) { return scanEvent(r) })
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return events, nil
}

// CountCap is the largest total that Count reports exactly. Counting the
// matches of a common filter (a sixth of a million-event trail is "reveal")
// costs a scan of all of them, hundreds of milliseconds on every page;
// counting at most CountCap+1 of them costs an index range scan of a few
// milliseconds, and a total above CountCap only sizes the pager.
const CountCap = 10_000

// Count returns how many events f selects within sc: exactly when there
// are at most CountCap, else PostgreSQL's estimate of the number, which is
// never below CountCap+1 (so "more than CountCap" always holds) and is
// within a few percent for the single-column filters the page offers (the
// planner's statistics; entity_type × action has extended statistics).
// Without a filter on the whole trail it reads the chain head (ids are
// gapless), which is exact at any size.
func (s *Store) Count(ctx context.Context, f Filter, sc Scope) (int64, error) {
	where, args := f.where(sc)
	if where == "" {
		var n int64
		if err := s.q.QueryRow(ctx, `SELECT last_id FROM audit.chain_head`).Scan(&n); err != nil {
			return 0, fmt.Errorf("count events: %w", err)
		}
		return n, nil
	}
	var n int64
	q := fmt.Sprintf(`SELECT count(*) FROM (SELECT 1 FROM audit.events%s LIMIT %d) m`, where, CountCap+1)
	if err := s.q.QueryRow(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	if n <= CountCap {
		return n, nil
	}
	// EXPLAIN plans the query with the bound values (a utility statement's
	// plan is not cached), so the estimate is that of these filters.
	var plan []byte
	if err := s.q.QueryRow(ctx, `EXPLAIN (FORMAT JSON) SELECT 1 FROM audit.events`+where, args...).Scan(&plan); err != nil {
		return 0, fmt.Errorf("estimate events: %w", err)
	}
	var est []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	if err := json.Unmarshal(plan, &est); err != nil || len(est) == 0 {
		return 0, fmt.Errorf("estimate events: unexpected plan %.200q: %v", plan, err)
	}
	return max(int64(est[0].Plan.Rows), CountCap+1), nil
}

// Before returns up to n events f selects within sc whose id is below
// before (0: from the newest), newest first: keyset paging for exports,
// whose cost does not grow with the depth of the page.
func (s *Store) Before(ctx context.Context, f Filter, sc Scope, before int64, n int) ([]Event, error) {
	where, args := f.where(sc)
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
	rows, _ := s.q.Query(ctx, q, args...)
	events, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) { return scanEvent(r) })
	if err != nil {
		return nil, fmt.Errorf("page events: %w", err)
	}
	return events, nil
}

// After returns up to n events with id above after and at most upTo,
// oldest first: the chain in order, a page at a time.
func (s *Store) After(ctx context.Context, after, upTo int64, n int) ([]Event, error) {
	rows, _ := s.q.Query(ctx, `SELECT `+eventColumns+` FROM audit.events
		WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3`, after, upTo, n)
	events, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) { return scanEvent(r) })
	if err != nil {
		return nil, fmt.Errorf("walk chain: %w", err)
	}
	return events, nil
}

// Head returns the id and hash of the newest event (0 and GenesisHash for
// an empty chain).
func (s *Store) Head(ctx context.Context) (int64, string, error) {
	var id int64
	var hash string
	if err := s.q.QueryRow(ctx, `SELECT last_id, last_hash FROM audit.chain_head`).Scan(&id, &hash); err != nil {
		return 0, "", fmt.Errorf("read chain head: %w", err)
	}
	return id, hash, nil
}
