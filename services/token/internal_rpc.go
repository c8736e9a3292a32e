package token

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/token/store"
)

// Resolved is a token found by one of its secrets' hashes.
type Resolved struct {
	Token    *Token
	Status   string
	Previous bool // a rotated-out secret
}

// ResolveToken maps a secret's hash to its token (usage, audit).
func (s *Service) ResolveToken(ctx context.Context, hash string) (*Resolved, error) {
	sec, err := queries.SecretByHash(ctx, s.Pool, hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errs.NotFound("Token not found")
	}
	if err != nil {
		return nil, err
	}
	row, err := queries.AnyToken(ctx, s.Pool, sec.TokenID)
	if err != nil {
		return nil, err
	}
	t, validUntil := tokenOf((*store.TokenRow)(row)), sec.ValidUntil
	r := &Resolved{Token: t, Status: t.Status(s.now()), Previous: validUntil != nil}
	if r.Status == "active" && validUntil != nil && !validUntil.After(s.now()) {
		r.Status = "expired" // this secret's grace period is over
	}
	return r, nil
}

// RecordTokenUse moves last_used forward (never back) for the tokens of
// the given secret hashes; it returns how many tokens moved.
func (s *Service) RecordTokenUse(ctx context.Context, uses map[string]time.Time) (int, error) {
	if len(uses) > 10000 {
		return 0, errs.Invalid("at most 10000 uses per call")
	}
	hashes := make([]string, 0, len(uses))
	times := make([]time.Time, 0, len(uses))
	for h, t := range uses {
		hashes, times = append(hashes, h), append(times, t)
	}
	n, err := queries.RecordTokenUse(ctx, s.Pool, store.RecordTokenUseParams{Hashes: hashes, UsedAt: times})
	return int(n), err
}

// TokenRefs is a token with all its secrets' hashes.
type TokenRefs struct {
	Token  *Token
	Hashes []string
}

// LookupTokens returns tokens (revoked ones too) by id or secret hash.
func (s *Service) LookupTokens(ctx context.Context, ids []int64, hashes []string) ([]TokenRefs, error) {
	if len(ids)+len(hashes) > 10000 {
		return nil, errs.Invalid("at most 10000 ids and hashes per call")
	}
	if ids == nil {
		ids = []int64{}
	}
	if hashes == nil {
		hashes = []string{}
	}
	rows, err := queries.LookupTokens(ctx, s.Pool, store.LookupTokensParams{Ids: ids, Hashes: hashes})
	if err != nil {
		return nil, err
	}
	out := make([]TokenRefs, len(rows))
	for i, r := range rows {
		out[i] = TokenRefs{Token: tokenOf(&store.TokenRow{TokenToken: r.TokenToken, InGrace: r.InGrace}), Hashes: r.Hashes}
	}
	return out, nil
}

// StatsQuery selects the dashboard figures.
type StatsQuery struct {
	Teams                                  []string
	All                                    bool
	TrendDays, ExpiringDays, ExpiringLimit int
}

// Stats are the dashboard's token figures.
type Stats struct {
	Total, Routes int64
	ByTeam        []struct {
		Team  string
		Count int64
	}
	Trend []struct {
		Date  string
		Count int64
	}
	Expiring []*Token
}

// TokenStats computes counts (live tokens), the creation trend per UTC day,
// counts by team and the tokens expiring soon.
func (s *Service) TokenStats(ctx context.Context, q StatsQuery) (*Stats, error) {
	q.TrendDays = min(cmpOr(q.TrendDays, 7), 366)
	q.ExpiringDays = min(cmpOr(q.ExpiringDays, 30), 3650)
	q.ExpiringLimit = min(cmpOr(q.ExpiringLimit, 5), 1000)
	if q.Teams == nil {
		q.Teams = []string{}
	}
	st := &Stats{}
	var err error
	if st.Total, err = queries.CountLiveTokens(ctx, s.Pool, store.CountLiveTokensParams{AllTeams: q.All, Teams: q.Teams}); err != nil {
		return nil, err
	}
	if st.Routes, err = queries.CountRoutes(ctx, s.Pool); err != nil {
		return nil, err
	}
	byTeam, err := queries.LiveTokensByTeam(ctx, s.Pool, store.LiveTokensByTeamParams{AllTeams: q.All, Teams: q.Teams})
	if err != nil {
		return nil, err
	}
	for _, c := range byTeam {
		st.ByTeam = append(st.ByTeam, struct {
			Team  string
			Count int64
		}{c.TeamID, c.Count})
	}
	trend, err := queries.CreationTrend(ctx, s.Pool, store.CreationTrendParams{AllTeams: q.All, Teams: q.Teams, Days: int32(q.TrendDays)})
	if err != nil {
		return nil, err
	}
	for _, c := range trend {
		st.Trend = append(st.Trend, struct {
			Date  string
			Count int64
		}{c.Date, c.Count})
	}
	exp, err := queries.ExpiringTokens(ctx, s.Pool, store.ExpiringTokensParams{AllTeams: q.All, Teams: q.Teams,
		Days: int32(q.ExpiringDays), MaxRows: int32(q.ExpiringLimit)})
	if err != nil {
		return nil, err
	}
	st.Expiring = make([]*Token, len(exp))
	for i, r := range exp {
		st.Expiring[i] = tokenOf((*store.TokenRow)(r))
	}
	return st, nil
}

func cmpOr(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}
