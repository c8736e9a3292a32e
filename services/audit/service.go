package audit

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/authz"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Paging limits of ListAuditLogs.
const (
	DefaultLimit = 50
	MaxLimit     = 200
	// statsTimeout bounds the token service call of GetStats, so a slow
	// token service delays the page by at most this much.
	statsTimeout = 2 * time.Second
)

// Export sizes: rows fetched per keyset page, and bytes per streamed chunk.
var (
	exportPage  = 500
	exportChunk = 32 << 10
	verifyPage  = 1000
)

// TokenStats is the part of the token service GetStats needs.
type TokenStats interface {
	GetTokenStats(ctx context.Context, in *tokenv1.GetTokenStatsRequest, opts ...grpc.CallOption) (*tokenv1.GetTokenStatsResponse, error)
}

// Service holds the audit use cases; the gRPC handlers only translate.
type Service struct {
	store  *Store
	tokens TokenStats // nil: token counts are reported as 0
	log    *slog.Logger
	now    func() time.Time
}

// NewService returns the audit use cases over store. tokens may be nil.
func NewService(store *Store, tokens TokenStats, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, tokens: tokens, log: log, now: time.Now}
}

// Record validates a batch and appends its new events. It is all or
// nothing: one invalid event refuses the batch (naming it), since events
// come from our own services and a bad one is a bug to see, not to hide.
// Events repeated within the batch or stored before count as duplicates.
func (s *Service) Record(ctx context.Context, in []*auditv1.AuditEvent) (recorded, duplicates int, err error) {
	if len(in) > MaxBatch {
		return 0, 0, errs.Invalid(fmt.Sprintf("at most %d events per batch", MaxBatch))
	}
	now := s.now()
	events := make([]Event, 0, len(in))
	seen := make(map[string]bool, len(in))
	for i, pe := range in {
		e, err := newEvent(pe, now)
		if err != nil {
			return 0, 0, fmt.Errorf("event %d (%.40q): %w", i, pe.GetEventId(), err)
		}
		if seen[e.EventID] {
			duplicates++
			continue
		}
		seen[e.EventID] = true
		events = append(events, e)
	}
	if len(events) == 0 {
		return 0, duplicates, nil
	}
	n, err := s.store.Append(ctx, events, now)
	if err != nil {
		return 0, 0, err
	}
	return n, duplicates + len(events) - n, nil
}

// ScopeOf is what p may read: everything for a global ADMIN (and for
// services), else its teams' events; of the events of no team, core-team
// members, who govern routes, see the routes' (not those of admin keys,
// global roles or invitations, which may name any team: a global ADMIN's).
func ScopeOf(p *auth.Principal) Scope {
	all, teams := authz.ReadScope(p)
	if all {
		return Scope{All: true}
	}
	if slices.Contains(teams, authz.CoreTeam) {
		teams = append(teams, "")
	}
	if teams == nil {
		teams = []string{}
	}
	return Scope{Teams: teams}
}

