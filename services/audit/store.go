package audit

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/audit/store"
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

// auditdb is the audit service's SQL (package store). Its queries take the
// connection: the pool, or the transaction of an append.
var auditdb = store.New()

// Store is the audit service's reads and writes of the trail, over the
// queries of package store.
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

// eventOf is the domain form of an event row.
func eventOf(r *store.AuditEvent) Event {
	return Event{ID: r.ID, EventID: r.EventID, OccurredAt: r.OccurredAt, RecordedAt: r.RecordedAt,
		ActorType: r.ActorType, ActorID: r.ActorID, ActorEmail: r.ActorEmail, ActorName: r.ActorName,
		Action: r.Action, EntityType: r.EntityType, EntityID: r.EntityID, TeamID: r.TeamID, Details: r.Details,
		RequestID: r.RequestID, ClientIP: r.ClientIp, UserAgent: r.UserAgent, PrevHash: r.PrevHash, Hash: r.Hash}
}

func eventsOf(rows []store.AuditEvent) []Event {
	events := make([]Event, len(rows))
	for i := range rows {
		events[i] = eventOf(&rows[i])
	}
	return events
}

// Append adds events (already validated, distinct event ids) to the end of
// the chain and returns how many were new; events whose event_id is stored
// already are skipped (outbox redelivery). Appends are serialized on the
// chain head row, so every event links to the one before it and ids stay
// gapless. now is the recorded_at of the batch.
func (s *Store) Append(ctx context.Context, events []Event, now time.Time) (recorded int, err error) {
	err = db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		recorded = 0
		head, err := auditdb.LockChainHead(ctx, tx)
		if err != nil {
			return fmt.Errorf("lock chain head: %w", err)
		}
		lastID, lastHash := head.LastID, head.LastHash
		ids := make([]string, len(events))
		for i, e := range events {
			ids[i] = e.EventID
		}
		// Under the lock, so no concurrent batch can store one of these ids
		// between this check and the insert.
		stored, err := auditdb.StoredEventIDs(ctx, tx, ids)
		if err != nil {
			return fmt.Errorf("find stored events: %w", err)
		}
		seen := make(map[string]bool, len(stored))
		for _, id := range stored {
			seen[id] = true
		}
		recordedAt := now.UTC().Truncate(time.Microsecond)
		fresh := make([]store.InsertEventsParams, 0, len(events))
		for _, e := range events {
			if seen[e.EventID] {
				continue
			}
			lastID++
			e.ID, e.RecordedAt, e.PrevHash = lastID, recordedAt, lastHash
			e.Hash = ComputeHash(&e)
			lastHash = e.Hash
			fresh = append(fresh, store.InsertEventsParams{ID: e.ID, EventID: e.EventID, OccurredAt: e.OccurredAt,
				RecordedAt: e.RecordedAt, ActorType: e.ActorType, ActorID: e.ActorID, ActorEmail: e.ActorEmail,
				ActorName: e.ActorName, Action: e.Action, EntityType: e.EntityType, EntityID: e.EntityID,
				TeamID: e.TeamID, Details: e.Details, RequestID: e.RequestID, ClientIp: e.ClientIP,
				UserAgent: e.UserAgent, PrevHash: e.PrevHash, Hash: e.Hash})
		}
		if len(fresh) == 0 {
			return nil
		}
		if _, err := auditdb.InsertEvents(ctx, tx, fresh); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		if err := auditdb.MoveChainHead(ctx, tx, store.MoveChainHeadParams{LastID: lastID, LastHash: lastHash}); err != nil {
			return fmt.Errorf("move chain head: %w", err)
		}
		recorded = len(fresh)
		return nil
	})
	return recorded, err
}

// eventFilter is the store's form of f within sc: "" in sc.Teams becomes
// the team-less entity types core-team governs.
func eventFilter(f Filter, sc Scope) store.EventFilter {
	ef := store.EventFilter{AllTeams: sc.All, Action: f.Action, EntityType: f.EntityType, TeamID: f.TeamID,
		Actor: f.Actor, From: f.From, To: f.To}
	if !sc.All {
		ef.Teams = slices.DeleteFunc(slices.Clone(sc.Teams), func(t string) bool { return t == "" })
		if slices.Contains(sc.Teams, "") {
			ef.TeamlessEntityTypes = coreTeamEntityTypes
		}
	}
	return ef
}

// List returns a page of the events f selects within sc, newest first.
func (s *Store) List(ctx context.Context, f Filter, sc Scope, limit, offset int) ([]Event, error) {
	rows, err := store.ListEvents(ctx, s.q, eventFilter(f, sc), limit, offset)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return eventsOf(rows), nil
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
	n, err := store.CountEvents(ctx, s.q, eventFilter(f, sc), CountCap)
	if err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}

// Before returns up to n events f selects within sc whose id is below
// before (0: from the newest), newest first: keyset paging for exports,
// whose cost does not grow with the depth of the page.
func (s *Store) Before(ctx context.Context, f Filter, sc Scope, before int64, n int) ([]Event, error) {
	rows, err := store.EventsBefore(ctx, s.q, eventFilter(f, sc), before, n)
	if err != nil {
		return nil, fmt.Errorf("page events: %w", err)
	}
	return eventsOf(rows), nil
}

// After returns up to n events with id above after and at most upTo,
// oldest first: the chain in order, a page at a time.
func (s *Store) After(ctx context.Context, after, upTo int64, n int) ([]Event, error) {
	rows, err := auditdb.EventsAfter(ctx, s.q, store.EventsAfterParams{After: after, UpTo: upTo, N: int32(n)})
	if err != nil {
		return nil, fmt.Errorf("walk chain: %w", err)
	}
	return eventsOf(rows), nil
}

// Head returns the id and hash of the newest event (0 and GenesisHash for
// an empty chain).
func (s *Store) Head(ctx context.Context) (int64, string, error) {
	head, err := auditdb.ChainHead(ctx, s.q)
	if err != nil {
		return 0, "", fmt.Errorf("read chain head: %w", err)
	}
	return head.LastID, head.LastHash, nil
}
