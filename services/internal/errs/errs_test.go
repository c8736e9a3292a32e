package errs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
	"github.com/tokenmanager/tokenmanager/services/internal/requestid"
)

// pgSecretBits are the kind of detail PostgreSQL puts in its errors: table,
// constraint and the offending value. None of it may reach a client.
var pgSecretBits = []string{"tokens_name_key", "s3cr3t", "SQLSTATE", "duplicate key", "relation", "token.tokens"}

// ctxHandler adds the request id of the record's context, as the
// platform's logger (package logging) does in production.
type ctxHandler struct{ slog.Handler }

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := requestid.From(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func pgErr(code string) error {
	return &pgconn.PgError{
		Severity:       "ERROR",
		Code:           code,
		Message:        `duplicate key value violates unique constraint "tokens_name_key" on relation token.tokens`,
		Detail:         "Key (name)=(s3cr3t) already exists.",
		ConstraintName: "tokens_name_key",
		TableName:      "tokens",
	}
}

func TestToStatus(t *testing.T) {
	t.Parallel()
	already := status.Error(codes.Unavailable, "team service unavailable")
	tests := []struct {
		name     string
		err      error
		wantCode codes.Code
		wantMsg  string
		logged   bool
	}{
		{"nil", nil, codes.OK, "", false},
		{"not found", errs.NotFound("Token not found"), codes.NotFound, "Token not found", false},
		{"conflict", errs.Conflict("Route path '/x' already exists"), codes.AlreadyExists, "Route path '/x' already exists", false},
		{"invalid", errs.Invalid("name must be 1..255 characters"), codes.InvalidArgument, "name must be 1..255 characters", false},
		{"precondition", errs.Precondition("team has members"), codes.FailedPrecondition, "team has members", false},
		{"forbidden", errs.Forbidden("Permission denied"), codes.PermissionDenied, "Permission denied", false},
		{"unauthenticated", errs.Unauthenticated("Not authenticated"), codes.Unauthenticated, "Not authenticated", false},
		{"exhausted", errs.Exhausted("slow down"), codes.ResourceExhausted, "slow down", false},
		{"unavailable", errs.Unavailable("try later"), codes.Unavailable, "try later", false},
		{"unimplemented", errs.Unimplemented("not yet"), codes.Unimplemented, "not yet", false},
		{"aborted", errs.Aborted("retry"), codes.Aborted, "retry", false},
		{"wrapped domain error keeps only the client message",
			fmt.Errorf("load token 42 from token.tokens: %w", errs.NotFound("Token not found")),
			codes.NotFound, "Token not found", false},
		{"Wrap hides its cause",
			errs.Wrap(pgErr("23503"), errs.ErrFailedPrecondition, "team still has tokens"),
			codes.FailedPrecondition, "team still has tokens", false},
		{"status unchanged", already, codes.Unavailable, "team service unavailable", false},
		{"wrapped status loses the wrapper text",
			fmt.Errorf("calling team at 10.0.0.7: %w", already),
			codes.Unavailable, "team service unavailable", false},
		{"canceled", fmt.Errorf("query: %w", context.Canceled), codes.Canceled, "request canceled", false},
		{"server-side deadline (caller's ctx alive)", context.DeadlineExceeded, codes.Unavailable, "Service temporarily unavailable, please retry", false},
		{"unexpected EOF", fmt.Errorf("lookup admin key: %w", io.ErrUnexpectedEOF), codes.Unavailable, "Service temporarily unavailable, please retry", false},
		{"admin shutdown", fmt.Errorf("select: %w", pgErr("57P01")), codes.Unavailable, "Service temporarily unavailable, please retry", false},
		{"unique violation", fmt.Errorf("insert token: %w", pgErr("23505")), codes.AlreadyExists, "already exists", false},
		{"serialization failure", pgErr("40001"), codes.Aborted, "concurrent update conflict, please retry", false},
		{"deadlock", pgErr("40P01"), codes.Aborted, "concurrent update conflict, please retry", false},
		{"other pg error", fmt.Errorf("insert: %w", pgErr("42P01")), codes.Internal, "internal error", true},
		{"plain error", errors.New("open /etc/tm/key: permission denied"), codes.Internal, "internal error", true},
		{"domain error without a kind", &errs.Error{Msg: "built by hand, wrongly"}, codes.Internal, "internal error", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log := slog.New(ctxHandler{slog.NewJSONHandler(&buf, nil)})
			ctx := requestid.With(context.Background(), "req-123")

			got := errs.ToStatus(ctx, log, tc.err)

			st, ok := status.FromError(got)
			if !ok {
				t.Fatalf("ToStatus returned a non-status error %T: %v", got, got)
			}
			if st.Code() != tc.wantCode || st.Message() != tc.wantMsg {
				t.Errorf("got %v %q, want %v %q", st.Code(), st.Message(), tc.wantCode, tc.wantMsg)
			}
			for _, bit := range pgSecretBits {
				if strings.Contains(st.Message(), bit) {
					t.Errorf("client message %q leaks %q", st.Message(), bit)
				}
			}
			if tc.logged {
				line := buf.String()
				if !strings.Contains(line, `"level":"ERROR"`) || !strings.Contains(line, `"request_id":"req-123"`) {
					t.Errorf("internal error not logged with request id: %s", line)
				}
				if !strings.Contains(line, tc.err.Error()[:10]) {
					t.Errorf("log lacks the real error: %s", line)
				}
			} else if strings.Contains(buf.String(), `"level":"ERROR"`) {
				t.Errorf("unexpected error log: %s", buf.String())
			}
		})
	}
}

