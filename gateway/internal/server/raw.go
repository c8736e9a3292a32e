package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/audit/v1"
	usagev1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/usage/v1"
)

// Usage-ingest signature headers (documented in the README). The signature
// covers the timestamp and the exact body bytes, so the body travels raw.
const (
	signatureHeader          = "X-TM-Signature"
	signatureTimestampHeader = "X-TM-Timestamp"
)

// outgoing builds the gRPC context a hand-written handler calls with: the
// same metadata the generated handlers send.
func (s *Server) outgoing(r *http.Request) context.Context {
	md := metadata.Pairs("x-request-id", requestIDFrom(r.Context()))
	if v := r.Header.Get("Authorization"); v != "" {
		md.Set("authorization", v)
	}
	if v := r.Header.Get("User-Agent"); v != "" {
		md.Set("grpcgateway-user-agent", v)
	}
	if host, _, ok := splitHostPort(r.RemoteAddr); ok {
		xff := r.Header.Get("X-Forwarded-For")
		if xff == "" {
			xff = host
		} else {
			xff += ", " + host
		}
		md.Set("x-forwarded-for", xff)
	}
	return metadata.NewOutgoingContext(r.Context(), md)
}

// readBody reads the request body within limitBody's bound; when it cannot,
// it has answered (413 over the bound, else 400) and reports false.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "Request body too large")
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "Could not read request body")
		return nil, false
	}
	return body, true
}

// serveUsageLog is POST /api/usage-log: the Worker's usage report, passed
// raw to UsageService.Ingest, which verifies the signature and decodes it.
func (s *Server) serveUsageLog(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	resp, err := s.usage.Ingest(s.outgoing(r), &usagev1.IngestRequest{
		Body:               body,
		Signature:          r.Header.Get(signatureHeader),
		SignatureTimestamp: r.Header.Get(signatureTimestampHeader),
	})
	if err != nil {
		s.writeRPCError(w, r, err)
		return
	}
	s.writeMessage(w, resp)
}

// serveAuditExport is GET /api/dashboard/audit-logs/export: the filtered
// audit trail streamed as CSV, chunk by chunk, never buffered whole.
func (s *Server) serveAuditExport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := &auditv1.ExportAuditLogsRequest{
		Action:     q.Get("action"),
		EntityType: q.Get("entity_type"),
		TeamId:     q.Get("team_id"),
		Actor:      q.Get("actor"),
	}
	if err := parseTimeParam(q.Get("from"), &req.From); err != nil {
		writeError(w, http.StatusBadRequest, "from: "+err.Error())
		return
	}
	if err := parseTimeParam(q.Get("to"), &req.To); err != nil {
		writeError(w, http.StatusBadRequest, "to: "+err.Error())
		return
	}
	stream, err := s.audit.ExportAuditLogs(s.outgoing(r), req)
	if err != nil {
		s.writeRPCError(w, r, err)
		return
	}
	started := false
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			if !started {
				w.Header().Set("Content-Type", "text/csv; charset=utf-8")
				w.Header().Set("Cache-Control", "no-store")
				w.WriteHeader(http.StatusOK)
			}
			return
		}
		if err != nil {
			if !started {
				s.writeRPCError(w, r, err)
				return
			}
			// Headers are gone; cut the stream so the client sees a broken download.
			s.log.ErrorContext(r.Context(), "audit export interrupted", "error", status.Convert(err).Message())
			panic(http.ErrAbortHandler)
		}
		if !started {
			started = true
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			w.Header().Set("Content-Disposition", `attachment; filename="audit-logs.csv"`)
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
		}
		if _, err := w.Write(msg.GetChunk()); err != nil {
			return
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
}

func (s *Server) writeRPCError(w http.ResponseWriter, r *http.Request, err error) {
	errorHandler(s.log)(r.Context(), nil, nil, w, r, err)
}

func (s *Server) writeMessage(w http.ResponseWriter, msg any) {
	out, err := newContractMarshaler().Marshal(msg)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "Internal server error")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(out)
}

var _ runtime.Marshaler = (*contractMarshaler)(nil)

// parseTimeParam parses an RFC 3339 query parameter ("" leaves dst nil).
func parseTimeParam(v string, dst **timestamppb.Timestamp) error {
	if v == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return fmt.Errorf("must be an RFC 3339 time such as 2025-11-08T07:00:00Z")
	}
	*dst = timestamppb.New(t)
	return nil
}

func splitHostPort(addr string) (host, port string, ok bool) {
	host, port, err := net.SplitHostPort(addr)
	return host, port, err == nil
}
