package authtest

import (
	"cmp"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// This file gives FakeClerk the Backend API endpoints that the team service
// calls through clerk-sdk-go's user and invitation packages: users (list
// with limit/offset paging, count, get, metadata update with Clerk's deep
// merge) and invitations (create, list, revoke). Tests seed users with
// AddUser and read back what the service wrote with User.

// FakeUser is a Clerk user as tests seed and inspect it.
type FakeUser struct {
	ID        string // generated when empty
	Email     string
	FirstName string
	LastName  string
	ImageURL  string
	// PublicMetadata is the user's publicMetadata (nil means {}).
	PublicMetadata map[string]any
	// CreatedAt and LastSignInAt are epoch milliseconds; CreatedAt defaults
	// to now, LastSignInAt 0 means never.
	CreatedAt    int64
	LastSignInAt int64
}

// FakeInvitation is a Clerk invitation as FakeClerk holds it.
type FakeInvitation struct {
	ID             string
	Email          string
	PublicMetadata map[string]any
	RedirectURL    string
	Status         string // pending, accepted, revoked
	CreatedAt      int64
}

// directory is FakeClerk's user and invitation store, guarded by fc.mu.
type directory struct {
	users       map[string]*FakeUser
	invitations map[string]*FakeInvitation
	seq         int64
	down        atomic.Bool
	calls       atomic.Int64
}

func (fc *FakeClerk) backendRoutes() {
	fc.dir.users = map[string]*FakeUser{}
	fc.dir.invitations = map[string]*FakeInvitation{}
	h := func(f http.HandlerFunc) http.Handler { return fc.requireSecretKey(fc.backendGate(f)) }
	fc.mux.Handle("GET /v1/users", h(fc.handleListUsers))
	fc.mux.Handle("GET /v1/users/count", h(fc.handleCountUsers))
	fc.mux.Handle("GET /v1/users/{id}", h(fc.handleGetUser))
	fc.mux.Handle("PATCH /v1/users/{id}/metadata", h(fc.handleUpdateMetadata))
	fc.mux.Handle("POST /v1/invitations", h(fc.handleCreateInvitation))
	fc.mux.Handle("GET /v1/invitations", h(fc.handleListInvitations))
	fc.mux.Handle("POST /v1/invitations/{id}/revoke", h(fc.handleRevokeInvitation))
}

// backendGate counts Backend API calls and fails them while SetDown(true).
func (fc *FakeClerk) backendGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fc.dir.calls.Add(1)
		if fc.dir.down.Load() {
			writeError(w, http.StatusServiceUnavailable, "service_unavailable", "Clerk is down (FakeClerk.SetDown)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SetDown makes the users and invitations endpoints answer 503 (down) or
// work again; JWKS keeps working.
func (fc *FakeClerk) SetDown(down bool) { fc.dir.down.Store(down) }

// BackendCalls counts the users and invitations API calls so far.
func (fc *FakeClerk) BackendCalls() int { return int(fc.dir.calls.Load()) }

func (fc *FakeClerk) nextID(prefix string) string {
	fc.dir.seq++
	return prefix + strconv.FormatInt(fc.dir.seq, 10) + strings.ToLower(rand.Text()[:8])
}

// AddUser adds (or replaces) a user and returns its id.
func (fc *FakeClerk) AddUser(u FakeUser) string {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if u.ID == "" {
		u.ID = fc.nextID("user_")
	}
	if u.CreatedAt == 0 {
		u.CreatedAt = time.Now().UnixMilli() + fc.dir.seq // distinct, for a stable order
		fc.dir.seq++
	}
	u.PublicMetadata = deepCopy(u.PublicMetadata)
	fc.dir.users[u.ID] = &u
	return u.ID
}

// User returns a copy of the user, and whether it exists.
func (fc *FakeClerk) User(id string) (FakeUser, bool) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	u, ok := fc.dir.users[id]
	if !ok {
		return FakeUser{}, false
	}
	c := *u
	c.PublicMetadata = deepCopy(u.PublicMetadata)
	return c, true
}

// Invitations returns copies of every invitation, oldest first.
func (fc *FakeClerk) Invitations() []FakeInvitation {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	var out []FakeInvitation
	for _, inv := range fc.dir.invitations {
		c := *inv
		c.PublicMetadata = deepCopy(inv.PublicMetadata)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b FakeInvitation) int {
		return cmp.Or(cmp.Compare(a.CreatedAt, b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return out
}

// AcceptInvitation does what Clerk does when the invitee signs up: it
// creates a user with the invitation's e-mail whose publicMetadata is the
// invitation's, and marks the invitation accepted. It returns the user id.
func (fc *FakeClerk) AcceptInvitation(id string) (string, bool) {
	fc.mu.Lock()
	inv, ok := fc.dir.invitations[id]
	if !ok || inv.Status != "pending" {
		fc.mu.Unlock()
		return "", false
	}
	inv.Status = "accepted"
	email, meta := inv.Email, deepCopy(inv.PublicMetadata)
	fc.mu.Unlock()
	return fc.AddUser(FakeUser{Email: email, PublicMetadata: meta}), true
}

func (fc *FakeClerk) userJSON(u *FakeUser) map[string]any {
	emails := []map[string]any{}
	var primary any
	if u.Email != "" {
		eid := "idn_" + strings.TrimPrefix(u.ID, "user_")
		primary = eid
		emails = append(emails, map[string]any{
			"id": eid, "object": "email_address", "email_address": u.Email, "reserved": false,
			"verification": map[string]any{"status": "verified", "strategy": "from_oauth_google"},
			"linked_to":    []any{},
		})
	}
	meta := u.PublicMetadata
	if meta == nil {
		meta = map[string]any{}
	}
	var lastSignIn any
	if u.LastSignInAt != 0 {
		lastSignIn = u.LastSignInAt
	}
	return map[string]any{
		"object": "user", "id": u.ID, "username": nil,
		"first_name": nullable(u.FirstName), "last_name": nullable(u.LastName),
		"image_url": u.ImageURL, "has_image": u.ImageURL != "",
		"primary_email_address_id": primary, "email_addresses": emails,
		"phone_numbers": []any{}, "web3_wallets": []any{}, "external_accounts": []any{},
		"public_metadata": meta, "private_metadata": map[string]any{}, "unsafe_metadata": map[string]any{},
		"last_sign_in_at": lastSignIn, "banned": false, "locked": false,
		"created_at": u.CreatedAt, "updated_at": u.CreatedAt,
	}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// matchingUsers returns the users the list/count query selects, newest
// first (Clerk's default order_by=-created_at).
func (fc *FakeClerk) matchingUsers(r *http.Request) []*FakeUser {
	q := r.URL.Query()
	ids, emails := q["user_id"], q["email_address"]
	var out []*FakeUser
	for _, u := range fc.dir.users {
		if len(ids) > 0 && !slices.Contains(ids, u.ID) {
			continue
		}
		if len(emails) > 0 && !slices.ContainsFunc(emails, func(e string) bool { return strings.EqualFold(e, u.Email) }) {
			continue
		}
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b *FakeUser) int {
		return cmp.Or(cmp.Compare(b.CreatedAt, a.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return out
}

// page applies Clerk's limit (default 10, 1..500) and offset.
func page[T any](w http.ResponseWriter, r *http.Request, all []T) ([]T, bool) {
	limit, offset := 10, 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			writeError(w, http.StatusUnprocessableEntity, "form_param_value_invalid", "limit must be between 1 and 500")
			return nil, false
		}
		limit = n
	}
	if v := r.URL.Query().Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusUnprocessableEntity, "form_param_value_invalid", "offset must be >= 0")
			return nil, false
		}
		offset = n
	}
	if offset >= len(all) {
		return []T{}, true
	}
	return all[offset:min(offset+limit, len(all))], true
}

func (fc *FakeClerk) handleListUsers(w http.ResponseWriter, r *http.Request) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	users, ok := page(w, r, fc.matchingUsers(r))
	if !ok {
		return
	}
	out := make([]map[string]any, 0, len(users))
	for _, u := range users {
		out = append(out, fc.userJSON(u))
	}
	writeJSON(w, http.StatusOK, out)
}

func (fc *FakeClerk) handleCountUsers(w http.ResponseWriter, r *http.Request) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"object": "total_count", "total_count": len(fc.matchingUsers(r))})
}

