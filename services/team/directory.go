package team

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/invitation"
	"github.com/clerk/clerk-sdk-go/v2/user"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Directory is Clerk's Backend API as the team service uses it: people
// and invitations. Roles never come from here (PostgreSQL owns them); only
// identities, and the one-time import.
type Directory struct {
	users       *user.Client
	invitations *invitation.Client
}

// clerkPageSize is how many users one list call asks for. Clerk allows 500;
// 100 keeps each response small. Listing pages until the end fixes v2.7,
// which stopped after the first 100 users.
const clerkPageSize = 100

// clerkTimeout bounds one Clerk call.
const clerkTimeout = 10 * time.Second

// errNoClerk is returned by every Directory method when CLERK_SECRET_KEY is
// not set.
var errNoClerk = errs.Unavailable("Clerk is not configured (CLERK_SECRET_KEY)")

// NewDirectory returns a Directory on the Clerk Backend API at apiURL
// (CLERK_API_URL), or nil when secretKey is empty.
func NewDirectory(apiURL, secretKey string) *Directory {
	if secretKey == "" {
		return nil
	}
	cfg := func() *clerk.ClientConfig {
		return &clerk.ClientConfig{BackendConfig: clerk.BackendConfig{
			URL:        clerk.String(apiURL),
			Key:        clerk.String(secretKey),
			HTTPClient: &http.Client{Timeout: clerkTimeout},
		}}
	}
	return &Directory{users: user.NewClient(cfg()), invitations: invitation.NewClient(cfg())}
}

// clerkError turns a Clerk failure into a domain error with a client-safe
// message (Clerk's own text may name internals); notFound is the message
// for a 404.
func clerkError(err error, what, notFound string) error {
	var apiErr *clerk.APIErrorResponse
	if errors.As(err, &apiErr) {
		switch {
		case apiErr.HTTPStatusCode == http.StatusNotFound && notFound != "":
			return errs.Wrap(err, errs.ErrNotFound, notFound)
		case apiErr.HTTPStatusCode == http.StatusTooManyRequests:
			return errs.Wrap(err, errs.ErrUnavailable, "Clerk rate limit reached, try again shortly")
		}
	}
	return errs.Wrap(err, errs.ErrUnavailable, "Failed to "+what+": Clerk is unavailable")
}

// clerkCode returns the code of Clerk's first error, or "".
func clerkCode(err error) string {
	var apiErr *clerk.APIErrorResponse
	if errors.As(err, &apiErr) && len(apiErr.Errors) > 0 {
		return apiErr.Errors[0].Code
	}
	return ""
}

// AllUsers pages through every Clerk user.
func (d *Directory) AllUsers(ctx context.Context) ([]*clerk.User, error) {
	if d == nil {
		return nil, errNoClerk
	}
	var out []*clerk.User
	for offset := int64(0); ; {
		list, err := d.users.List(ctx, &user.ListParams{ListParams: clerk.ListParams{
			Limit: clerk.Int64(clerkPageSize), Offset: clerk.Int64(offset),
		}})
		if err != nil {
			return nil, clerkError(err, "fetch users", "")
		}
		out = append(out, list.Users...)
		offset += int64(len(list.Users))
		// Stop at the count, or on a short page (users deleted meanwhile).
		if len(list.Users) < clerkPageSize || offset >= list.TotalCount {
			return out, nil
		}
	}
}

// GetUser returns one user; NotFound when Clerk has no such user.
func (d *Directory) GetUser(ctx context.Context, id string) (*clerk.User, error) {
	if d == nil {
		return nil, errNoClerk
	}
	u, err := d.users.Get(ctx, id)
	if err != nil {
		return nil, clerkError(err, "fetch user", "User not found")
	}
	return u, nil
}

// UpdatePublicMetadata deep-merges patch into the user's publicMetadata.
func (d *Directory) UpdatePublicMetadata(ctx context.Context, id string, patch map[string]any) error {
	if d == nil {
		return errNoClerk
	}
	raw, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	msg := json.RawMessage(raw)
	if _, err := d.users.UpdateMetadata(ctx, id, &user.UpdateMetadataParams{PublicMetadata: &msg}); err != nil {
		return clerkError(err, "update user metadata", "User not found")
	}
	return nil
}

