package team

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/authz"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/internal/protoconv"
)

// Server is the TeamService gRPC server: transport only (proto ↔ domain);
// the rules live in Service.
type Server struct {
	teamv1.UnimplementedTeamServiceServer
	svc *Service
}

// NewServer returns the team service over pool.
func NewServer(pool *pgxpool.Pool, o Options) *Server {
	return &Server{svc: NewService(pool, o)}
}

// Service returns the use cases behind the server.
func (s *Server) Service() *Service { return s.svc }

// Resolver is the team service's own auth.Resolver: it reads its tables
// directly instead of calling itself over gRPC.
func (s *Server) Resolver() auth.Resolver { return localResolver{s.svc} }

type localResolver struct{ svc *Service }

func (r localResolver) ResolveUser(ctx context.Context, userID string) (*auth.Principal, error) {
	return r.svc.ResolveUser(ctx, userID)
}

func (r localResolver) ResolveAdminKey(ctx context.Context, keyHash string) (*auth.Principal, error) {
	return r.svc.ResolveAdminKey(ctx, keyHash)
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
		p, err = s.svc.ResolveUser(ctx, c.UserId)
	case *teamv1.GetPrincipalRequest_AdminKeyHash:
		if len(c.AdminKeyHash) != 64 {
			return nil, errs.Invalid("admin_key_hash must be 64 hex characters")
		}
		p, err = s.svc.ResolveAdminKey(ctx, c.AdminKeyHash)
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
	teams, err := s.svc.TeamsByID(ctx, req.GetTeamIds())
	if err != nil {
		return nil, err
	}
	out := &teamv1.LookupTeamsResponse{}
	for _, t := range teams {
		out.Teams = append(out.Teams, teamToProto(TeamWithCount{Team: t}))
	}
	return out, nil
}

// CountTeams returns how many teams exist, for the dashboard of a global
// admin. Only services may ask: they have checked that their caller may see
// every team, which is why ListTeams (scoped to the caller) is not for them.
func (s *Server) CountTeams(ctx context.Context, _ *teamv1.CountTeamsRequest) (*teamv1.CountTeamsResponse, error) {
	if err := auth.RequireService(ctx); err != nil {
		return nil, err
	}
	n, err := s.svc.CountTeams(ctx)
	if err != nil {
		return nil, err
	}
	return &teamv1.CountTeamsResponse{Total: n}, nil
}

func teamToProto(t TeamWithCount) *teamv1.Team {
	return &teamv1.Team{
		Id: t.ID, Name: t.Name, Description: t.Description, Color: t.Color, Icon: t.Icon,
		CreatedBy: t.CreatedBy, CreatedAt: timestamppb.New(t.CreatedAt), UpdatedAt: timestamppb.New(t.UpdatedAt),
		MemberCount: t.MemberCount,
	}
}

// ListTeams implements TeamService.
func (s *Server) ListTeams(ctx context.Context, _ *teamv1.ListTeamsRequest) (*teamv1.ListTeamsResponse, error) {
	teams, err := s.svc.ListTeams(ctx)
	if err != nil {
		return nil, err
	}
	out := &teamv1.ListTeamsResponse{Teams: make([]*teamv1.Team, 0, len(teams))}
	for _, t := range teams {
		out.Teams = append(out.Teams, teamToProto(t))
	}
	return out, nil
}

// CreateTeam implements TeamService.
func (s *Server) CreateTeam(ctx context.Context, req *teamv1.CreateTeamRequest) (*teamv1.CreateTeamResponse, error) {
	t, err := s.svc.CreateTeam(ctx, NewTeam{ID: req.GetId(), Name: req.GetName(),
		Description: protoconv.StringPtr(req.GetDescription()), Color: protoconv.StringPtr(req.GetColor()), Icon: protoconv.StringPtr(req.GetIcon())})
	if err != nil {
		return nil, err
	}
	return &teamv1.CreateTeamResponse{Team: teamToProto(t)}, nil
}

// GetTeam implements TeamService.
func (s *Server) GetTeam(ctx context.Context, req *teamv1.GetTeamRequest) (*teamv1.GetTeamResponse, error) {
	t, err := s.svc.GetTeam(ctx, req.GetTeamId())
	if err != nil {
		return nil, err
	}
	return &teamv1.GetTeamResponse{Team: teamToProto(t)}, nil
}

// UpdateTeam implements TeamService.
func (s *Server) UpdateTeam(ctx context.Context, req *teamv1.UpdateTeamRequest) (*teamv1.UpdateTeamResponse, error) {
	t, err := s.svc.UpdateTeam(ctx, req.GetTeamId(), TeamPatch{Name: protoconv.StringPtr(req.GetName()),
		Description: protoconv.StringPtr(req.GetDescription()), Color: protoconv.StringPtr(req.GetColor()), Icon: protoconv.StringPtr(req.GetIcon())})
	if err != nil {
		return nil, err
	}
	return &teamv1.UpdateTeamResponse{Team: teamToProto(t)}, nil
}

