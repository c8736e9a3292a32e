package audit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
)

// TestHashEncodingIsPinned fixes the canonical encoding: if this hash
// changes, every stored chain stops verifying.
func TestHashEncodingIsPinned(t *testing.T) {
	e := Event{ID: 1, EventID: "e1", OccurredAt: t0, RecordedAt: t0.Add(1500 * time.Microsecond),
		ActorType: "user", ActorID: "user_1", ActorEmail: "a@example.com", ActorName: "A",
		Action: "create", EntityType: "token", EntityID: "7", TeamID: "alpha",
		Details: []byte(`{"name":"n8n"}`), RequestID: "r", ClientIP: "203.0.113.7", UserAgent: "ua", PrevHash: GenesisHash}
	// Recomputed independently (Python hashlib) from the documented encoding.
	const want = "c780ea6bc090ca42c09f555d003ff94cad7d0f83783284cd5f46a5f7fffc5aef"
	got := ComputeHash(&e)
	if got != want {
		t.Fatalf("hash = %s, want %s", got, want)
	}
	// Moving a byte from one field to the next must change the hash (the
	// length prefixes make the encoding injective).
	e2 := e
	e2.ActorID, e2.ActorEmail = "user_1a", "@example.com"
	if ComputeHash(&e2) == got {
		t.Fatal("field boundaries are not part of the hash")
	}
}

// TestDetailsSurviveJSONB checks that details read back from jsonb hash
// exactly as they were submitted, for values jsonb rewrites.
func TestDetailsSurviveJSONB(t *testing.T) {
	f := newFixture(t)
	f.record(t, ev("j1", "update", "token", "alpha", map[string]any{
		"big": 1e21, "small": 1e-7, "tenth": 0.1, "int": 42, "neg": -3.5,
		"html": "<a&b>", "uni": "團隊 ✓ \u2028", "nested": map[string]any{"b": []any{1, "x", nil, true}, "a": map[string]any{}},
		"zz": "", "a": nil,
	}))
	if r := f.verify(t); !r.Ok || r.EventsChecked != 1 {
		t.Fatalf("verify: %+v", r)
	}
}

func TestRecordIsIdempotent(t *testing.T) {
	f := newFixture(t)
	batch := []*auditv1.AuditEvent{
		ev("a", "create", "token", "alpha", nil),
		ev("b", "update", "token", "alpha", nil),
		ev("a", "create", "token", "alpha", nil), // repeated within the batch
	}
	r := f.record(t, batch...)
	if r.Recorded != 2 || r.Duplicates != 1 {
		t.Fatalf("first delivery: %+v", r)
	}
	r = f.record(t, batch...) // the outbox delivers the same batch again
	if r.Recorded != 0 || r.Duplicates != 3 {
		t.Fatalf("redelivery: %+v", r)
	}
	r = f.record(t, ev("b", "update", "token", "alpha", nil), ev("c", "delete", "token", "alpha", nil))
	if r.Recorded != 1 || r.Duplicates != 1 {
		t.Fatalf("partly new batch: %+v", r)
	}
	if n := f.count(t); n != 3 {
		t.Fatalf("%d rows, want 3", n)
	}
	if v := f.verify(t); !v.Ok || v.EventsChecked != 3 {
		t.Fatalf("verify: %+v", v)
	}
	if r := f.record(t); r.Recorded != 0 || r.Duplicates != 0 {
		t.Fatalf("empty batch: %+v", r)
	}
}

