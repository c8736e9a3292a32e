package store

// Scope is what a caller may read: every team, or the listed ones.
type Scope struct {
	All   bool
	Teams []string
}

// TeamIDs is Teams, never nil: the queries' team filter and the per-team
// newest-events list read an empty array, not NULL.
func (s Scope) TeamIDs() []string {
	if s.Teams == nil {
		return []string{}
	}
	return s.Teams
}

// scopeSQL is the rollup/event filter of a scope, on parameters $1 and $2
// (args).
const scopeSQL = "($1::boolean OR team_id = ANY($2::text[]))"

func (s Scope) args() []any { return []any{s.All, s.TeamIDs()} }
