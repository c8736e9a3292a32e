package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/internal/protoconv"
)

// Server is the AuditService gRPC server: authentication, proto <-> domain
// and nothing else; the rules live in Service.
type Server struct {
	auditv1.UnimplementedAuditServiceServer
	svc *Service
}

// NewServer returns the gRPC server of svc.
func NewServer(svc *Service) *Server { return &Server{svc: svc} }

// Record appends a batch of events (internal: the writers' outbox relays).
func (s *Server) Record(ctx context.Context, req *auditv1.RecordRequest) (*auditv1.RecordResponse, error) {
	if err := auth.RequireService(ctx); err != nil {
		return nil, err
	}
	recorded, dups, err := s.svc.Record(ctx, req.GetEvents())
	if err != nil {
		return nil, err
	}
	return &auditv1.RecordResponse{Recorded: int32(recorded), Duplicates: int32(dups)}, nil
}

// ListAuditLogs is GET /api/dashboard/audit-logs.
func (s *Server) ListAuditLogs(ctx context.Context, req *auditv1.ListAuditLogsRequest) (*auditv1.ListAuditLogsResponse, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	f, err := filterOf(req.GetAction(), req.GetEntityType(), req.GetTeamId(), req.GetActor(), req.GetFrom(), req.GetTo())
	if err != nil {
		return nil, err
	}
	limit := DefaultLimit
	if req.Limit != nil {
		limit = int(req.GetLimit().GetValue())
	}
	page, err := s.svc.List(ctx, p, f, limit, int(req.GetOffset()))
	if err != nil {
		return nil, err
	}
	out := &auditv1.ListAuditLogsResponse{Total: page.Total, Limit: int32(page.Limit), Offset: int32(page.Offset),
		Data: make([]*auditv1.AuditLog, 0, len(page.Events))}
	for i := range page.Events {
		l, err := toProto(&page.Events[i])
		if err != nil {
			return nil, err
		}
		out.Data = append(out.Data, l)
	}
	return out, nil
}

// ExportAuditLogs is GET /api/dashboard/audit-logs/export (CSV chunks).
func (s *Server) ExportAuditLogs(req *auditv1.ExportAuditLogsRequest, stream auditv1.AuditService_ExportAuditLogsServer) error {
	ctx := stream.Context()
	p, err := auth.Caller(ctx)
	if err != nil {
		return err
	}
	f, err := filterOf(req.GetAction(), req.GetEntityType(), req.GetTeamId(), req.GetActor(), req.GetFrom(), req.GetTo())
	if err != nil {
		return err
	}
	return s.svc.Export(ctx, p, f, func(chunk []byte) error {
		return stream.Send(&auditv1.ExportAuditLogsResponse{Chunk: chunk})
	})
}

// VerifyChain is GET /api/dashboard/audit-logs/verify (global ADMIN).
func (s *Server) VerifyChain(ctx context.Context, _ *auditv1.VerifyChainRequest) (*auditv1.VerifyChainResponse, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.svc.Verify(ctx, p)
	if err != nil {
		return nil, err
	}
	return &auditv1.VerifyChainResponse{Ok: r.OK, EventsChecked: r.Checked, FirstBrokenId: r.FirstBrokenID, Reason: r.Reason}, nil
}

// GetStats is GET /api/stats.
func (s *Server) GetStats(ctx context.Context, _ *auditv1.GetStatsRequest) (*auditv1.GetStatsResponse, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	st, err := s.svc.Stats(ctx, p)
	if err != nil {
		return nil, err
	}
	out := &auditv1.GetStatsResponse{TotalTokens: st.TotalTokens, TotalRoutes: st.TotalRoutes,
		RecentActivity: make([]*auditv1.Activity, 0, len(st.Recent))}
	for _, e := range st.Recent {
		// A JSON-encoded string, as v2.7 sent it: its /stats page shows
		// details as text.
		d, err := CanonicalJSON(e.Details)
		if err != nil {
			return nil, fmt.Errorf("stored details: %w", err)
		}
		out.RecentActivity = append(out.RecentActivity, &auditv1.Activity{
			Action: e.Action, EntityType: e.EntityType, Details: string(d), CreatedAt: timestamppb.New(e.OccurredAt)})
	}
	return out, nil
}

