// Package token is the token service: API tokens, routes and route backend
// credentials, and the sync of all three to Cloudflare Workers KV.
//
// Layout: server.go (thin RPC handlers: principal, proto<->domain), tokens.go
// and routes.go (use cases with their SQL), validate.go (input rules),
// format.go (token format), kvstate.go (what KV should hold), kvsync/ (the
// relay handler, the 429 gate and the reconciler), keyring/ (encryption).
package token

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/internal/protoconv"
	"github.com/tokenmanager/tokenmanager/services/token/kvsync"
)

// Server is the TokenService gRPC server.
type Server struct {
	tokenv1.UnimplementedTokenServiceServer
	svc  *Service
	sync *kvsync.Syncer // nil when KV sync is disabled
}

// NewServer returns a server over svc; sync may be nil.
func NewServer(svc *Service, sync *kvsync.Syncer) *Server { return &Server{svc: svc, sync: sync} }

func (s *Server) tokenProto(t *Token) *tokenv1.Token {
	return s.tokenProtos([]*Token{t})[0]
}

// tokenProtos converts tokens in bulk: the messages, wrappers and
// timestamps of all tokens come from a few backing arrays instead of ten
// allocations per token (GET /api/tokens lists every token of the caller).
func (s *Server) tokenProtos(list []*Token) []*tokenv1.Token {
	n := len(list)
	msgs := make([]tokenv1.Token, n)
	strs := make([]wrapperspb.StringValue, 4*n)
	created := make([]timestamppb.Timestamp, n)
	out := make([]*tokenv1.Token, n)
	now := s.svc.now()
	for i, t := range list {
		m, w := &msgs[i], strs[4*i:4*i+4]
		w[0].Value, w[1].Value, w[2].Value, w[3].Value = t.TeamID, t.CreatedBy, t.Description, t.Preview
		created[i].Seconds, created[i].Nanos = t.CreatedAt.Unix(), int32(t.CreatedAt.Nanosecond())
		m.Id, m.Name, m.Scopes, m.Status = t.ID, t.Name, t.Scopes, t.Status(now)
		m.TeamId, m.CreatedBy, m.Description, m.TokenPreview = &w[0], &w[1], &w[2], &w[3]
		m.CreatedAt, m.ExpiresAt, m.LastUsed, m.RotationGraceEndsAt = &created[i], protoconv.Time(t.ExpiresAt), protoconv.Time(t.LastUsed), protoconv.Time(t.GraceEndsAt)
		out[i] = m
	}
	return out
}

// strings converts a JSON array of strings (a ListValue) or fails.
func stringList(field string, l *structpb.ListValue) ([]string, error) {
	out := make([]string, 0, len(l.GetValues()))
	for _, v := range l.GetValues() {
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return nil, errs.Invalid(field + " must be an array of strings")
		}
		out = append(out, s.StringValue)
	}
	return out, nil
}

func optString(w *wrapperspb.StringValue) *string {
	if w == nil {
		return nil
	}
	v := w.GetValue()
	return &v
}

// CreateToken implements TokenService.
func (s *Server) CreateToken(ctx context.Context, req *tokenv1.CreateTokenRequest) (*tokenv1.CreateTokenResponse, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	in := NewTokenInput{Name: req.GetName(), TeamID: req.GetTeamId(), Description: req.GetDescription().GetValue(), Scopes: req.GetScopes()}
	if req.ExpiresDays != nil {
		d := req.GetExpiresDays().GetValue()
		in.ExpiresDays = &d
	}
	c, err := s.svc.CreateToken(ctx, p, in)
	if err != nil {
		return nil, err
	}
	return &tokenv1.CreateTokenResponse{Id: c.ID, Token: c.Plaintext, Name: c.Name, TeamId: c.TeamID, Scopes: c.Scopes, ExpiresAt: protoconv.Time(c.ExpiresAt)}, nil
}

// ListTokens implements TokenService.
func (s *Server) ListTokens(ctx context.Context, _ *tokenv1.ListTokensRequest) (*tokenv1.ListTokensResponse, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	list, err := s.svc.ListTokens(ctx, p)
	if err != nil {
		return nil, err
	}
	return &tokenv1.ListTokensResponse{Tokens: s.tokenProtos(list)}, nil
}

