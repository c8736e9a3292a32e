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