// checkFilter refuses malformed filters (400) and a team outside the
// caller's scope (403). Unknown but well-formed actions and entity types
// are fine: they select nothing, and writers may add new ones.
func checkFilter(f Filter, sc Scope) error {
	if f.Action != "" && !namePattern.MatchString(f.Action) {
		return errs.Invalid("action must be 1-64 characters of a-z, 0-9, '_', '.', '-' starting with a letter")
	}
	if f.EntityType != "" && !namePattern.MatchString(f.EntityType) {
		return errs.Invalid("entity_type must be 1-64 characters of a-z, 0-9, '_', '.', '-' starting with a letter")
	}
	if err := checkText("team_id", f.TeamID, 64); err != nil {
		return err
	}
	if err := checkText("actor", f.Actor, 320); err != nil {
		return err
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.From.After(f.To) {
		return errs.Invalid("from must not be after to")
	}
	if f.TeamID != "" && !sc.All && !slices.Contains(sc.Teams, f.TeamID) {
		return errs.Forbidden(fmt.Sprintf("You are not a member of team '%s'", f.TeamID))
	}
	return nil
}

// Page is one page of ListAuditLogs.
type Page struct {
	Total         int64
	Limit, Offset int
	Events        []Event
}

// List returns a page of the events f selects that p may read, newest
// first. limit 0 means DefaultLimit.
func (s *Service) List(ctx context.Context, p *auth.Principal, f Filter, limit, offset int) (Page, error) {
	if limit < 1 || limit > MaxLimit {
		return Page{}, errs.Invalid(fmt.Sprintf("limit must be between 1 and %d", MaxLimit))
	}
	if offset < 0 {
		return Page{}, errs.Invalid("offset must not be negative")
	}
	sc := ScopeOf(p)
	if err := checkFilter(f, sc); err != nil {
		return Page{}, err
	}
	// The count and the page are independent queries; running them side by
	// side costs the slower of the two instead of their sum. The trail is
	// append-only, so the two can disagree only by events appended between
	// them.
	type counted struct {
		n   int64
		err error
	}
	cc := make(chan counted, 1)
	go func() {
		n, err := s.store.Count(ctx, f, sc)
		cc <- counted{n, err}
	}()
	events, err := s.store.List(ctx, f, sc, limit, offset)
	c := <-cc
	if err != nil {
		return Page{}, err
	}
	if c.err != nil {
		return Page{}, c.err
	}
	return Page{Total: c.n, Limit: limit, Offset: offset, Events: events}, nil
}

// csvHeader is the export's first row.
var csvHeader = []string{"id", "created_at", "action", "entity_type", "entity_id", "team_id", "actor_type",
	"actor_id", "actor_email", "actor_name", "details", "request_id", "client_ip", "user_agent"}

// Export writes the events f selects that p may read as CSV (RFC 4180,
// header row first, newest event first) to emit, in chunks of about
// exportChunk bytes. It pages through the trail by id (keyset), so memory
// stays constant however long the trail is; since ids only grow and rows
// never change, the export is the trail as it was when it started.
// Filters are checked before anything is emitted, so a bad one is a clean
// 400 rather than a broken download.
func (s *Service) Export(ctx context.Context, p *auth.Principal, f Filter, emit func([]byte) error) error {
	sc := ScopeOf(p)
	if err := checkFilter(f, sc); err != nil {
		return err
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.UseCRLF = true // RFC 4180
	flush := func(force bool) error {
		w.Flush()
		if err := w.Error(); err != nil {
			return err
		}
		if buf.Len() == 0 || (!force && buf.Len() < exportChunk) {
			return nil
		}
		err := emit(bytes.Clone(buf.Bytes()))
		buf.Reset()
		return err
	}
	if err := w.Write(csvHeader); err != nil {
		return err
	}
	var before int64
	for {
		page, err := s.store.Before(ctx, f, sc, before, exportPage)
		if err != nil {
			return err
		}
		for _, e := range page {
			details, err := CanonicalJSON(e.Details) // compact, keys sorted
			if err != nil {
				return fmt.Errorf("event %d: details: %w", e.ID, err)
			}
			rec := []string{strconv.FormatInt(e.ID, 10), e.OccurredAt.UTC().Format(time.RFC3339Nano), e.Action,
				e.EntityType, e.EntityID, e.TeamID, e.ActorType, e.ActorID, e.ActorEmail, e.ActorName,
				string(details), e.RequestID, e.ClientIP, e.UserAgent}
			for i := range rec {
				rec[i] = safeCell(rec[i])
			}
			if err := w.Write(rec); err != nil {
				return err
			}
			if err := flush(false); err != nil {
				return err
			}
		}
		if len(page) < exportPage {
			return flush(true)
		}
		before = page[len(page)-1].ID
	}
}

// safeCell defuses spreadsheet formulas: a cell that starts with = + - @
// (or a tab or carriage return, which some spreadsheets skip before
// looking) is prefixed with a single quote, as OWASP recommends for CSV
// injection. Audit cells hold user-chosen names, so this matters.
func safeCell(s string) string {
	if s == "" {
		return s
	}
	r, _ := utf8.DecodeRuneInString(s)
	switch r {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// VerifyResult is what VerifyChain found.
type VerifyResult struct {
	OK            bool
	Checked       int64
	FirstBrokenID int64
	Reason        string
}

// actionVerify is reading the whole chain. authz grants actions that have
// no team rule to global ADMINs only, which is what verification needs.
const actionVerify = authz.Action("audit.verify")

// Verify walks the chain from the first event to the chain head, a page at
// a time, and reports the first event whose link does not hold: a missing
// id (a deleted row), a prev_hash that is not the previous event's hash (a
// row inserted or re-hashed), or stored fields that no longer produce the
// stored hash (a changed row). Events appended while it runs are not
// checked (it stops at the head it read first).
func (s *Service) Verify(ctx context.Context, p *auth.Principal) (VerifyResult, error) {
	if err := authz.Authorize(p, actionVerify, authz.Resource{}); err != nil {
		return VerifyResult{}, err
	}
	headID, headHash, err := s.store.Head(ctx)
	if err != nil {
		return VerifyResult{}, err
	}
	res := VerifyResult{}
	broken := func(id int64, reason string, args ...any) (VerifyResult, error) {
		res.FirstBrokenID, res.Reason = id, fmt.Sprintf(reason, args...)
		return res, nil
	}
	prevHash := GenesisHash
	var last int64
	for {
		page, err := s.store.After(ctx, last, headID, verifyPage)
		if err != nil {
			return VerifyResult{}, err
		}
		for i := range page {
			e := &page[i]
			switch {
			case e.ID != last+1:
				return broken(last+1, "event %d is missing (the next stored event is %d)", last+1, e.ID)
			case e.PrevHash != prevHash:
				return broken(e.ID, "prev_hash of event %d does not match the hash of the event before it", e.ID)
			}
			details, err := CanonicalJSON(e.Details)
			if err != nil {
				return VerifyResult{}, fmt.Errorf("event %d: details: %w", e.ID, err)
			}
			e.Details = details
			if ComputeHash(e) != e.Hash {
				return broken(e.ID, "event %d was changed after it was recorded (its hash does not match its fields)", e.ID)
			}
			prevHash, last = e.Hash, e.ID
			res.Checked++
		}
		if len(page) < verifyPage {
			break
		}
	}
	if last != headID {
		return broken(last+1, "event %d is missing (the chain head is at event %d)", last+1, headID)
	}
	if prevHash != headHash {
		return broken(headID, "event %d does not match the chain head's hash", headID)
	}
	res.OK = true
	return res, nil
}

// Stats is GET /api/stats: token and route counts in p's scope and p's
// ten newest visible events.
type Stats struct {
	TotalTokens, TotalRoutes int64
	Recent                   []Event
}

// Stats returns the legacy /stats page's figures for p. The counts come
// from the token service; when it cannot answer, they are reported as 0
// (and a warning logged) rather than failing the page, whose other half is
// the audit trail this service owns.
func (s *Service) Stats(ctx context.Context, p *auth.Principal) (Stats, error) {
	sc := ScopeOf(p)
	recent, err := s.store.List(ctx, Filter{}, sc, 10, 0)
	if err != nil {
		return Stats{}, err
	}
	st := Stats{Recent: recent}
	if s.tokens == nil {
		return st, nil
	}
	all, teams := authz.ReadScope(p)
	cctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	resp, err := s.tokens.GetTokenStats(cctx, &tokenv1.GetTokenStatsRequest{TeamIds: teams, AllTeams: all})
	if err != nil {
		s.log.WarnContext(ctx, "token stats unavailable; reporting 0 tokens and routes", "error", err)
		return st, nil
	}
	st.TotalTokens, st.TotalRoutes = resp.GetTotalTokens(), resp.GetTotalRoutes()
	return st, nil
}

// Recent returns the newest events of the given teams, or of all teams,
// for the dashboard overview (which is built by the usage service on
// behalf of its caller). As for people, the events of no team come with
// core-team. limit 0 means 10; at most 100.
func (s *Service) Recent(ctx context.Context, teams []string, allTeams bool, limit int) ([]Event, error) {
	switch {
	case limit == 0:
		limit = 10
	case limit < 0 || limit > 100:
		return nil, errs.Invalid("limit must be between 1 and 100")
	}
	sc := Scope{All: allTeams}
	if !allTeams {
		sc.Teams = slices.DeleteFunc(slices.Clone(teams), func(t string) bool { return t == "" })
		if sc.Teams == nil {
			sc.Teams = []string{}
		}
		if slices.Contains(teams, authz.CoreTeam) {
			sc.Teams = append(sc.Teams, "")
		}
	}
	return s.store.List(ctx, Filter{}, sc, limit, 0)
}