// DeleteTeam implements TeamService.
func (s *Server) DeleteTeam(ctx context.Context, req *teamv1.DeleteTeamRequest) (*teamv1.DeleteTeamResponse, error) {
	if err := s.svc.DeleteTeam(ctx, req.GetTeamId()); err != nil {
		return nil, err
	}
	return &teamv1.DeleteTeamResponse{Success: true, TeamId: req.GetTeamId()}, nil
}

// ListTeamMembers implements TeamService.
func (s *Server) ListTeamMembers(ctx context.Context, req *teamv1.ListTeamMembersRequest) (*teamv1.ListTeamMembersResponse, error) {
	members, err := s.svc.ListTeamMembers(ctx, req.GetTeamId())
	if err != nil {
		return nil, err
	}
	out := &teamv1.ListTeamMembersResponse{Members: make([]*teamv1.TeamMember, 0, len(members))}
	for _, m := range members {
		out.Members = append(out.Members, &teamv1.TeamMember{
			Id: m.UserID, Email: protoconv.String(m.Email), FirstName: protoconv.String(m.FirstName), LastName: protoconv.String(m.LastName),
			ImageUrl: protoconv.String(m.ImageURL), Role: string(m.Role), LastSignInAt: protoconv.Int64(m.LastSignInMs),
		})
	}
	return out, nil
}

// ListUsers implements TeamService.
func (s *Server) ListUsers(ctx context.Context, _ *teamv1.ListUsersRequest) (*teamv1.ListUsersResponse, error) {
	users, err := s.svc.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	out := &teamv1.ListUsersResponse{Users: make([]*teamv1.User, 0, len(users))}
	for _, u := range users {
		meta, err := structpb.NewStruct(u.PublicMetadata)
		if err != nil {
			meta = &structpb.Struct{Fields: map[string]*structpb.Value{}} // non-JSON values cannot come from Clerk
		}
		out.Users = append(out.Users, &teamv1.User{
			Id: u.ID, Email: protoconv.String(u.Email), FirstName: protoconv.String(u.FirstName), LastName: protoconv.String(u.LastName),
			ImageUrl: protoconv.String(u.ImageURL), PublicMetadata: meta, CreatedAt: u.CreatedMs, LastSignInAt: protoconv.Int64(u.LastSignInMs),
		})
	}
	return out, nil
}

// SetUserTeamRole implements TeamService.
func (s *Server) SetUserTeamRole(ctx context.Context, req *teamv1.SetUserTeamRoleRequest) (*teamv1.SetUserTeamRoleResponse, error) {
	if _, err := s.svc.SetRole(ctx, req.GetUserId(), req.GetTeamId(), req.GetRole()); err != nil {
		return nil, err
	}
	return &teamv1.SetUserTeamRoleResponse{Success: true, UserId: req.GetUserId(), TeamId: req.GetTeamId(), Role: req.GetRole()}, nil
}

// AddUserToTeam implements TeamService.
func (s *Server) AddUserToTeam(ctx context.Context, req *teamv1.AddUserToTeamRequest) (*teamv1.AddUserToTeamResponse, error) {
	if _, err := s.svc.SetRole(ctx, req.GetUserId(), req.GetTeamId(), req.GetRole()); err != nil {
		return nil, err
	}
	return &teamv1.AddUserToTeamResponse{Success: true, UserId: req.GetUserId(), TeamId: req.GetTeamId(), Role: req.GetRole()}, nil
}

// RemoveUserFromTeam implements TeamService.
func (s *Server) RemoveUserFromTeam(ctx context.Context, req *teamv1.RemoveUserFromTeamRequest) (*teamv1.RemoveUserFromTeamResponse, error) {
	if err := s.svc.RemoveMember(ctx, req.GetUserId(), req.GetTeamId()); err != nil {
		return nil, err
	}
	return &teamv1.RemoveUserFromTeamResponse{Success: true, UserId: req.GetUserId(), TeamId: req.GetTeamId()}, nil
}

// CreateInvitation implements TeamService.
func (s *Server) CreateInvitation(ctx context.Context, req *teamv1.CreateInvitationRequest) (*teamv1.CreateInvitationResponse, error) {
	inv, err := s.svc.CreateInvitation(ctx, req.GetEmail(), req.GetTeamRoles())
	if err != nil {
		return nil, err
	}
	return &teamv1.CreateInvitationResponse{Success: true, InvitationId: inv.ID, Email: inv.Email, TeamRoles: inv.TeamRoles, Status: inv.Status}, nil
}

// ListInvitations implements TeamService.
func (s *Server) ListInvitations(ctx context.Context, _ *teamv1.ListInvitationsRequest) (*teamv1.ListInvitationsResponse, error) {
	invs, err := s.svc.ListInvitations(ctx)
	if err != nil {
		return nil, err
	}
	out := &teamv1.ListInvitationsResponse{Invitations: make([]*teamv1.Invitation, 0, len(invs))}
	for _, v := range invs {
		out.Invitations = append(out.Invitations, &teamv1.Invitation{Id: v.ID, Email: v.Email, Status: v.Status,
			TeamRoles: v.TeamRoles, InvitedBy: v.InvitedBy, InvitedAt: v.InvitedAt, CreatedAt: v.CreatedAt})
	}
	return out, nil
}

