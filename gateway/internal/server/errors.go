package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errorBody is the contract's error shape: {"detail": "<string>"}.
type errorBody struct {
	Detail string `json:"detail"`
}

// clientDetail is the message a client sees for an error. Services already
// send client-safe messages; what is replaced here are errors produced by the
// transport (connection refused, with internal addresses) or the unknown.
func clientDetail(st *status.Status) string {
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		return "Service temporarily unavailable, please retry"
	case codes.DeadlineExceeded:
		return "The request timed out"
	case codes.Internal, codes.Unknown, codes.DataLoss:
		return "Internal server error"
	case codes.InvalidArgument:
		// Body decoding errors from protojson carry a "proto:" prefix and
		// line/column noise; keep the useful part.
		if strings.Contains(msg, "request body too large") {
			return "Request body too large"
		}
		msg = strings.TrimPrefix(msg, "proto: ")
		msg = strings.TrimPrefix(msg, "syntax error ")
	}
	if msg == "" {
		msg = http.StatusText(runtime.HTTPStatusFromCode(st.Code()))
	}
	return msg
}

// writeError writes the contract's error body with the given status.
func writeError(w http.ResponseWriter, code int, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(errorBody{Detail: detail})
}

// errorHandler is the gateway's runtime.ErrorHandlerFunc: every RPC error
// becomes {"detail": ...} with the matching HTTP status. CORS headers were
// already set by the middleware, so browsers can read the error.
func errorHandler(log *slog.Logger) runtime.ErrorHandlerFunc {
	return func(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
		st := status.Convert(err)
		// grpc-gateway's mapping; TestStatusCodesTheDashboardReadsArePinned
		// holds it to what the contract and the dashboard expect.
		code := runtime.HTTPStatusFromCode(st.Code())
		if st.Code() == codes.InvalidArgument && strings.Contains(st.Message(), "request body too large") {
			code = http.StatusRequestEntityTooLarge
		}
		if code >= 500 && code != http.StatusNotImplemented {
			log.ErrorContext(ctx, "rpc failed", "path", r.URL.Path, "code", st.Code().String(), "error", st.Message())
		}
		if code == http.StatusServiceUnavailable {
			// A dependency is briefly away (database restart, a service
			// restarting): the request is safe to retry shortly.
			w.Header().Set("Retry-After", retryAfterSeconds)
		}
		writeError(w, code, clientDetail(st))
	}
}

// retryAfterSeconds is the Retry-After of a 503: long enough for a
// PostgreSQL restart or a pool reconnect, short for a dashboard.
const retryAfterSeconds = "2"

// routingErrorHandler answers unknown paths and wrong methods in the same shape.
func routingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	switch httpStatus {
	case http.StatusMethodNotAllowed:
		writeError(w, httpStatus, "Method Not Allowed")
	case http.StatusNotFound:
		writeError(w, httpStatus, "Not Found")
	default:
		writeError(w, httpStatus, http.StatusText(httpStatus))
	}
}