// UpdateToken implements TokenService.
func (s *Server) UpdateToken(ctx context.Context, req *tokenv1.UpdateTokenRequest) (*tokenv1.UpdateTokenResponse, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	patch := TokenPatch{Name: optString(req.Name), Description: optString(req.Description)}
	if req.Scopes != nil {
		if patch.Scopes, err = stringList("scopes", req.GetScopes()); err != nil {
			return nil, err
		}
		patch.ScopesSet = true
	}
	t, err := s.svc.UpdateToken(ctx, p, req.GetId(), patch)
	if err != nil {
		return nil, err
	}
	return &tokenv1.UpdateTokenResponse{Token: s.tokenProto(t)}, nil
}

// DeleteToken implements TokenService.
func (s *Server) DeleteToken(ctx context.Context, req *tokenv1.DeleteTokenRequest) (*tokenv1.DeleteTokenResponse, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.svc.DeleteToken(ctx, p, req.GetId()); err != nil {
		return nil, err
	}
	return &tokenv1.DeleteTokenResponse{Status: "deleted"}, nil
}

// RevealToken implements TokenService.
func (s *Server) RevealToken(ctx context.Context, req *tokenv1.RevealTokenRequest) (*tokenv1.RevealTokenResponse, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	plain, err := s.svc.RevealToken(ctx, p, req.GetId())
	if err != nil {
		return nil, err
	}
	return &tokenv1.RevealTokenResponse{Token: plain}, nil
}

// RotateToken implements TokenService.
func (s *Server) RotateToken(ctx context.Context, req *tokenv1.RotateTokenRequest) (*tokenv1.RotateTokenResponse, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	var grace *int32
	if req.GracePeriodSeconds != nil {
		g := req.GetGracePeriodSeconds().GetValue()
		grace = &g
	}
	c, err := s.svc.RotateToken(ctx, p, req.GetId(), grace)
	if err != nil {
		return nil, err
	}
	return &tokenv1.RotateTokenResponse{Id: c.ID, Token: c.Plaintext, Name: c.Name, TeamId: c.TeamID, Scopes: c.Scopes,
		PreviousTokenExpiresAt: timestamppb.New(c.PreviousValidUntil)}, nil
}

func routeProto(r *Route) *tokenv1.Route {
	out := &tokenv1.Route{Id: r.ID, Name: wrapperspb.String(r.Name), Path: r.Path, BackendUrl: r.BackendURL,
		Description: wrapperspb.String(r.Description), Tags: r.Tags, BackendAuthType: wrapperspb.String(r.AuthType),
		CreatedAt: timestamppb.New(r.CreatedAt), UpdatedAt: timestamppb.New(r.UpdatedAt)}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if r.AuthConfig != nil {
		out.BackendAuthConfig, _ = structpb.NewStruct(r.AuthConfig)
	}
	return out
}

// CreateRoute implements TokenService.
func (s *Server) CreateRoute(ctx context.Context, req *tokenv1.CreateRouteRequest) (*tokenv1.CreateRouteResponse, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	in := RouteInput{Name: req.GetName(), Path: req.GetPath(), BackendURL: req.GetBackendUrl(), Description: req.GetDescription().GetValue(),
		Tags: req.GetTags(), AuthType: req.GetBackendAuthType().GetValue(), Secrets: req.GetBackendAuthSecrets()}
	if req.BackendAuthConfig != nil {
		in.AuthConfig = req.GetBackendAuthConfig().AsMap()
	}
	r, err := s.svc.CreateRoute(ctx, p, in)
	if err != nil {
		return nil, err
	}
	return &tokenv1.CreateRouteResponse{Route: routeProto(r)}, nil
}

