package audit

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
)

// TestCountCap pins the semantics of ListAuditLogs' total: exact up to
// CountCap matches, an estimate above CountCap beyond, exact for the whole
// trail at any size. The trail is loaded with COPY (placeholder hashes, as
// in bench_test.go: nothing here verifies the chain).
func TestCountCap(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const n = 2 * CountCap
	actions := map[int]string{0: "reveal", 1: "reveal", 2: "reveal", 3: "reveal", 4: "rotate"} // 80 % / 20 %
	fake := strings.Repeat("f", 64)
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	i := 0
	src := pgx.CopyFromFunc(func() ([]any, error) {
		if i == n {
			return nil, nil
		}
		i++
		team := "alpha"
		if i%100 == 0 {
			team = "beta"
		}
		return []any{int64(i), "c-" + strconv.Itoa(i), at, at, "user", "user_x", "x@example.com", "X", actions[i%5],
			"token", "1", team, `{}`, "", "", "", fake, fake}, nil
	})
	if _, err := f.pool.CopyFrom(ctx, pgx.Identifier{"audit", "events"}, insertColumns, src); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, `UPDATE audit.chain_head SET last_id = $1, last_hash = $2`, n, fake); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, `ANALYZE audit.events`); err != nil {
		t.Fatal(err)
	}
	admin := &auth.Principal{GlobalRole: auth.RoleAdmin}
	total := func(fl Filter, p *auth.Principal) int64 {
		t.Helper()
		page, err := f.svc.List(ctx, p, fl, 10, 0)
		if err != nil {
			t.Fatal(err)
		}
		return page.Total
	}

	// Whole trail: the chain head, exact.
	if got := total(Filter{}, admin); got != n {
		t.Errorf("unfiltered total %d, want %d", got, n)
	}
	// At most CountCap matches: exact.
	if got := total(Filter{Action: "rotate"}, admin); got != n/5 {
		t.Errorf("rotate total %d, want exactly %d", got, n/5)
	}
	if got := total(Filter{TeamID: "beta"}, admin); got != n/100 {
		t.Errorf("beta total %d, want exactly %d", got, n/100)
	}
	// i%100 == 0 is a reveal (i%5 == 0): every beta event is one.
	if got := total(Filter{Action: "reveal", TeamID: "beta"}, admin); got != n/100 {
		t.Errorf("reveal in beta total %d, want exactly %d", got, n/100)
	}
	if got := total(Filter{Action: "revoke"}, admin); got != 0 {
		t.Errorf("revoke total %d, want 0", got)
	}
	// More than CountCap: an estimate, never CountCap or below, close to
	// the truth (the planner's statistics of a just-analyzed table).
	want := int64(n) * 4 / 5
	got := total(Filter{Action: "reveal"}, admin)
	if got <= CountCap || got < want*9/10 || got > want*11/10 {
		t.Errorf("reveal total %d, want an estimate above %d near %d", got, CountCap, want)
	}
	// Scoped readers go through the same path.
	member := &auth.Principal{TeamRoles: map[string]auth.Role{"alpha": auth.RoleViewer}}
	if got := total(Filter{}, member); got <= CountCap {
		t.Errorf("alpha member's total %d, want an estimate above %d", got, CountCap)
	}
	if got := total(Filter{Action: "rotate"}, member); got != n/5 {
		t.Errorf("alpha member's rotate total %d, want exactly %d", got, n/5)
	}
}
