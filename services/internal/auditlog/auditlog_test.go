package auditlog

import (
	"context"
	"errors"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/outbox"
	"github.com/tokenmanager/tokenmanager/services/internal/requestid"
)

func TestEventCarriesTheCaller(t *testing.T) {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(
		"x-forwarded-for", "203.0.113.7, 10.0.0.1", "grpcgateway-user-agent", "n8n"))
	ctx = requestid.With(ctx, "req-1")
	ctx = auth.WithPrincipal(ctx, &auth.Principal{Kind: auth.KindUser, ID: "user_a", Email: "a@example.com"})
	ev, err := Event(ctx, Change{Action: "reveal", EntityType: "token", EntityID: "42", Team: "t", Details: map[string]any{"name": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if ev.GetActor().GetId() != "user_a" || ev.GetActor().GetType() != "user" || ev.GetActor().GetEmail() != "a@example.com" {
		t.Errorf("actor %+v", ev.GetActor())
	}
	if ev.GetClientIp() != "203.0.113.7" || ev.GetUserAgent() != "n8n" || ev.GetRequestId() != "req-1" || ev.GetEventId() == "" {
		t.Errorf("event %+v", ev)
	}
	if _, err := Event(ctx, Change{Details: map[string]any{"bad": make(chan int)}}); err == nil {
		t.Error("non-JSON details accepted")
	}
}

// fakeAudit refuses, all-or-nothing like the real Record, any batch holding
// an event whose action is "bad".
type fakeAudit struct {
	mu       sync.Mutex
	recorded []string
	down     bool
}

func (f *fakeAudit) Record(_ context.Context, req *auditv1.RecordRequest, _ ...grpc.CallOption) (*auditv1.RecordResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, status.Error(codes.Unavailable, "down")
	}
	for _, ev := range req.GetEvents() {
		if ev.GetAction() == "bad" {
			return nil, status.Error(codes.InvalidArgument, "event 0: bad action")
		}
	}
	for _, ev := range req.GetEvents() {
		f.recorded = append(f.recorded, ev.GetAction())
	}
	return &auditv1.RecordResponse{Recorded: int32(len(req.GetEvents()))}, nil
}

type client struct {
	auditv1.AuditServiceClient
	*fakeAudit
}

func (c client) Record(ctx context.Context, req *auditv1.RecordRequest, opts ...grpc.CallOption) (*auditv1.RecordResponse, error) {
	return c.fakeAudit.Record(ctx, req, opts...)
}

func entries(t *testing.T, actions ...string) []outbox.Entry {
	var out []outbox.Entry
	for i, a := range actions {
		b, err := protojson.Marshal(&auditv1.AuditEvent{EventId: a, Action: a})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, outbox.Entry{ID: int64(i + 1), Topic: Topic, Payload: b})
	}
	return out
}

func TestDeliverIsolatesAnInvalidEvent(t *testing.T) {
	f := &fakeAudit{}
	deliver := Deliver(client{fakeAudit: f})
	errs := deliver(context.Background(), entries(t, "create", "bad", "delete"))
	if len(errs) != 3 || errs[0] != nil || errs[2] != nil || errs[1] == nil {
		t.Fatalf("errs %v", errs)
	}
	if len(f.recorded) != 2 {
		t.Errorf("recorded %v, want the two valid events", f.recorded)
	}
	if errs := deliver(context.Background(), entries(t, "create")); errs != nil {
		t.Errorf("clean batch: %v", errs)
	}
	f.down = true
	errs = deliver(context.Background(), entries(t, "create", "update"))
	if len(errs) != 2 || errs[0] == nil || errs[1] == nil || errors.Is(errs[0], context.Canceled) {
		t.Errorf("audit down: %v", errs)
	}
}

// TestEventDetailsInV27Shape checks the details v2.7's dashboard reads
// (contract §8): the actor under the key its action implies, with an
// e-mail or a label for every kind of caller, a string name, and a refusal
// of what the dashboard would crash on.
func TestEventDetailsInV27Shape(t *testing.T) {
	user := &auth.Principal{Kind: auth.KindUser, ID: "user_a", Email: "a@example.com"}
	noMail := &auth.Principal{Kind: auth.KindUser, ID: "user_b"}
	key := &auth.Principal{Kind: auth.KindAdminKey, ID: "ak_1", Name: "ci"}
	svc := &auth.Principal{Kind: auth.KindService, ID: "team"}
	cases := []struct {
		p              *auth.Principal // nil: no caller
		action         string
		wantKey        string
		wantID, wantBy string
	}{
		{user, "create", "created", "user_a", "a@example.com"},
		{user, "update", "updated", "user_a", "a@example.com"},
		{user, "rotate", "updated", "user_a", "a@example.com"},
		{user, "reveal", "updated", "user_a", "a@example.com"},
		{user, "accept", "updated", "user_a", "a@example.com"},
		{user, "delete", "deleted", "user_a", "a@example.com"},
		{user, "revoke", "deleted", "user_a", "a@example.com"},
		{noMail, "create", "created", "user_b", "unknown"},
		{key, "delete", "deleted", "ak_1", "ci (admin key)"},
		{svc, "update", "updated", "team", "team (service)"},
		{nil, "create", "created", "system", "system"},
	}
	for _, c := range cases {
		ctx := context.Background()
		if c.p != nil {
			ctx = auth.WithPrincipal(ctx, c.p)
		}
		in := map[string]any{"name": "x", "scopes": []any{"*"}}
		ev, err := Event(ctx, Change{Action: c.action, EntityType: "token", EntityID: "7", Details: in})
		if err != nil {
			t.Fatalf("%s by %v: %v", c.action, c.p, err)
		}
		d := ev.GetDetails().AsMap()
		if d[c.wantKey+"_by"] != c.wantID || d[c.wantKey+"_by_email"] != c.wantBy || d["name"] != "x" {
			t.Errorf("%s by %v: details %v, want %s_by=%s, %s_by_email=%s", c.action, c.p, d, c.wantKey, c.wantID, c.wantKey, c.wantBy)
		}
		for _, other := range []string{"created", "updated", "deleted"} {
			if _, ok := d[other+"_by_email"]; ok && other != c.wantKey {
				t.Errorf("%s: details also name the actor as %s_by_email: %v", c.action, other, d)
			}
		}
		if _, ok := in[c.wantKey+"_by"]; ok {
			t.Errorf("Event changed the writer's details map")
		}
	}

	ctx := auth.WithPrincipal(context.Background(), user)
	ev, err := Event(ctx, Change{Action: "delete", EntityType: "team", EntityID: "backend-team"})
	if err != nil {
		t.Fatal(err)
	}
	if got := ev.GetDetails().AsMap()["name"]; got != "backend-team" {
		t.Errorf("no name given: name %v, want the entity id", got)
	}
	for name, bad := range map[string]map[string]any{
		"name as a diff":        {"name": map[string]any{"from": "a", "to": "b"}},
		"name null":             {"name": nil},
		"team_name not text":    {"name": "x", "team_name": 3.0},
		"scopes not a list":     {"name": "x", "scopes": "*"},
		"tags holding objects":  {"name": "x", "tags": []any{map[string]any{}}},
		"actor set by a writer": {"name": "x", "created_by_email": "someone@example.com"},
	} {
		if _, err := Event(ctx, Change{Action: "create", EntityType: "token", EntityID: "7", Details: bad}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
