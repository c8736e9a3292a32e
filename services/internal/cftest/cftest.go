// Package cftest is a fake of the Cloudflare Workers KV REST API, as
// cloudflare-go v0.119.0 calls it, for tests: single values (PUT, GET,
// DELETE, keys URL-escaped), bulk write and bulk delete, key listing with
// cursor paging and metadata, Cloudflare's JSON envelope and Bearer auth.
//
// Tests inject faults (429 with Retry-After, 500, slow answers, dropped
// connections, with or without the change applied) and inspect what the
// fake holds and which requests it received.
package cftest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Default credentials and ids of a fake.
const (
	AccountID   = "acct0123456789"
	NamespaceID = "ns0123456789"
	APIToken    = "cftest-api-token-0123456789"
)

// FaultKind is a failure to inject.
type FaultKind int

const (
	None FaultKind = iota
	// RateLimit answers 429 with Retry-After (seconds).
	RateLimit
	// ServerError answers 500 without applying the request.
	ServerError
	// Slow waits Fault.Delay (or until the client gives up) before handling.
	Slow
	// Drop closes the connection without an answer, change not applied.
	Drop
	// DropAfterApply applies the change, then closes the connection.
	DropAfterApply
)

// Fault is what to do with one request.
type Fault struct {
	Kind       FaultKind
	RetryAfter int           // RateLimit: seconds
	Delay      time.Duration // Slow
}

// Request is one request as the fake received it.
type Request struct {
	Method string
	Op     string   // put, get, delete, bulk_put, bulk_delete, list
	Keys   []string // keys touched (unescaped)
	Status int      // 0 when dropped
	At     time.Time
}

// Change is one applied change, for hooks.
type Change struct {
	Key     string
	Value   []byte // nil for a delete
	Deleted bool
	At      time.Time
}

type entry struct {
	value    []byte
	metadata json.RawMessage
}

// Server is a fake KV API. Its zero value is unusable; use New.
type Server struct {
	*httptest.Server
	Token string

	mu    sync.Mutex
	kv    map[string]entry
	log   []Request
	fault func(Request) Fault
	hook  func(Change)
}

// New starts a fake, closed when t ends.
func New(t testing.TB) *Server {
	s := &Server{Token: APIToken, kv: map[string]entry{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// BaseURL is the value for CF_API_BASE_URL / cloudflare.BaseURL.
func (s *Server) BaseURL() string { return s.URL + "/client/v4" }

// SetFaults decides a fault per request (nil: no faults). f sees the
// request's method, op and keys.
func (s *Server) SetFaults(f func(Request) Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// OnChange calls f (outside the fake's lock) for every applied change.
func (s *Server) OnChange(f func(Change)) {
	s.mu.Lock()
	s.hook = f
	s.mu.Unlock()
}

// KV returns a copy of the namespace.
func (s *Server) KV() map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]byte, len(s.kv))
	for k, e := range s.kv {
		out[k] = slices.Clone(e.value)
	}
	return out
}

// Metadata returns the metadata stored with key.
func (s *Server) Metadata(key string) json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kv[key].metadata
}

// Put stores a value directly (seeding, or simulating drift).
func (s *Server) Put(key string, value []byte) {
	s.mu.Lock()
	s.kv[key] = entry{value: value}
	s.mu.Unlock()
}

// Delete removes a key directly.
func (s *Server) Delete(key string) {
	s.mu.Lock()
	delete(s.kv, key)
	s.mu.Unlock()
}

// Requests returns the request log.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

