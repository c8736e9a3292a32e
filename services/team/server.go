package team

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/timestamppb"

	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Server is the TeamService gRPC server.
type Server struct {
	teamv1.UnimplementedTeamServiceServer
	pool  *pgxpool.Pool
	store *Store
}

// NewServer returns the team service over pool.
func NewServer(pool *pgxpool.Pool) *Server {
	return &Server{pool: pool, store: NewStore(pool)}
}

// Resolver is the team service's own auth.Resolver: it reads its tables
// directly instead of calling itself over gRPC.
func (s *Server) Resolver() auth.Resolver { return localResolver{s.store} }

type localResolver struct{ store *Store }

func (r localResolver) ResolveUser(ctx context.Context, userID string) (*auth.Principal, error) {
	return r.store.UserPrincipal(ctx, userID)
}

func (r localResolver) ResolveAdminKey(ctx context.Context, keyHash string) (*auth.Principal, error) {
	return r.store.AdminKeyPrincipal(ctx, keyHash)
}

// GetPrincipal resolves a verified Clerk user id or an admin key hash. Only
// other services may ask: it is how they authenticate their callers.
func (s *Server) GetPrincipal(ctx context.Context, req *teamv1.GetPrincipalRequest) (*teamv1.GetPrincipalResponse, error) {
	if err := auth.RequireService(ctx); err != nil {
		return nil, err
	}
	var (
		p   *auth.Principal
		err error
	)
	switch c := req.GetCredential().(type) {
	case *teamv1.GetPrincipalRequest_UserId:
		if c.UserId == "" {
			return nil, errs.Invalid("user_id is empty")
		}
		p, err = s.store.UserPrincipal(ctx, c.UserId)
	case *teamv1.GetPrincipalRequest_AdminKeyHash:
		if len(c.AdminKeyHash) != 64 {
			return nil, errs.Invalid("admin_key_hash must be 64 hex characters")
		}
		p, err = s.store.AdminKeyPrincipal(ctx, c.AdminKeyHash)
	default:
		return nil, errs.Invalid("one of user_id or admin_key_hash is required")
	}
	if err != nil {
		return nil, err
	}
	return &teamv1.GetPrincipalResponse{Principal: PrincipalToProto(p)}, nil
}

// LookupTeams returns teams by id, for other services' dashboards.
func (s *Server) LookupTeams(ctx context.Context, req *teamv1.LookupTeamsRequest) (*teamv1.LookupTeamsResponse, error) {
	if err := auth.RequireService(ctx); err != nil {
		return nil, err
	}
	if len(req.GetTeamIds()) > 1000 {
		return nil, errs.Invalid("at most 1000 team ids per call")
	}
	teams, err := s.store.TeamsByID(ctx, req.GetTeamIds())
	if err != nil {
		return nil, err
	}
	out := &teamv1.LookupTeamsResponse{}
	for _, t := range teams {
		out.Teams = append(out.Teams, &teamv1.Team{
			Id: t.ID, Name: t.Name, Description: t.Description, Color: t.Color, Icon: t.Icon,
			CreatedBy: t.CreatedBy, CreatedAt: timestamppb.New(t.CreatedAt), UpdatedAt: timestamppb.New(t.UpdatedAt),
		})
	}
	return out, nil
}

// PrincipalToProto converts a principal for the wire.
func PrincipalToProto(p *auth.Principal) *teamv1.Principal {
	out := &teamv1.Principal{Id: p.ID, Email: p.Email, Name: p.Name, GlobalRole: string(p.GlobalRole), TeamRoles: map[string]string{}}
	switch p.Kind {
	case auth.KindUser:
		out.Kind = teamv1.PrincipalKind_PRINCIPAL_KIND_USER
	case auth.KindAdminKey:
		out.Kind = teamv1.PrincipalKind_PRINCIPAL_KIND_ADMIN_KEY
	}
	for t, r := range p.TeamRoles {
		out.TeamRoles[t] = string(r)
	}
	return out
}
