package token

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Resolved is a token found by one of its secrets' hashes.
type Resolved struct {
	Token    *Token
	Status   string
	Previous bool // a rotated-out secret
}

// ResolveToken maps a secret's hash to its token (usage, audit).
func (s *Service) ResolveToken(ctx context.Context, hash string) (*Resolved, error) {
	var id int64
	var validUntil *time.Time
	err := s.Pool.QueryRow(ctx, `SELECT token_id, valid_until FROM token.token_secrets WHERE hash = $1`, hash).Scan(&id, &validUntil)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errs.NotFound("Token not found")
	}
	if err != nil {
		return nil, err
	}
	t, err := scanToken(s.Pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM token.tokens t WHERE t.id = $1`, id))
	if err != nil {
		return nil, err
	}
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
	tag, err := s.Pool.Exec(ctx, `
		UPDATE token.tokens t SET last_used = u.used_at
		FROM (SELECT s.token_id, max(x.used_at) AS used_at
		      FROM unnest($1::text[], $2::timestamptz[]) AS x(hash, used_at)
		      JOIN token.token_secrets s ON s.hash = x.hash
		      GROUP BY s.token_id) u
		WHERE t.id = u.token_id AND (t.last_used IS NULL OR t.last_used < u.used_at)`, hashes, times)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
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
	rows, _ := s.Pool.Query(ctx, `SELECT `+tokenColumns+`,
		  ARRAY(SELECT s.hash FROM token.token_secrets s WHERE s.token_id = t.id ORDER BY s.created_at)
		FROM token.tokens t
		WHERE t.id = ANY($1) OR t.id IN (SELECT token_id FROM token.token_secrets WHERE hash = ANY($2))
		ORDER BY t.id`, ids, hashes)
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (TokenRefs, error) {
		var t Token
		var ref TokenRefs
		err := r.Scan(&t.ID, &t.Name, &t.TeamID, &t.CreatedBy, &t.Description, &t.Preview, &t.Scopes, &t.CreatedAt,
			&t.ExpiresAt, &t.LastUsed, &t.RevokedAt, &t.GraceEndsAt, &ref.Hashes)
		ref.Token = &t
		return ref, err
	})
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
	const scope = `t.revoked_at IS NULL AND ($1 OR t.team_id = ANY($2))`
	if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM token.tokens t WHERE `+scope, q.All, q.Teams).Scan(&st.Total); err != nil {
		return nil, err
	}
	if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM token.routes`).Scan(&st.Routes); err != nil {
		return nil, err
	}
	rows, _ := s.Pool.Query(ctx, `SELECT t.team_id, count(*) FROM token.tokens t WHERE `+scope+` GROUP BY 1 ORDER BY 2 DESC, 1`, q.All, q.Teams)
	for rows.Next() {
		var c struct {
			Team  string
			Count int64
		}
		if err := rows.Scan(&c.Team, &c.Count); err != nil {
			rows.Close()
			return nil, err
		}
		st.ByTeam = append(st.ByTeam, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, _ = s.Pool.Query(ctx, `
		SELECT to_char(d, 'YYYY-MM-DD'), count(t.id)
		FROM generate_series((now() AT TIME ZONE 'UTC')::date - ($3::int - 1), (now() AT TIME ZONE 'UTC')::date, interval '1 day') d
		LEFT JOIN token.tokens t ON (t.created_at AT TIME ZONE 'UTC')::date = d::date AND `+scope+`
		GROUP BY d ORDER BY d`, q.All, q.Teams, q.TrendDays)
	for rows.Next() {
		var c struct {
			Date  string
			Count int64
		}
		if err := rows.Scan(&c.Date, &c.Count); err != nil {
			rows.Close()
			return nil, err
		}
		st.Trend = append(st.Trend, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, _ = s.Pool.Query(ctx, `SELECT `+tokenColumns+` FROM token.tokens t WHERE `+scope+`
		AND t.expires_at > now() AND t.expires_at <= now() + $3 * interval '1 day'
		ORDER BY t.expires_at LIMIT $4`, q.All, q.Teams, q.ExpiringDays, q.ExpiringLimit)
	exp, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*Token, error) { return scanToken(r) })
	st.Expiring = exp
	return st, err
}

func cmpOr(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}