type envelopeError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func writeEnvelope(w http.ResponseWriter, status int, result any, info any, errs ...envelopeError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := map[string]any{"success": len(errs) == 0, "errors": errs, "messages": []any{}, "result": result}
	if errs == nil {
		body["errors"] = []any{}
	}
	if info != nil {
		body["result_info"] = info
	}
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	base := fmt.Sprintf("/client/v4/accounts/%s/storage/kv/namespaces/%s", AccountID, NamespaceID)
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), base)
	if !ok {
		writeEnvelope(w, 404, nil, nil, envelopeError{7003, "Could not route to " + r.URL.Path})
		return
	}
	req := Request{Method: r.Method, At: time.Now()}
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
	}
	switch {
	case strings.HasPrefix(rest, "/values/"):
		key, err := url.PathUnescape(strings.TrimPrefix(rest, "/values/"))
		if err != nil {
			writeEnvelope(w, 400, nil, nil, envelopeError{10019, "bad key"})
			return
		}
		req.Keys = []string{key}
		req.Op = map[string]string{"PUT": "put", "GET": "get", "DELETE": "delete"}[r.Method]
	case rest == "/bulk":
		req.Op = map[string]string{"PUT": "bulk_put", "DELETE": "bulk_delete"}[r.Method]
		if req.Op == "bulk_put" {
			var pairs []struct{ Key string }
			_ = json.Unmarshal(body, &pairs)
			for _, p := range pairs {
				req.Keys = append(req.Keys, p.Key)
			}
		} else {
			_ = json.Unmarshal(body, &req.Keys)
		}
	case rest == "/keys":
		if r.Method == "GET" {
			req.Op = "list"
		}
	}
	if req.Op == "" {
		s.record(req, 405)
		writeEnvelope(w, 405, nil, nil, envelopeError{10000, "method not allowed"})
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.Token {
		s.record(req, 401)
		writeEnvelope(w, 401, nil, nil, envelopeError{10000, "Authentication error"})
		return
	}

	s.mu.Lock()
	f := Fault{}
	if s.fault != nil {
		f = s.fault(req)
	}
	s.mu.Unlock()
	switch f.Kind {
	case RateLimit:
		s.record(req, 429)
		w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
		writeEnvelope(w, 429, nil, nil, envelopeError{10013, "Rate limited"})
		return
	case ServerError:
		s.record(req, 500)
		writeEnvelope(w, 500, nil, nil, envelopeError{10001, "Internal error"})
		return
	case Slow:
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			s.record(req, 0)
			return
		}
	case Drop:
		s.record(req, 0)
		hijackClose(w)
		return
	}

	status, result, info, errs := s.apply(req, r, body)
	if f.Kind == DropAfterApply {
		s.record(req, 0)
		hijackClose(w)
		return
	}
	s.record(req, status)
	if req.Op == "get" && status == 200 {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(result.([]byte))
		return
	}
	writeEnvelope(w, status, result, info, errs...)
}

func hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
		}
	}
}

func (s *Server) record(req Request, status int) {
	req.Status = status
	s.mu.Lock()
	s.log = append(s.log, req)
	s.mu.Unlock()
}

// apply performs a request on the store.
func (s *Server) apply(req Request, r *http.Request, body []byte) (status int, result, info any, errs []envelopeError) {
	var changes []Change
	now := time.Now()
	s.mu.Lock()
	switch req.Op {
	case "put":
		s.kv[req.Keys[0]] = entry{value: body}
		changes = append(changes, Change{Key: req.Keys[0], Value: body, At: now})
	case "delete":
		delete(s.kv, req.Keys[0])
		changes = append(changes, Change{Key: req.Keys[0], Deleted: true, At: now})
	case "get":
		e, ok := s.kv[req.Keys[0]]
		s.mu.Unlock()
		if !ok {
			return 404, nil, nil, []envelopeError{{10009, "get: 'key not found'"}}
		}
		return 200, slices.Clone(e.value), nil, nil
	case "bulk_put":
		var pairs []struct {
			Key      string          `json:"key"`
			Value    string          `json:"value"`
			Metadata json.RawMessage `json:"metadata"`
			Base64   bool            `json:"base64"`
		}
		if err := json.Unmarshal(body, &pairs); err != nil {
			s.mu.Unlock()
			return 400, nil, nil, []envelopeError{{10026, "bad bulk body"}}
		}
		for _, p := range pairs {
			s.kv[p.Key] = entry{value: []byte(p.Value), metadata: p.Metadata}
			changes = append(changes, Change{Key: p.Key, Value: []byte(p.Value), At: now})
		}
	case "bulk_delete":
		for _, k := range req.Keys {
			delete(s.kv, k)
			changes = append(changes, Change{Key: k, Deleted: true, At: now})
		}
	case "list":
		q := r.URL.Query()
		limit, _ := strconv.Atoi(q.Get("limit"))
		if limit <= 0 || limit > 1000 {
			limit = 1000
		}
		start, _ := strconv.Atoi(q.Get("cursor"))
		names := slices.Sorted(maps.Keys(s.kv))
		names = slices.DeleteFunc(names, func(n string) bool { return !strings.HasPrefix(n, q.Get("prefix")) })
		type key struct {
			Name     string          `json:"name"`
			Metadata json.RawMessage `json:"metadata,omitempty"`
		}
		page := []key{}
		for i := start; i < len(names) && len(page) < limit; i++ {
			page = append(page, key{Name: names[i], Metadata: s.kv[names[i]].metadata})
		}
		cursor := ""
		if start+len(page) < len(names) {
			cursor = strconv.Itoa(start + len(page))
		}
		s.mu.Unlock()
		return 200, page, map[string]any{"count": len(page), "cursor": cursor}, nil
	}
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		for _, c := range changes {
			hook(c)
		}
	}
	return 200, nil, nil, nil
}