func (fc *FakeClerk) handleGetUser(w http.ResponseWriter, r *http.Request) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	u, ok := fc.dir.users[r.PathValue("id")]
	if !ok {
		writeError(w, http.StatusNotFound, "resource_not_found", "not found")
		return
	}
	writeJSON(w, http.StatusOK, fc.userJSON(u))
}

func (fc *FakeClerk) handleUpdateMetadata(w http.ResponseWriter, r *http.Request) {
	var body struct {
		PublicMetadata map[string]any `json:"public_metadata"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "malformed_request", "malformed JSON body")
		return
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	u, ok := fc.dir.users[r.PathValue("id")]
	if !ok {
		writeError(w, http.StatusNotFound, "resource_not_found", "not found")
		return
	}
	if u.PublicMetadata == nil {
		u.PublicMetadata = map[string]any{}
	}
	deepMerge(u.PublicMetadata, body.PublicMetadata)
	writeJSON(w, http.StatusOK, fc.userJSON(u))
}

// deepMerge merges src into dst as Clerk's "update user metadata" does:
// objects merge key by key, recursively; null deletes the key; anything
// else replaces.
func deepMerge(dst, src map[string]any) {
	for k, v := range src {
		switch sv := v.(type) {
		case nil:
			delete(dst, k)
		case map[string]any:
			if dv, ok := dst[k].(map[string]any); ok {
				deepMerge(dv, sv)
			} else {
				m := map[string]any{}
				deepMerge(m, sv)
				dst[k] = m
			}
		default:
			dst[k] = v
		}
	}
}

func deepCopy(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

func (fc *FakeClerk) invitationJSON(inv *FakeInvitation) map[string]any {
	meta := inv.PublicMetadata
	if meta == nil {
		meta = map[string]any{}
	}
	return map[string]any{
		"object": "invitation", "id": inv.ID, "email_address": inv.Email, "public_metadata": meta,
		"revoked": inv.Status == "revoked", "status": inv.Status, "url": inv.RedirectURL,
		"expires_at": inv.CreatedAt + 30*24*3600*1000, "created_at": inv.CreatedAt, "updated_at": inv.CreatedAt,
	}
}

func (fc *FakeClerk) handleCreateInvitation(w http.ResponseWriter, r *http.Request) {
	var body struct {
		EmailAddress   string         `json:"email_address"`
		PublicMetadata map[string]any `json:"public_metadata"`
		RedirectURL    string         `json:"redirect_url"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "malformed_request", "malformed JSON body")
		return
	}
	if !strings.Contains(body.EmailAddress, "@") {
		writeError(w, http.StatusUnprocessableEntity, "form_param_format_invalid", "email_address must be a valid email address.")
		return
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, u := range fc.dir.users {
		if strings.EqualFold(u.Email, body.EmailAddress) {
			writeError(w, http.StatusUnprocessableEntity, "form_identifier_exists", "That email address is taken. Please try another.")
			return
		}
	}
	for _, inv := range fc.dir.invitations {
		if inv.Status == "pending" && strings.EqualFold(inv.Email, body.EmailAddress) {
			writeError(w, http.StatusUnprocessableEntity, "duplicate_record", "There are already pending invitations for the following email addresses: "+body.EmailAddress)
			return
		}
	}
	inv := &FakeInvitation{
		ID: fc.nextID("inv_"), Email: body.EmailAddress, PublicMetadata: deepCopy(body.PublicMetadata),
		RedirectURL: body.RedirectURL, Status: "pending", CreatedAt: time.Now().UnixMilli() + fc.dir.seq,
	}
	fc.dir.invitations[inv.ID] = inv
	writeJSON(w, http.StatusOK, fc.invitationJSON(inv))
}