func TestConcurrentAppendsKeepOneChain(t *testing.T) {
	f := newFixture(t)
	const writers, batches, per = 8, 10, 10
	var wg sync.WaitGroup
	errc := make(chan error, writers*batches)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				var events []*auditv1.AuditEvent
				for i := 0; i < per; i++ {
					events = append(events, ev(fmt.Sprintf("w%d-b%d-%d", w, b, i), "create", "token", "alpha", nil))
				}
				// Every writer also redelivers one shared event.
				events = append(events, ev(fmt.Sprintf("shared-%d", b), "update", "token", "alpha", nil))
				if _, err := f.client.Record(as(f.service), &auditv1.RecordRequest{Events: events}); err != nil {
					errc <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	want := writers*batches*per + batches
	if n := f.count(t); n != want {
		t.Fatalf("%d rows, want %d", n, want)
	}
	if v := f.verify(t); !v.Ok || v.EventsChecked != int64(want) {
		t.Fatalf("verify: %+v", v)
	}
}

func TestRecordRefusesBadEvents(t *testing.T) {
	f := newFixture(t)
	big := strings.Repeat("x", maxDetailsBytes)
	withActor := func(typ string) *auditv1.AuditEvent {
		e := ev("x", "create", "token", "alpha", nil)
		e.Actor.Type = typ
		return e
	}
	future := ev("x", "create", "token", "alpha", nil)
	future.OccurredAt = timestamppb.New(time.Now().Add(48 * time.Hour))
	nested := map[string]any{}
	cur := nested
	for range 10 {
		next := map[string]any{}
		cur["n"] = next
		cur = next
	}
	cases := map[string]*auditv1.AuditEvent{
		"no event id":        ev("", "create", "token", "alpha", nil),
		"no action":          ev("x", "", "token", "alpha", nil),
		"action with spaces": ev("x", "drop table", "token", "alpha", nil),
		"action too long":    ev("x", strings.Repeat("a", 65), "token", "alpha", nil),
		"no entity type":     ev("x", "create", "", "alpha", nil),
		"unknown actor type": withActor("robot"),
		"NUL in team":        ev("x", "create", "token", "al\x00pha", nil),
		"secret key":         ev("x", "create", "route", "", map[string]any{"password": "hunter2"}),
		"secret key nested":  ev("x", "create", "route", "", map[string]any{"auth": map[string]any{"client_secret": "s"}}),
		"secret suffix":      ev("x", "create", "route", "", map[string]any{"backend_auth_token": "s"}),
		"credential value":   ev("x", "create", "token", "alpha", map[string]any{"note": "ntk_0123456789abcdefABCDEF"}),
		"admin key value":    ev("x", "create", "admin_key", "", map[string]any{"list": []any{"tmak_0123456789abcdefABCDEF"}}),
		"details too large":  ev("x", "create", "token", "alpha", map[string]any{"blob": big}),
		"details too deep":   ev("x", "create", "token", "alpha", nested),
		"NUL in details":     ev("x", "create", "token", "alpha", map[string]any{"name": "a\x00b"}),
		"occurred in future": future,
		"user agent too long": func() *auditv1.AuditEvent {
			e := ev("x", "create", "token", "a", nil)
			e.UserAgent = strings.Repeat("u", 513)
			return e
		}(),
		"entity id too long": func() *auditv1.AuditEvent {
			e := ev("x", "create", "token", "a", nil)
			e.EntityId = strings.Repeat("1", 129)
			return e
		}(),
		"bad occurred_at time": func() *auditv1.AuditEvent {
			e := ev("x", "create", "token", "a", nil)
			e.OccurredAt.Nanos = -1
			return e
		}(),
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			// The bad event spoils a batch with a good one: nothing is stored.
			_, err := f.client.Record(as(f.service), &auditv1.RecordRequest{Events: []*auditv1.AuditEvent{ev("good", "create", "token", "alpha", nil), bad}})
			if !isCode(err, codes.InvalidArgument) {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "ntk_0123") {
				t.Fatalf("error echoes the secret: %v", err)
			}
			if n := f.count(t); n != 0 {
				t.Fatalf("%d rows stored", n)
			}
		})
	}
	t.Run("batch too large", func(t *testing.T) {
		var events []*auditv1.AuditEvent
		for i := 0; i <= MaxBatch; i++ {
			events = append(events, ev(fmt.Sprint(i), "create", "token", "alpha", nil))
		}
		_, err := f.client.Record(as(f.service), &auditv1.RecordRequest{Events: events})
		if !isCode(err, codes.InvalidArgument) || f.count(t) != 0 {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("names that only mention secrets are fine", func(t *testing.T) {
		d, _ := structpb.NewStruct(map[string]any{"token_ref": "OPENAI_KEY", "key_ref": "K", "name": "tok", "scopes": []any{"*"}})
		e := ev("fine", "create", "route", "", nil)
		e.Details = d
		if r := f.record(t, e); r.Recorded != 1 {
			t.Fatalf("%+v", r)
		}
	})
}

func TestOnlyServicesRecord(t *testing.T) {
	f := newFixture(t)
	req := &auditv1.RecordRequest{Events: []*auditv1.AuditEvent{ev("a", "create", "token", "alpha", nil)}}
	if _, err := f.client.Record(context.Background(), req); code(err) != codes.Unauthenticated {
		t.Errorf("no credential: %v", err)
	}
	for name, cred := range map[string]string{"global admin": f.admin, "team admin": f.alice} {
		if _, err := f.client.Record(as(cred), req); code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := f.client.ListRecentEvents(as(f.admin), &auditv1.ListRecentEventsRequest{AllTeams: true}); code(err) != codes.PermissionDenied {
		t.Errorf("ListRecentEvents as admin: %v", err)
	}
	if n := f.count(t); n != 0 {
		t.Fatalf("%d rows stored", n)
	}
}

func TestTrailIsAppendOnly(t *testing.T) {
	f := newFixture(t)
	f.seq(t, 2)
	ctx := context.Background()
	for _, sql := range []string{
		`UPDATE audit.events SET action = 'delete' WHERE id = 1`,
		`DELETE FROM audit.events WHERE id = 2`,
		`TRUNCATE audit.events`,
	} {
		if _, err := f.pool.Exec(ctx, sql); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v", sql, err)
		}
	}
	if n := f.count(t); n != 2 {
		t.Fatalf("%d rows", n)
	}
}

func TestVerifyFindsTampering(t *testing.T) {
	cases := []struct {
		name   string
		sql    string
		broken int64
		reason string
	}{
		{"changed details", `UPDATE audit.events SET details = '{"name": "innocent"}' WHERE id = 3`, 3, "changed"},
		{"changed actor", `UPDATE audit.events SET actor_email = 'someone@else.com' WHERE id = 3`, 3, "changed"},
		{"changed time", `UPDATE audit.events SET occurred_at = occurred_at + interval '1 second' WHERE id = 3`, 3, "changed"},
		{"deleted row", `DELETE FROM audit.events WHERE id = 3`, 3, "missing"},
		{"deleted newest rows", `DELETE FROM audit.events WHERE id >= 4`, 4, "missing"},
		{"row changed and re-hashed", `UPDATE audit.events SET action = 'update', hash = repeat('a', 64) WHERE id = 3`, 3, "changed"},
		{"link re-pointed", `UPDATE audit.events SET prev_hash = repeat('b', 64) WHERE id = 3`, 3, "prev_hash"},
		{"rows swapped", `UPDATE audit.events SET id = 1000 WHERE id = 2; UPDATE audit.events SET id = 2 WHERE id = 3; UPDATE audit.events SET id = 3 WHERE id = 1000`, 2, "prev_hash"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.seq(t, 5)
			if v := f.verify(t); !v.Ok || v.EventsChecked != 5 {
				t.Fatalf("before tampering: %+v", v)
			}
			f.tamper(t, c.sql)
			v := f.verify(t)
			if v.Ok || v.FirstBrokenId != c.broken || !strings.Contains(v.Reason, c.reason) {
				t.Fatalf("got %+v, want first broken %d (%s)", v, c.broken, c.reason)
			}
		})
	}
	t.Run("a forged row with a correct hash breaks the next link", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.seq(t, 5)
		// The attacker recomputes event 3's hash after changing it, so
		// event 3 verifies on its own; event 4 no longer links to it.
		rows, err := f.svc.store.After(context.Background(), 2, 3, 1)
		if err != nil || len(rows) != 1 {
			t.Fatal(rows, err)
		}
		e := rows[0]
		e.Action = "reveal"
		e.Details, _ = CanonicalJSON(e.Details)
		f.tamper(t, `UPDATE audit.events SET action = $1, hash = $2 WHERE id = 3`, e.Action, ComputeHash(&e))
		v := f.verify(t)
		if v.Ok || v.FirstBrokenId != 4 || !strings.Contains(v.Reason, "prev_hash") {
			t.Fatalf("got %+v, want event 4 broken", v)
		}
	})
	t.Run("empty chain verifies", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		if v := f.verify(t); !v.Ok || v.EventsChecked != 0 {
			t.Fatalf("%+v", v)
		}
	})
	t.Run("many pages", func(t *testing.T) {
		f := newFixture(t)
		old := verifyPage
		verifyPage = 7
		t.Cleanup(func() { verifyPage = old })
		f.seq(t, 30)
		if v := f.verify(t); !v.Ok || v.EventsChecked != 30 {
			t.Fatalf("%+v", v)
		}
		f.tamper(t, `DELETE FROM audit.events WHERE id = 15`)
		if v := f.verify(t); v.Ok || v.FirstBrokenId != 15 {
			t.Fatalf("%+v", v)
		}
	})
}

func TestOnlyGlobalAdminsVerify(t *testing.T) {
	f := newFixture(t)
	for name, cred := range map[string]string{"team admin": f.alice, "core-team developer": f.carol, "service": f.service} {
		if _, err := f.client.VerifyChain(as(cred), &auditv1.VerifyChainRequest{}); code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := f.client.VerifyChain(context.Background(), &auditv1.VerifyChainRequest{}); code(err) != codes.Unauthenticated {
		t.Errorf("anonymous: %v", err)
	}
}
