package store

import "context"

// TokenRow is a token as the queries that return one select it
// (sqlc.embed(t) and in_grace). Each such query has its own generated row
// type with these fields; every one of them converts to TokenRow.
type TokenRow struct {
	TokenToken TokenToken
	InGrace    bool
}

// EachToken runs ListTokens' query and calls f with each row as it is read,
// instead of collecting them: the list of every token would otherwise hold
// each row twice (sqlc's rows, then the caller's). The row passed to f is
// reused; f keeps copies. The scan list is ListTokens' (sqlc.embed(t) in
// table order, then in_grace); TestEachTokenReadsWhatListTokensReads holds
// the two together.
func (q *Queries) EachToken(ctx context.Context, db DBTX, arg ListTokensParams, f func(*TokenRow) error) error {
	rows, err := db.Query(ctx, listTokens, arg.AllTeams, arg.Teams)
	if err != nil {
		return err
	}
	defer rows.Close()
	var r TokenRow
	for rows.Next() {
		r = TokenRow{} // fresh slices and pointers for every row
		t := &r.TokenToken
		if err := rows.Scan(&t.ID, &t.Name, &t.TeamID, &t.CreatedBy, &t.Description, &t.Scopes, &t.Preview,
			&t.CreatedAt, &t.UpdatedAt, &t.ExpiresAt, &t.LastUsed, &t.RevokedAt, &t.RevokedBy, &t.RotationGraceEndsAt,
			&r.InGrace); err != nil {
			return err
		}
		if err := f(&r); err != nil {
			return err
		}
	}
	return rows.Err()
}
