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
//
// Details are what v2.7's dashboard renders (contract §8), so they follow
// v2.7's keys and types: "name" is a string naming the thing changed (the
// token's, route's, team's or key's name, the member's or invitee's
// e-mail); team_name, path, description and backend_url are strings;
// scopes and tags are lists of strings. Event adds the actor under v2.7's
// keys. Anything else (a before/after diff, ids, counts) goes under keys
// the dashboard does not read, e.g. "changes".
type Change struct {
	Action     string // create, update, delete, reveal, rotate, ...
	EntityType string // token, route, secret, team, membership, invitation, admin_key, ...
	EntityID   string
	Team       string
	Details    map[string]any
}

// Event builds the audit event of change c made by the caller of ctx.
func Event(ctx context.Context, c Change) (*auditv1.AuditEvent, error) {
	actor := Actor(ctx)
	d, err := dashboardDetails(c, actor)
	if err != nil {
		return nil, fmt.Errorf("audit details of %s %s: %w", c.Action, c.EntityType, err)
	}
	details, err := structpb.NewStruct(d)
	if err != nil {
		return nil, fmt.Errorf("audit details: %w", err)
	}
	ev := &auditv1.AuditEvent{
		EventId:    newEventID(),
		OccurredAt: timestamppb.New(time.Now()),
		Actor:      actor,
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

// dashboardDetails are c's details with what v2.7's dashboard needs to show
// the row: a string "name" (c.EntityID when the writer gave none) and the
// actor as <verb>_by (its id) and <verb>_by_email (its e-mail, or a label
// for actors that have none), <verb> as actorVerb(c.Action). It refuses
// details whose dashboard keys have a type the dashboard cannot render
// (an object where it shows text crashes the whole page).
func dashboardDetails(c Change, actor *auditv1.Actor) (map[string]any, error) {
	d := make(map[string]any, len(c.Details)+3)
	for k, v := range c.Details {
		d[k] = v
	}
	if _, ok := d["name"]; !ok {
		d["name"] = c.EntityID
	}
	for _, k := range []string{"name", "team_id", "team_name", "path", "description", "backend_url"} {
		if v, ok := d[k]; ok {
			if _, isString := v.(string); !isString {
				return nil, fmt.Errorf("%q must be a string (the dashboard renders it as text), not %T", k, v)
			}
		}
	}
	for _, k := range []string{"scopes", "tags"} {
		v, ok := d[k]
		if !ok {
			continue
		}
		list, isList := v.([]any)
		if !isList {
			return nil, fmt.Errorf("%q must be a list of strings, not %T", k, v)
		}
		for _, item := range list {
			if _, isString := item.(string); !isString {
				return nil, fmt.Errorf("%q must be a list of strings, not one holding %T", k, item)
			}
		}
	}
	verb := actorVerb(c.Action)
	for _, suffix := range []string{"_by", "_by_email"} {
		if _, ok := d[verb+suffix]; ok {
			return nil, fmt.Errorf("%q is the actor's, set from the caller", verb+suffix)
		}
	}
	d[verb+"_by"] = actorID(actor)
	d[verb+"_by_email"] = operatorLabel(actor)
	return d, nil
}

// actorVerb is the prefix of the details keys that name the actor of
// action. v2.7 had create, update and delete, and its dashboard shows the
// operator from created_by_email, updated_by_email or deleted_by_email, so
// every action maps to one of those: what brings something into being is
// "created", what ends something is "deleted", and what changes or uses
// something that stays (update, rotate, reveal, accept, import, ...) is
// "updated".
func actorVerb(action string) string {
	switch action {
	case "create":
		return "created"
	case "delete", "revoke":
		return "deleted"
	}
	return "updated"
}

// actorID is the actor as v2.7's created_by/updated_by/deleted_by name it:
// the Clerk user id, the admin key id or the service name.
func actorID(a *auditv1.Actor) string {
	if a.GetId() == "" {
		return a.GetType()
	}
	return a.GetId()
}

// operatorLabel is the actor as the dashboard's operator column shows it
// (the *_by_email keys): a person's e-mail ("unknown" when Clerk has none,
// as v2.7), an admin key's name marked as a key, a service's name marked
// as a service, "system" for work of no caller.
func operatorLabel(a *auditv1.Actor) string {
	switch a.GetType() {
	case string(auth.KindUser):
		if a.GetEmail() != "" {
			return a.GetEmail()
		}
		return "unknown"
	case string(auth.KindAdminKey):
		if a.GetName() != "" {
			return a.GetName() + " (admin key)"
		}
		return a.GetId() + " (admin key)"
	case string(auth.KindService):
		return a.GetId() + " (service)"
	}
	return "system"
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
