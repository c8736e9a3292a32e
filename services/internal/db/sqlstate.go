package db

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// The SQLSTATE codes the services act on; this file is the only place that
// reads them (errs maps them to gRPC codes through these predicates).
const (
	codeUniqueViolation      = "23505"
	codeForeignKeyViolation  = "23503"
	codeCheckViolation       = "23514"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
	codeDuplicateDatabase    = "42P04"
	codeTooManyConnections   = "53300"
	codeAdminShutdown        = "57P01"
	codeCrashShutdown        = "57P02"
	codeCannotConnectNow     = "57P03"
	classConnectionException = "08"
)

// SQLState returns the SQLSTATE of the PostgreSQL error in err's chain, or
// "" when PostgreSQL did not answer with one.
func SQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// IsServerError reports whether PostgreSQL answered err (with a SQLSTATE),
// as opposed to the connection failing.
func IsServerError(err error) bool { return SQLState(err) != "" }

// IsSerializationFailure reports whether err is a serialization failure or
// a deadlock: the transaction lost a race and may succeed if run again.
func IsSerializationFailure(err error) bool {
	c := SQLState(err)
	return c == codeSerializationFailure || c == codeDeadlockDetected
}

// IsUniqueViolation reports whether err is a unique constraint violation.
func IsUniqueViolation(err error) bool { return SQLState(err) == codeUniqueViolation }

// IsForeignKeyViolation reports whether err is a foreign key violation.
func IsForeignKeyViolation(err error) bool { return SQLState(err) == codeForeignKeyViolation }

// IsCheckViolation reports whether err is a check constraint violation
// (also what a row no partition accepts raises).
func IsCheckViolation(err error) bool { return SQLState(err) == codeCheckViolation }

// IsDuplicateDatabase reports whether err says a database of that name
// already exists.
func IsDuplicateDatabase(err error) bool { return SQLState(err) == codeDuplicateDatabase }

// IsServerGoingAway reports whether PostgreSQL answered that it is shutting
// down or refusing connections: 57P01 admin_shutdown, 57P02
// crash_shutdown, 57P03 cannot_connect_now, 53300 too_many_connections and
// the class 08 connection exceptions. The request may succeed if retried.
func IsServerGoingAway(err error) bool {
	switch c := SQLState(err); {
	case c == codeAdminShutdown, c == codeCrashShutdown, c == codeCannotConnectNow, c == codeTooManyConnections:
		return true
	default:
		return strings.HasPrefix(c, classConnectionException)
	}
}

// ConstraintName returns the name of the constraint err violated, or "".
// Stores use it to tell which unique key a duplicate hit.
func ConstraintName(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.ConstraintName
	}
	return ""
}
