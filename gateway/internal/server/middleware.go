package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// requestIDHeader is read from clients (when well formed), echoed on every
// response and forwarded to the services as gRPC metadata x-request-id.
const requestIDHeader = "X-Request-Id"

type ctxKey int

const requestIDKey ctxKey = iota

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validRequestID accepts printable ASCII ids of bounded length, so a client
// cannot inject log lines or huge headers through it.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// statusRecorder remembers the status code for logs and metrics.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
	}
	return r.ResponseWriter.Write(b)
}

// Flush lets streamed responses (CSV export) reach the client as they go.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// httpMetrics are the gateway's Prometheus series.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tm_gateway_http_requests_total",
			Help: "HTTP requests handled by the gateway, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tm_gateway_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route pattern and method.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration)
	}
	return m
}

// routeLabel keeps metric cardinality bounded: the path pattern without ids.
func routeLabel(r *http.Request, patterns []pattern) string {
	if p := matchPattern(patterns, r.Method, splitPath(r.URL.Path)); p != nil {
		return p.template
	}
	return "other"
}

// middleware wraps the whole HTTP surface. The order matters and is written
// down once: recovery (outermost, so nothing escapes as a bare 500) → request
// id → CORS (before anything can fail, so browsers can read every error) →
// logging and metrics → body size limit → input check (validate.go: NUL,
// invalid UTF-8, deep JSON, non-decimal ids; 400 before any RPC) → client
// address → the routes.
func (s *Server) middleware(next http.Handler) http.Handler {
	h := next
	h = s.clientAddress(h)
	h = s.checkInput(h)
	h = s.limitBody(h)
	h = s.observe(h)
	h = s.cors(h)
	h = s.requestID(h)
	h = s.recoverPanics(h)
	return h
}

func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "panic serving request", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				writeError(w, http.StatusInternalServerError, "Internal server error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(requestIDHeader)
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set(requestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

// cors implements CORS for ALLOWED_FRONTEND_ORIGINS on every response,
// errors included (v2.7's 500s lacked CORS headers and looked like CORS
// failures in the browser). Other origins get no CORS headers at all.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allowed := origin != "" && slices.Contains(s.cfg.AllowedOrigins, origin)
		if origin != "" {
			w.Header().Add("Vary", "Origin")
		}
		if allowed {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Expose-Headers", requestIDHeader+", Retry-After") // the dashboard may back off on 503
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if !allowed {
				writeError(w, http.StatusForbidden, "Origin not allowed")
				return
			}
			h := w.Header()
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		elapsed := time.Since(start)
		route := routeLabel(r, s.patterns)
		s.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(rec.status)).Inc()
		s.metrics.duration.WithLabelValues(route, r.Method).Observe(elapsed.Seconds())
		level := slog.LevelInfo
		if strings.HasPrefix(r.URL.Path, "/health") {
			level = slog.LevelDebug // polled every 30 s by the dashboard
		}
		s.log.Log(r.Context(), level, "http request",
			"request_id", requestIDFrom(r.Context()),
			"method", r.Method,
			"route", route,
			"status", rec.status,
			"duration_ms", float64(elapsed.Microseconds())/1000,
		)
	})
}

// limitBody refuses bodies over TM_MAX_BODY_BYTES: at once when the length is
// declared, and while reading otherwise (the decoder then fails and the error
// handler answers 413).
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.cfg.MaxBodyBytes {
			writeError(w, http.StatusRequestEntityTooLarge, "Request body too large")
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// clientAddress decides the client's address once, where the request enters
// the system, and makes X-Forwarded-For say exactly that: grpc-gateway (and
// the hand-written handlers) append the peer to it on the way to the
// services, which record the first entry in the audit trail. A client's own
// X-Forwarded-For is believed only as far as TM_TRUSTED_PROXIES vouch for it,
// so nobody can choose the IP address their changes are recorded with.
func (s *Server) clientAddress(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ip := clientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), s.cfg.TrustedProxies); ip != "" {
			r.Header.Set("X-Forwarded-For", ip)
		} else {
			r.Header.Del("X-Forwarded-For")
		}
		next.ServeHTTP(w, r)
	})
}

// clientIP is the peer's address, unless the peer is a trusted proxy: then
// X-Forwarded-For is read from the right (each proxy appends the address it
// saw), skipping trusted proxies, and the first address no trusted proxy
// stands for is the client. An entry that is not an address ends the walk at
// the last trusted hop, which is then the best address known.
func clientIP(remoteAddr string, xff []string, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	peer = peer.Unmap()
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	if !isTrusted(peer) {
		return peer.String()
	}
	var hops []string
	for _, v := range xff {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !isTrusted(a) {
			return a.String()
		}
		peer = a
	}
	return peer.String()
}