func TestStatusUnchangedIdentity(t *testing.T) {
	t.Parallel()
	in := status.Error(codes.NotFound, "x")
	if got := errs.ToStatus(context.Background(), nil, in); got != in {
		t.Errorf("status error was replaced: %v", got)
	}
}

func TestErrorsIsAs(t *testing.T) {
	t.Parallel()
	cause := errors.New("no rows in result set")
	err := fmt.Errorf("get token: %w", errs.Wrap(cause, errs.ErrNotFound, "Token not found"))

	if !errors.Is(err, errs.ErrNotFound) {
		t.Error("errors.Is(err, ErrNotFound) = false")
	}
	if errors.Is(err, errs.ErrAlreadyExists) {
		t.Error("errors.Is(err, ErrAlreadyExists) = true")
	}
	if !errors.Is(err, cause) {
		t.Error("errors.Is(err, cause) = false after Wrap")
	}
	var de *errs.Error
	if !errors.As(err, &de) || de.Msg != "Token not found" || de.Kind != errs.ErrNotFound {
		t.Errorf("errors.As = %+v", de)
	}
	if de.Kind.Code() != codes.NotFound {
		t.Errorf("Kind.Code = %v", de.Kind.Code())
	}
	if !errors.Is(errs.Conflict("x"), errs.ErrAlreadyExists) {
		t.Error("Conflict is not ErrAlreadyExists")
	}
}

func TestUnaryServerInterceptor(t *testing.T) {
	t.Parallel()
	icpt := errs.UnaryServerInterceptor(nil)
	info := &grpc.UnaryServerInfo{FullMethod: "/tokenmanager.token.v1.TokenService/CreateToken"}

	_, err := icpt(context.Background(), nil, info, func(context.Context, any) (any, error) {
		return nil, fmt.Errorf("insert: %w", pgErr("23505"))
	})
	if st := status.Convert(err); st.Code() != codes.AlreadyExists || st.Message() != "already exists" {
		t.Errorf("got %v %q", st.Code(), st.Message())
	}

	resp, err := icpt(context.Background(), nil, info, func(context.Context, any) (any, error) { return "ok", nil })
	if err != nil || resp != "ok" {
		t.Errorf("success path changed: %v %v", resp, err)
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s fakeStream) Context() context.Context { return s.ctx }

func TestStreamServerInterceptor(t *testing.T) {
	t.Parallel()
	icpt := errs.StreamServerInterceptor(nil)
	ss := fakeStream{ctx: context.Background()}
	err := icpt(nil, ss, &grpc.StreamServerInfo{}, func(any, grpc.ServerStream) error {
		return pgErr("42P01")
	})
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Errorf("got %v %q", st.Code(), st.Message())
	}
}
