package auth

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

const msgMissing = "Not authenticated: missing bearer credential"

var (
	errMissing     = errs.Unauthenticated(msgMissing)
	errBadScheme   = errs.Unauthenticated("Not authenticated: expected a bearer credential")
	errAmbiguous   = errs.Unauthenticated("Not authenticated: more than one credential")
	errInvalidKey  = errs.Unauthenticated("invalid admin key")
	errUnknownUser = errs.Unauthenticated("Not authenticated: unknown user")
	errNoVerifier  = errs.Wrap(errors.New("no session verifier configured"), errs.ErrUnauthenticated, "invalid session token")
	errNoResolver  = errors.New("auth: Authenticator has no Resolver")
)

// Verifier verifies a session token; ClerkVerifier is the real one.
type Verifier interface {
	Verify(ctx context.Context, token string) (Identity, error)
}

// Authenticator authenticates incoming RPCs. Every method needs a
// credential except those listed in Public.
type Authenticator struct {
	// Verifier checks Clerk session tokens. Nil rejects them all.
	Verifier Verifier
	// Resolver turns users and admin keys into principals.
	Resolver Resolver
	// ServiceSecret (TM_SERVICE_SECRET) verifies service credentials.
	// Empty rejects them all.
	ServiceSecret []byte
	// Public holds the full method names ("/pkg.Service/Method") that
	// anyone may call; they run without a principal.
	Public map[string]bool
	// Log receives authentication failures (at debug: they are the
	// caller's problem) and internal errors, logged with the RPC's context.
	Log *slog.Logger
	// Clock replaces time.Now for service credential ages, for tests.
	Clock func() time.Time
}

// Authenticate returns the principal whose credential ctx's incoming
// metadata carries. Errors are domain errors (see package errs).
func (a *Authenticator) Authenticate(ctx context.Context) (*Principal, error) {
	cred, err := bearer(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case strings.HasPrefix(cred, adminKeyPrefix):
		return a.adminKey(ctx, cred)
	case strings.HasPrefix(cred, servicePrefix):
		return a.service(cred)
	default:
		return a.session(ctx, cred)
	}
}

func (a *Authenticator) adminKey(ctx context.Context, key string) (*Principal, error) {
	if !ParseAdminKey(key) {
		return nil, errInvalidKey // garbage never reaches the database
	}
	if a.Resolver == nil {
		return nil, errNoResolver
	}
	p, err := a.Resolver.ResolveAdminKey(ctx, HashKey(key))
	switch {
	case err == nil && p != nil:
		return p, nil
	case err == nil || isNotFound(err):
		return nil, errInvalidKey
	}
	return nil, err
}

func (a *Authenticator) service(cred string) (*Principal, error) {
	now := time.Now()
	if a.Clock != nil {
		now = a.Clock()
	}
	name, err := verifyServiceCredential(a.ServiceSecret, cred, now)
	if err != nil {
		return nil, err
	}
	return &Principal{Kind: KindService, ID: name, Name: name}, nil
}

func (a *Authenticator) session(ctx context.Context, token string) (*Principal, error) {
	if a.Verifier == nil {
		return nil, errNoVerifier
	}
	id, err := a.Verifier.Verify(ctx, token)
	if err != nil {
		return nil, err
	}
	if a.Resolver == nil {
		return nil, errNoResolver
	}
	p, err := a.Resolver.ResolveUser(ctx, id.UserID)
	switch {
	case err == nil && p != nil:
		return p, nil
	case err == nil || isNotFound(err):
		return nil, errUnknownUser
	}
	return nil, err
}

// bearer returns the credential of the "authorization: Bearer <x>"
// metadata entry.
func bearer(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch {
	case len(vals) == 0:
		return "", errMissing
	case len(vals) > 1:
		return "", errAmbiguous
	}
	scheme, cred, _ := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !strings.EqualFold(scheme, "bearer") {
		return "", errBadScheme
	}
	if cred = strings.TrimSpace(cred); cred == "" {
		return "", errMissing
	}
	return cred, nil
}

// authenticate returns ctx with the caller's principal, or the status
// error to send. It maps its own errors because it runs before the
// error-mapping interceptor.
func (a *Authenticator) authenticate(ctx context.Context, method string) (context.Context, error) {
	if a.Public[method] {
		return ctx, nil
	}
	p, err := a.Authenticate(ctx)
	if err != nil {
		level := slog.LevelDebug // a bad credential is the caller's problem
		if !errors.Is(err, errs.ErrUnauthenticated) {
			level = slog.LevelWarn
		}
		a.log().LogAttrs(ctx, level, "authentication failed",
			slog.String("method", method),
			slog.String("reason", err.Error()))
		return nil, errs.ToStatus(ctx, a.Log, err)
	}
	return WithPrincipal(ctx, p), nil
}

func (a *Authenticator) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}

// UnaryInterceptor authenticates unary RPCs.
func (a *Authenticator) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.authenticate(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor authenticates streaming RPCs.
func (a *Authenticator) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.authenticate(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
	}
}

// serverStream is a grpc.ServerStream with a replaced context.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }
