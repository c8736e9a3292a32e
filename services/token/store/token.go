package store

// TokenRow is a token as the queries that return one select it
// (sqlc.embed(t) and in_grace). Each such query has its own generated row
// type with these fields; every one of them converts to TokenRow.
type TokenRow struct {
	TokenToken TokenToken
	InGrace    bool
}
