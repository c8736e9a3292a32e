// Package auditlog is how services write to the audit trail: an event is
// built from the caller (principal, request id, client IP, user agent) and
// enqueued in the outbox in the same transaction as the change it records,
// so a change and its audit event commit or roll back together. The
// service's outbox relay then delivers batches to AuditService.Record, which
// is idempotent by event id, so redelivery never duplicates an event.
package auditlog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/internal/outbox"
	"github.com/tokenmanager/tokenmanager/services/internal/requestid"
)

// Topic is the outbox topic of audit events.
const Topic = "audit"

// Change describes what happened; Details must be JSON-compatible values
// and must never hold a secret.
type Change struct {
	Action     string // create, update, delete, reveal, rotate, ...
	EntityType string // token, route, secret, team, membership, invitation, admin_key, ...
	EntityID   string
	Team       string
	Details    map[string]any
}

// Event builds the audit event of change c made by the caller of ctx.
func Event(ctx context.Context, c Change) (*auditv1.AuditEvent, error) {
	details, err := structpb.NewStruct(c.Details)
	if err != nil {
		return nil, fmt.Errorf("audit details: %w", err)
	}
	ev := &auditv1.AuditEvent{
		EventId:    newEventID(),
		OccurredAt: timestamppb.New(time.Now()),
		Actor:      Actor(ctx),
		Action:     c.Action,
		EntityType: c.EntityType,
		EntityId:   c.EntityID,
		TeamId:     c.Team,
		Details:    details,
		RequestId:  requestid.From(ctx),
		ClientIp:   ClientIP(ctx),
		UserAgent:  UserAgent(ctx),
	}
	return ev, nil
}

// Record enqueues the audit events of changes in tx's outbox (schema is
// the service's schema).
func Record(ctx context.Context, tx db.DBTX, schema string, changes ...Change) error {
	msgs := make([]outbox.Message, 0, len(changes))
	for _, c := range changes {
		ev, err := Event(ctx, c)
		if err != nil {
			return err
		}
		payload, err := protojson.Marshal(ev)
		if err != nil {
			return err
		}
		// No ordering key: Record is idempotent and events carry their own time.
		msgs = append(msgs, outbox.Message{Topic: Topic, Payload: json.RawMessage(payload)})
	}
	return outbox.Enqueue(ctx, tx, schema, msgs...)
}

// Deliver is the outbox handler that sends audit events to the audit
// service in one Record call per batch. Record is all-or-nothing, so when it
// refuses a batch as invalid the events are retried one by one: the valid
// ones are delivered, and an invalid one (a bug in its writer; it can never
// become valid) is parked for an hour at a time, visible in the outbox depth
// metrics, instead of being dropped or retried in a tight loop.
func Deliver(client auditv1.AuditServiceClient) outbox.Handler {
	return func(ctx context.Context, entries []outbox.Entry) []error {
		errs := make([]error, len(entries))
		events := make([]*auditv1.AuditEvent, len(entries))
		var batch []*auditv1.AuditEvent
		for i, e := range entries {
			ev := &auditv1.AuditEvent{}
			if err := protojson.Unmarshal(e.Payload, ev); err != nil {
				errs[i] = outbox.RetryAfter(parkFor, fmt.Errorf("undecodable audit event %d: %w", e.ID, err))
				continue
			}
			events[i] = ev
			batch = append(batch, ev)
		}
		if len(batch) > 0 {
			_, err := client.Record(ctx, &auditv1.RecordRequest{Events: batch})
			switch {
			case err == nil:
			case status.Code(err) == codes.InvalidArgument && len(batch) > 1:
				for i, ev := range events {
					if ev == nil {
						continue
					}
					if _, err := client.Record(ctx, &auditv1.RecordRequest{Events: []*auditv1.AuditEvent{ev}}); err != nil {
						errs[i] = classify(err)
					}
				}
			default:
				for i, ev := range events {
					if ev != nil {
						errs[i] = classify(err)
					}
				}
			}
		}
		for _, err := range errs {
			if err != nil {
				return errs
			}
		}
		return nil
	}
}

// parkFor is how long an event the audit service refused as invalid waits
// before it is tried again.
const parkFor = time.Hour

func classify(err error) error {
	if status.Code(err) == codes.InvalidArgument {
		return outbox.RetryAfter(parkFor, err)
	}
	return err
}

// Actor is the caller of ctx as the audit trail records it.
func Actor(ctx context.Context) *auditv1.Actor {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return &auditv1.Actor{Type: "system"}
	}
	return &auditv1.Actor{Type: string(p.Kind), Id: p.ID, Email: p.Email, Name: p.Name}
}

// ClientIP is the first address of X-Forwarded-For, as the gateway passes
// it: the client address it resolved (the peer's, or what the proxies of
// TM_TRUSTED_PROXIES reported), never a client's own claim. A direct gRPC
// caller (an internal tool) sends what it likes; it is authenticated.
func ClientIP(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("x-forwarded-for") {
		if ip := strings.TrimSpace(strings.Split(v, ",")[0]); ip != "" {
			return limit(ip, 64)
		}
	}
	return ""
}

// UserAgent is the client's User-Agent as the gateway passed it.
func UserAgent(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("grpcgateway-user-agent"); len(v) > 0 {
		return limit(v[0], 512)
	}
	return ""
}

func limit(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