// ListRecentEvents serves the dashboard overview (internal: usage service).
func (s *Server) ListRecentEvents(ctx context.Context, req *auditv1.ListRecentEventsRequest) (*auditv1.ListRecentEventsResponse, error) {
	if err := auth.RequireService(ctx); err != nil {
		return nil, err
	}
	events, err := s.svc.Recent(ctx, req.GetTeamIds(), req.GetAllTeams(), int(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	out := &auditv1.ListRecentEventsResponse{Events: make([]*auditv1.AuditLog, 0, len(events))}
	for i := range events {
		l, err := toProto(&events[i])
		if err != nil {
			return nil, err
		}
		out.Events = append(out.Events, l)
	}
	return out, nil
}

func filterOf(action, entityType, team, actor string, from, to *timestamppb.Timestamp) (Filter, error) {
	f := Filter{Action: action, EntityType: entityType, TeamID: team, Actor: actor}
	for _, b := range []struct {
		name string
		ts   *timestamppb.Timestamp
		dst  *time.Time
	}{{"from", from, &f.From}, {"to", to, &f.To}} {
		if b.ts == nil {
			continue
		}
		if err := b.ts.CheckValid(); err != nil {
			return f, errs.Invalid(b.name + " is not a valid time")
		}
		*b.dst = b.ts.AsTime()
	}
	return f, nil
}

func toProto(e *Event) (*auditv1.AuditLog, error) {
	d, err := detailsOf(e.Details)
	if err != nil {
		return nil, err
	}
	return &auditv1.AuditLog{
		Id:         e.ID,
		CreatedAt:  timestamppb.New(e.OccurredAt),
		Action:     e.Action,
		EntityType: e.EntityType,
		EntityId:   e.EntityID,
		Details:    d,
		TeamId:     protoconv.NonEmpty(e.TeamID),
		Actor:      &auditv1.Actor{Type: e.ActorType, Id: e.ActorID, Email: e.ActorEmail, Name: e.ActorName},
		RequestId:  protoconv.NonEmpty(e.RequestID),
		ClientIp:   protoconv.NonEmpty(e.ClientIP),
		UserAgent:  protoconv.NonEmpty(e.UserAgent),
	}, nil
}

// detailsOf turns stored jsonb into the JSON object the audit-log list and
// the dashboard overview return (v2.7's list sent a JSON-encoded string;
// its dashboard reads both, and an object is what the contract asks for).
func detailsOf(raw []byte) (*structpb.Struct, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("stored details: %w", err)
	}
	presentable(m)
	return structpb.NewStruct(m)
}

// shownAsText are the detail keys v2.7's dashboard renders as text.
var shownAsText = []string{"name", "team_id", "team_name", "created_by", "updated_by", "deleted_by",
	"created_by_email", "updated_by_email", "deleted_by_email"}

// presentable makes the keys the dashboard renders as text strings, in what
// a read returns; the stored event (and its hash chain) is untouched.
// Events are written in that shape (auditlog enforces it), but a trail
// kept from before it was (an update's {"name": {"from", "to"}}, which
// React cannot render) would blank the Dashboard and Audit Logs pages: a
// {"from", "to"} change reads as its "to", anything else as its JSON text.
func presentable(m map[string]any) {
	for _, k := range shownAsText {
		switch v := m[k].(type) {
		case nil, string:
		case map[string]any:
			if to, ok := v["to"].(string); ok {
				m[k] = to
				continue
			}
			b, _ := json.Marshal(v)
			m[k] = string(b)
		default:
			b, _ := json.Marshal(v)
			m[k] = string(b)
		}
	}
}
