package usage

import (
	"context"
	"strconv"
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/usage/store"
)

// ingest is the use case of POST /api/usage-log: verify, decode, resolve
// every token hash, then hand the events to the Ingester and wait for
// their commit.
type ingest struct {
	verifier  *Verifier
	tokens    *tokenCache
	ingester  *Ingester
	retention time.Duration
	now       func() time.Time
}

func newIngest(cfg IngestConfig, ing *Ingester, tokens *tokenCache, retention time.Duration, now func() time.Time) *ingest {
	var secrets [][]byte
	for _, s := range []string{cfg.Secret.Reveal(), cfg.PreviousSecret.Reveal()} {
		if s != "" {
			secrets = append(secrets, []byte(s))
		}
	}
	return &ingest{
		verifier: &Verifier{Secrets: secrets, AllowUnsigned: cfg.AllowUnsigned, Now: now},
		tokens:   tokens, ingester: ing, retention: retention, now: now,
	}
}

// Ingest verifies, decodes and stores one posted body; nothing is stored
// unless every event is valid and belongs to a known token.
func (in *ingest) Ingest(ctx context.Context, body []byte, sig, ts string) (accepted, duplicates int, err error) {
	if _, err := in.verifier.Verify(sig, ts, body); err != nil {
		return 0, 0, err
	}
	now := in.now()
	events, batch, err := DecodePayload(body, now, now.Add(-in.retention))
	if err != nil {
		return 0, 0, err
	}
	// Signed or not, every hash must name a token (unsigned posts may only
	// report existing tokens; signed ones must not store garbage either).
	var hashes []string
	seen := map[string]bool{}
	for _, e := range events {
		if !seen[e.TokenHash] {
			seen[e.TokenHash] = true
			hashes = append(hashes, e.TokenHash)
		}
	}
	ids, unknown, err := in.tokens.resolve(ctx, hashes)
	if err != nil {
		return 0, 0, err
	}
	stored := make([]storedEvent, len(events))
	for i, e := range events {
		if unknown[e.TokenHash] {
			field := "token_hash"
			if batch {
				field = "events[" + strconv.Itoa(i) + "].token_hash"
			}
			return 0, 0, errs.Invalid(field + ": unknown token")
		}
		id := ids[e.TokenHash]
		stored[i] = storedEvent{Event: e, TokenID: id.ID, TeamID: id.Team}
	}
	return in.ingester.Submit(ctx, stored)
}

// storedEvent is an event with the token it belongs to, as stored.
type storedEvent struct {
	Event
	TokenID int64
	TeamID  string
}

// dedupKey identifies an event for deduplication: event_id and the
// timestamp (the unique key of usage.events, which must hold the partition
// key).
func dedupKey(eventID string, usedAt time.Time) string {
	return eventID + "\x00" + strconv.FormatInt(usedAt.UnixMicro(), 10)
}

// insertEvents stores evs (no two with the same dedup key) in one
// statement (store.Queries.InsertEvents: the events and their rollups,
// committed together) and returns which were new; the others were stored
// before.
func insertEvents(ctx context.Context, db store.DBTX, evs []storedEvent) ([]bool, error) {
	n := len(evs)
	p := store.InsertEventsParams{
		EventIDs: make([]string, n), UsedAt: make([]time.Time, n), TokenHashes: make([]string, n),
		TokenIDs: make([]int64, n), TeamIDs: make([]string, n), RoutePaths: make([]*string, n),
		ResponseStatus: make([]*int32, n), ResponseTimeMS: make([]*int32, n), IPAddresses: make([]*string, n),
		UserAgents: make([]*string, n), RequestMethods: make([]*string, n), ErrorMessages: make([]*string, n),
	}
	for i, e := range evs {
		p.EventIDs[i], p.UsedAt[i], p.TokenHashes[i], p.TokenIDs[i], p.TeamIDs[i] = e.EventID, e.UsedAt, e.TokenHash, e.TokenID, e.TeamID
		p.RoutePaths[i], p.IPAddresses[i], p.UserAgents[i], p.RequestMethods[i], p.ErrorMessages[i] = e.Route, e.IPAddress, e.UserAgent, e.RequestMethod, e.ErrorMessage
		p.ResponseStatus[i], p.ResponseTimeMS[i] = e.ResponseStatus, e.ResponseTimeMS
	}
	rows, err := queries.InsertEvents(ctx, db, p)
	if err != nil {
		return nil, err
	}
	inserted := make(map[string]bool, len(rows))
	for _, r := range rows {
		inserted[dedupKey(r.EventID, r.UsedAt)] = true
	}
	isNew := make([]bool, n)
	for i, e := range evs {
		isNew[i] = inserted[dedupKey(e.EventID, e.UsedAt)]
	}
	return isNew, nil
}
