// Package teamclient lets the token, audit, usage and health services ask
// the team service who their callers are. Authentication (the signature of a
// session token, the checksum of an admin key) happens locally in each
// service; only the roles come from the team service, cached briefly by
// auth.CachingResolver.
package teamclient

import (
	"context"

	teamv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/team/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
)

// Resolver is an auth.Resolver backed by TeamService.GetPrincipal. The
// client must be dialled with the calling service's own credential.
type Resolver struct {
	Client teamv1.TeamServiceClient
}

var _ auth.Resolver = Resolver{}

// ResolveUser returns the roles of a verified Clerk user.
func (r Resolver) ResolveUser(ctx context.Context, userID string) (*auth.Principal, error) {
	return r.get(ctx, &teamv1.GetPrincipalRequest{Credential: &teamv1.GetPrincipalRequest_UserId{UserId: userID}})
}

// ResolveAdminKey returns the principal of a live admin key, or a NotFound
// status (which the authenticator turns into 401) for an unknown or revoked one.
func (r Resolver) ResolveAdminKey(ctx context.Context, keyHash string) (*auth.Principal, error) {
	return r.get(ctx, &teamv1.GetPrincipalRequest{Credential: &teamv1.GetPrincipalRequest_AdminKeyHash{AdminKeyHash: keyHash}})
}

func (r Resolver) get(ctx context.Context, req *teamv1.GetPrincipalRequest) (*auth.Principal, error) {
	resp, err := r.Client.GetPrincipal(ctx, req)
	if err != nil {
		return nil, err
	}
	return FromProto(resp.GetPrincipal()), nil
}

// FromProto converts a principal from the wire.
func FromProto(p *teamv1.Principal) *auth.Principal {
	out := &auth.Principal{
		ID:         p.GetId(),
		Email:      p.GetEmail(),
		Name:       p.GetName(),
		GlobalRole: auth.Role(p.GetGlobalRole()),
		TeamRoles:  make(map[string]auth.Role, len(p.GetTeamRoles())),
	}
	switch p.GetKind() {
	case teamv1.PrincipalKind_PRINCIPAL_KIND_ADMIN_KEY:
		out.Kind = auth.KindAdminKey
	default:
		out.Kind = auth.KindUser
	}
	for t, r := range p.GetTeamRoles() {
		out.TeamRoles[t] = auth.Role(r)
	}
	return out
}