// RevokeInvitation implements TeamService.
func (s *Server) RevokeInvitation(ctx context.Context, req *teamv1.RevokeInvitationRequest) (*teamv1.RevokeInvitationResponse, error) {
	if err := s.svc.RevokeInvitation(ctx, req.GetInvitationId()); err != nil {
		return nil, err
	}
	return &teamv1.RevokeInvitationResponse{Success: true, InvitationId: req.GetInvitationId()}, nil
}

func adminKeyToProto(k AdminKey) *teamv1.AdminKey {
	out := &teamv1.AdminKey{Id: k.ID, Name: k.Name, Prefix: k.Prefix, GlobalRole: string(k.GlobalRole),
		TeamRoles: map[string]string{}, CreatedAt: timestamppb.New(k.CreatedAt), CreatedBy: k.CreatedBy}
	for t, r := range k.TeamRoles {
		out.TeamRoles[t] = string(r)
	}
	if k.LastUsedAt != nil {
		out.LastUsedAt = protoconv.Time(k.LastUsedAt)
	}
	if k.RevokedAt != nil {
		out.RevokedAt = protoconv.Time(k.RevokedAt)
	}
	return out
}

// CreateAdminKey implements TeamService.
func (s *Server) CreateAdminKey(ctx context.Context, req *teamv1.CreateAdminKeyRequest) (*teamv1.CreateAdminKeyResponse, error) {
	k, key, err := s.svc.CreateAdminKey(ctx, req.GetName(), req.GetGlobalRole(), req.GetTeamRoles())
	if err != nil {
		return nil, err
	}
	return &teamv1.CreateAdminKeyResponse{AdminKey: adminKeyToProto(k), Key: key}, nil
}

// ListAdminKeys implements TeamService.
func (s *Server) ListAdminKeys(ctx context.Context, _ *teamv1.ListAdminKeysRequest) (*teamv1.ListAdminKeysResponse, error) {
	keys, err := s.svc.ListAdminKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := &teamv1.ListAdminKeysResponse{AdminKeys: make([]*teamv1.AdminKey, 0, len(keys))}
	for _, k := range keys {
		out.AdminKeys = append(out.AdminKeys, adminKeyToProto(k))
	}
	return out, nil
}

// RevokeAdminKey implements TeamService.
func (s *Server) RevokeAdminKey(ctx context.Context, req *teamv1.RevokeAdminKeyRequest) (*teamv1.RevokeAdminKeyResponse, error) {
	if err := s.svc.RevokeAdminKey(ctx, req.GetId()); err != nil {
		return nil, err
	}
	return &teamv1.RevokeAdminKeyResponse{Success: true, Id: req.GetId()}, nil
}

// ImportClerkRoles implements TeamService: a global ADMIN or another
// service may run the one-time import.
func (s *Server) ImportClerkRoles(ctx context.Context, req *teamv1.ImportClerkRolesRequest) (*teamv1.ImportClerkRolesResponse, error) {
	p, err := auth.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if p.Kind != auth.KindService {
		if err := authz.Authorize(p, authz.RolesImport, authz.Resource{}); err != nil {
			return nil, err
		}
	}
	res, err := ImportClerkRoles(ctx, s.svc.pool, s.svc.Directory, req.GetDryRun())
	if err != nil {
		return nil, err
	}
	return &teamv1.ImportClerkRolesResponse{UsersSeen: res.UsersSeen, MembershipsImported: res.MembershipsImported,
		GlobalAdminsImported: res.GlobalAdminsImported, Skipped: res.Skipped}, nil
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

// SetUserGlobalRole implements TeamService.
func (s *Server) SetUserGlobalRole(ctx context.Context, req *teamv1.SetUserGlobalRoleRequest) (*teamv1.SetUserGlobalRoleResponse, error) {
	changed, err := s.svc.SetGlobalRole(ctx, req.GetUserId(), req.GetRole())
	if err != nil {
		return nil, err
	}
	return &teamv1.SetUserGlobalRoleResponse{Success: true, UserId: req.GetUserId(), Role: req.GetRole(), Changed: changed}, nil
}

// RemoveUserGlobalRole implements TeamService.
func (s *Server) RemoveUserGlobalRole(ctx context.Context, req *teamv1.RemoveUserGlobalRoleRequest) (*teamv1.RemoveUserGlobalRoleResponse, error) {
	if err := s.svc.RemoveGlobalRole(ctx, req.GetUserId()); err != nil {
		return nil, err
	}
	return &teamv1.RemoveUserGlobalRoleResponse{Success: true, UserId: req.GetUserId()}, nil
}