func (fc *FakeClerk) handleListInvitations(w http.ResponseWriter, r *http.Request) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	statuses := r.URL.Query()["status"]
	var all []*FakeInvitation
	for _, inv := range fc.dir.invitations {
		if len(statuses) == 0 || slices.Contains(statuses, inv.Status) {
			all = append(all, inv)
		}
	}
	slices.SortFunc(all, func(a, b *FakeInvitation) int {
		return cmp.Or(cmp.Compare(b.CreatedAt, a.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	invs, ok := page(w, r, all)
	if !ok {
		return
	}
	data := make([]map[string]any, 0, len(invs))
	for _, inv := range invs {
		data = append(data, fc.invitationJSON(inv))
	}
	if r.URL.Query().Get("paginated") == "true" {
		writeJSON(w, http.StatusOK, map[string]any{"data": data, "total_count": len(all)})
		return
	}
	writeJSON(w, http.StatusOK, data)
}

func (fc *FakeClerk) handleRevokeInvitation(w http.ResponseWriter, r *http.Request) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	inv, ok := fc.dir.invitations[r.PathValue("id")]
	if !ok {
		writeError(w, http.StatusNotFound, "resource_not_found", "not found")
		return
	}
	if inv.Status != "pending" {
		writeError(w, http.StatusBadRequest, "invitation_not_pending", "Only pending invitations can be revoked.")
		return
	}
	inv.Status = "revoked"
	writeJSON(w, http.StatusOK, fc.invitationJSON(inv))
}