// CreateInvitation asks Clerk to invite email with publicMetadata.
func (d *Directory) CreateInvitation(ctx context.Context, email string, publicMetadata map[string]any, redirectURL string) (*clerk.Invitation, error) {
	if d == nil {
		return nil, errNoClerk
	}
	raw, err := json.Marshal(publicMetadata)
	if err != nil {
		return nil, err
	}
	msg := json.RawMessage(raw)
	params := &invitation.CreateParams{EmailAddress: email, PublicMetadata: &msg}
	if redirectURL != "" {
		params.RedirectURL = clerk.String(redirectURL)
	}
	inv, err := d.invitations.Create(ctx, params)
	if err != nil {
		switch clerkCode(err) {
		case "duplicate_record", "form_identifier_exists":
			return nil, errs.Wrap(err, errs.ErrAlreadyExists, "User with email "+email+" already exists or has a pending invitation")
		case "form_param_format_invalid":
			return nil, errs.Wrap(err, errs.ErrInvalidArgument, "Invalid e-mail address")
		}
		return nil, clerkError(err, "create invitation", "")
	}
	return inv, nil
}

// AllInvitations pages through every invitation, any status.
func (d *Directory) AllInvitations(ctx context.Context) ([]*clerk.Invitation, error) {
	if d == nil {
		return nil, errNoClerk
	}
	var out []*clerk.Invitation
	for offset := int64(0); ; {
		list, err := d.invitations.List(ctx, &invitation.ListParams{ListParams: clerk.ListParams{
			Limit: clerk.Int64(clerkPageSize), Offset: clerk.Int64(offset),
		}})
		if err != nil {
			return nil, clerkError(err, "list invitations", "")
		}
		out = append(out, list.Invitations...)
		offset += int64(len(list.Invitations))
		if len(list.Invitations) < clerkPageSize || offset >= list.TotalCount {
			return out, nil
		}
	}
}

// RevokeInvitation revokes a pending invitation.
func (d *Directory) RevokeInvitation(ctx context.Context, id string) error {
	if d == nil {
		return errNoClerk
	}
	if _, err := d.invitations.Revoke(ctx, id); err != nil {
		var apiErr *clerk.APIErrorResponse
		if errors.As(err, &apiErr) && apiErr.HTTPStatusCode == http.StatusBadRequest {
			return errs.Wrap(err, errs.ErrFailedPrecondition, "Only pending invitations can be revoked")
		}
		return clerkError(err, "revoke invitation", "Invitation not found")
	}
	return nil
}

// primaryEmail returns the user's primary e-mail address, else the first.
func primaryEmail(u *clerk.User) string {
	for _, e := range u.EmailAddresses {
		if e != nil && u.PrimaryEmailAddressID != nil && e.ID == *u.PrimaryEmailAddressID {
			return e.EmailAddress
		}
	}
	for _, e := range u.EmailAddresses {
		if e != nil {
			return e.EmailAddress
		}
	}
	return ""
}

// verifiedEmails returns the user's verified e-mail addresses: only those
// may claim an invitation's roles.
func verifiedEmails(u *clerk.User) []string {
	var out []string
	for _, e := range u.EmailAddresses {
		if e != nil && e.Verification != nil && e.Verification.Status == "verified" {
			out = append(out, e.EmailAddress)
		}
	}
	return out
}

// UsersByID returns the users with the given ids that exist.
func (d *Directory) UsersByID(ctx context.Context, ids []string) ([]*clerk.User, error) {
	if d == nil {
		return nil, errNoClerk
	}
	var out []*clerk.User
	for start := 0; start < len(ids); start += clerkPageSize {
		chunk := ids[start:min(start+clerkPageSize, len(ids))]
		list, err := d.users.List(ctx, &user.ListParams{
			ListParams: clerk.ListParams{Limit: clerk.Int64(clerkPageSize)},
			UserIDs:    chunk,
		})
		if err != nil {
			return nil, clerkError(err, "fetch users", "")
		}
		out = append(out, list.Users...)
	}
	return out, nil
}
