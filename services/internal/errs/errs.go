// Package errs is the one place where a failure becomes a gRPC status.
//
// Code below the RPC boundary returns plain Go errors: domain errors built
// here (errs.NotFound("Token not found")), wrapped with %w as they travel up,
// or whatever a library returned (a *pgconn.PgError, a context error). The
// server interceptors of this package convert every returned error with
// ToStatus, so a client sees a standard gRPC code and a message that was
// written for it — never a SQL error, a file path or a stack trace. Anything
// that is not known to be safe becomes Internal "internal error" and the real
// error is logged with the request id, so an operator can still find it.
package errs

import "google.golang.org/grpc/codes"

// Kind classifies a domain error. Each Kind maps to exactly one gRPC code.
// The exported Err* values are sentinels: errors.Is(err, errs.ErrNotFound)
// reports whether err (or anything it wraps) is a domain error of that kind.
type Kind struct {
	code codes.Code
}

// Code is the gRPC code a client receives for errors of this kind.
func (k *Kind) Code() codes.Code { return k.code }

// Error makes a Kind usable as a sentinel error.
func (k *Kind) Error() string { return k.code.String() }

// The kinds of failure a handler may report to a client. They are the
// standard gRPC codes a caller can act on; Internal is deliberately absent
// because an internal failure has no client-safe message: return the real
// error and let ToStatus log it.
var (
	ErrNotFound           = &Kind{codes.NotFound}
	ErrAlreadyExists      = &Kind{codes.AlreadyExists}
	ErrInvalidArgument    = &Kind{codes.InvalidArgument}
	ErrFailedPrecondition = &Kind{codes.FailedPrecondition}
	ErrPermissionDenied   = &Kind{codes.PermissionDenied}
	ErrUnauthenticated    = &Kind{codes.Unauthenticated}
	ErrResourceExhausted  = &Kind{codes.ResourceExhausted}
	ErrUnavailable        = &Kind{codes.Unavailable}
	ErrUnimplemented      = &Kind{codes.Unimplemented}
	ErrAborted            = &Kind{codes.Aborted}
)

// Error is a domain error: a kind, a message meant for the client, and
// optionally the underlying cause, which is logged but never sent.
type Error struct {
	Kind *Kind
	// Msg is shown to the client as is, so it must not contain secrets or
	// internal detail.
	Msg string
	// Cause is the error that led to this one, if any (for logs and for
	// errors.Is/As on the cause).
	Cause error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Msg + ": " + e.Cause.Error()
	}
	return e.Msg
}

// Unwrap exposes both the kind (so errors.Is(err, ErrNotFound) works) and
// the cause (so errors.Is(err, pgx.ErrNoRows) keeps working after Wrap).
func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Kind, e.Cause}
	}
	return []error{e.Kind}
}

// New returns a domain error of kind k with the client-safe message msg.
func New(k *Kind, msg string) error { return &Error{Kind: k, Msg: msg} }

// Wrap returns a domain error of kind k with the client-safe message msg
// that keeps cause for logs and for errors.Is/As. The cause's text is
// never sent to the client.
func Wrap(cause error, k *Kind, msg string) error {
	return &Error{Kind: k, Msg: msg, Cause: cause}
}

// NotFound reports that the addressed entity does not exist (or is not
// visible to the caller).
func NotFound(msg string) error { return New(ErrNotFound, msg) }

// Conflict reports that the entity to be created already exists.
func Conflict(msg string) error { return New(ErrAlreadyExists, msg) }

// Invalid reports a malformed or out-of-range argument.
func Invalid(msg string) error { return New(ErrInvalidArgument, msg) }

// Precondition reports that the system is not in a state that allows the
// operation (e.g. removing a team's last ADMIN).
func Precondition(msg string) error { return New(ErrFailedPrecondition, msg) }

// Forbidden reports that the authenticated caller may not do this.
func Forbidden(msg string) error { return New(ErrPermissionDenied, msg) }

// Unauthenticated reports a missing or invalid credential.
func Unauthenticated(msg string) error { return New(ErrUnauthenticated, msg) }

// Exhausted reports that a quota or rate limit was hit.
func Exhausted(msg string) error { return New(ErrResourceExhausted, msg) }

// Unavailable reports a transient failure the client may retry.
func Unavailable(msg string) error { return New(ErrUnavailable, msg) }

// Unimplemented reports an operation this server does not offer.
func Unimplemented(msg string) error { return New(ErrUnimplemented, msg) }

// Aborted reports a concurrency conflict; the client may retry.
func Aborted(msg string) error { return New(ErrAborted, msg) }