// ListRoutes implements TokenService.
func (s *Server) ListRoutes(ctx context.Context, _ *tokenv1.ListRoutesRequest) (*tokenv1.ListRoutesResponse, error) {
	if _, err := auth.Caller(ctx); err != nil {
		return nil, err
	}
	list, err := s.svc.ListRoutes(ctx)
	if err != nil {
		return nil, err
	}
	out := &tokenv1.ListRoutesResponse{Routes: make([]*tokenv1.Route, len(list))}
	for i, r := range list {
		out.Routes[i] = routeProto(r)
	}
	return out, nil
}

// UpdateRoute implements TokenService.
func (s *Server) UpdateRoute(ctx context.Context, req *tokenv1.UpdateRouteRequest) (*tokenv1.UpdateRouteResponse, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	patch := RoutePatch{Name: optString(req.Name), BackendURL: optString(req.BackendUrl), Description: optString(req.Description),
		AuthType: optString(req.BackendAuthType), Secrets: req.GetBackendAuthSecrets()}
	if req.Tags != nil {
		if patch.Tags, err = stringList("tags", req.GetTags()); err != nil {
			return nil, err
		}
		patch.TagsSet = true
	}
	if req.BackendAuthConfig != nil {
		// v2.7: {} clears the config; null (absent) leaves it.
		patch.AuthConfig, patch.AuthConfigSet = req.GetBackendAuthConfig().AsMap(), true
	}
	r, err := s.svc.UpdateRoute(ctx, p, req.GetId(), patch)
	if err != nil {
		return nil, err
	}
	return &tokenv1.UpdateRouteResponse{Route: routeProto(r)}, nil
}

// DeleteRoute implements TokenService.
func (s *Server) DeleteRoute(ctx context.Context, req *tokenv1.DeleteRouteRequest) (*tokenv1.DeleteRouteResponse, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.svc.DeleteRoute(ctx, p, req.GetId()); err != nil {
		return nil, err
	}
	return &tokenv1.DeleteRouteResponse{Status: "deleted"}, nil
}

// ListRouteTags implements TokenService.
func (s *Server) ListRouteTags(ctx context.Context, _ *tokenv1.ListRouteTagsRequest) (*tokenv1.ListRouteTagsResponse, error) {
	if _, err := auth.Caller(ctx); err != nil {
		return nil, err
	}
	tags, err := s.svc.ListRouteTags(ctx)
	if err != nil {
		return nil, err
	}
	return &tokenv1.ListRouteTagsResponse{Tags: tags}, nil
}

func statusProto(s string) tokenv1.TokenStatus {
	switch s {
	case "active":
		return tokenv1.TokenStatus_TOKEN_STATUS_ACTIVE
	case "expired":
		return tokenv1.TokenStatus_TOKEN_STATUS_EXPIRED
	case "revoked":
		return tokenv1.TokenStatus_TOKEN_STATUS_REVOKED
	}
	return tokenv1.TokenStatus_TOKEN_STATUS_UNSPECIFIED
}

// ResolveToken implements TokenService (internal).
func (s *Server) ResolveToken(ctx context.Context, req *tokenv1.ResolveTokenRequest) (*tokenv1.ResolveTokenResponse, error) {
	if err := auth.RequireService(ctx); err != nil {
		return nil, err
	}
	r, err := s.svc.ResolveToken(ctx, req.GetTokenHash())
	if err != nil {
		return nil, err
	}
	return &tokenv1.ResolveTokenResponse{TokenId: r.Token.ID, Name: r.Token.Name, TeamId: r.Token.TeamID,
		Status: statusProto(r.Status), PreviousSecret: r.Previous}, nil
}

// RecordTokenUse implements TokenService (internal).
func (s *Server) RecordTokenUse(ctx context.Context, req *tokenv1.RecordTokenUseRequest) (*tokenv1.RecordTokenUseResponse, error) {
	if err := auth.RequireService(ctx); err != nil {
		return nil, err
	}
	uses := make(map[string]time.Time, len(req.GetUses()))
	for _, u := range req.GetUses() {
		if u.GetUsedAt() == nil {
			return nil, errs.Invalid("used_at is required")
		}
		t := u.GetUsedAt().AsTime()
		if old, ok := uses[u.GetTokenHash()]; !ok || t.After(old) {
			uses[u.GetTokenHash()] = t
		}
	}
	n, err := s.svc.RecordTokenUse(ctx, uses)
	if err != nil {
		return nil, err
	}
	return &tokenv1.RecordTokenUseResponse{Updated: int32(n)}, nil
}

// LookupTokens implements TokenService (internal).
func (s *Server) LookupTokens(ctx context.Context, req *tokenv1.LookupTokensRequest) (*tokenv1.LookupTokensResponse, error) {
	if err := auth.RequireService(ctx); err != nil {
		return nil, err
	}
	refs, err := s.svc.LookupTokens(ctx, req.GetIds(), req.GetTokenHashes())
	if err != nil {
		return nil, err
	}
	out := &tokenv1.LookupTokensResponse{}
	for _, r := range refs {
		out.Tokens = append(out.Tokens, &tokenv1.TokenRef{Id: r.Token.ID, Name: r.Token.Name, TeamId: r.Token.TeamID,
			TokenHashes: r.Hashes, Status: statusProto(r.Token.Status(s.svc.now()))})
	}
	return out, nil
}

// GetTokenStats implements TokenService (internal).
func (s *Server) GetTokenStats(ctx context.Context, req *tokenv1.GetTokenStatsRequest) (*tokenv1.GetTokenStatsResponse, error) {
	if err := auth.RequireService(ctx); err != nil {
		return nil, err
	}
	st, err := s.svc.TokenStats(ctx, StatsQuery{Teams: req.GetTeamIds(), All: req.GetAllTeams(), TrendDays: int(req.GetTrendDays()),
		ExpiringDays: int(req.GetExpiringWithinDays()), ExpiringLimit: int(req.GetExpiringLimit())})
	if err != nil {
		return nil, err
	}
	out := &tokenv1.GetTokenStatsResponse{TotalTokens: st.Total, TotalRoutes: st.Routes}
	for _, c := range st.ByTeam {
		out.TokensByTeam = append(out.TokensByTeam, &tokenv1.TeamTokenCount{TeamId: c.Team, Count: c.Count})
	}
	for _, d := range st.Trend {
		out.TokenTrend = append(out.TokenTrend, &tokenv1.DayCount{Date: d.Date, Count: d.Count})
	}
	for _, e := range st.Expiring {
		out.ExpiringSoon = append(out.ExpiringSoon, &tokenv1.ExpiringToken{Id: e.ID, Name: e.Name, TeamId: e.TeamID, ExpiresAt: protoconv.Time(e.ExpiresAt)})
	}
	return out, nil
}

// RetireTeam implements TokenService (internal: the team service, before it
// deletes a team).
func (s *Server) RetireTeam(ctx context.Context, req *tokenv1.RetireTeamRequest) (*tokenv1.RetireTeamResponse, error) {
	if err := auth.RequireService(ctx); err != nil {
		return nil, err
	}
	if err := s.svc.RetireTeam(ctx, req.GetTeamId()); err != nil {
		return nil, err
	}
	return &tokenv1.RetireTeamResponse{}, nil
}

// GetSyncStatus implements TokenService (internal).
func (s *Server) GetSyncStatus(ctx context.Context, _ *tokenv1.GetSyncStatusRequest) (*tokenv1.GetSyncStatusResponse, error) {
	if err := auth.RequireService(ctx); err != nil {
		return nil, err
	}
	if s.sync == nil {
		return &tokenv1.GetSyncStatusResponse{KvConfigured: false, LastError: "Cloudflare KV is not configured: sync disabled"}, nil
	}
	st, err := s.sync.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := &tokenv1.GetSyncStatusResponse{KvConfigured: true, OutboxDepth: int64(st.Depth), OldestPendingAge: durationpb.New(st.OldestPending),
		DeliveryFailures: st.Failures, LastReconcileDrift: st.LastDrift, LastError: st.LastError}
	if !st.LastReconcileAt.IsZero() {
		out.LastReconcileAt = timestamppb.New(st.LastReconcileAt)
	}
	if st.ReconcileInterval > 0 {
		out.ReconcileInterval = durationpb.New(st.ReconcileInterval)
	}
	return out, nil
}
