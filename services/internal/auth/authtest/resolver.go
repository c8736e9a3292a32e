package authtest

import (
	"context"
	"sync"

	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// Resolver is an in-memory auth.Resolver. The zero value is empty and
// ready to use; it is safe for concurrent use.
type Resolver struct {
	mu    sync.Mutex
	users map[string]*auth.Principal // by Clerk user id
	keys  map[string]*auth.Principal // by key hash
}

var _ auth.Resolver = (*Resolver)(nil)

// AddUser makes p resolvable as the user p.ID.
func (r *Resolver) AddUser(p *auth.Principal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.users == nil {
		r.users = make(map[string]*auth.Principal)
	}
	p.Kind = auth.KindUser
	r.users[p.ID] = p
}

// AddAdminKey mints a new admin key that resolves to p and returns it in
// plaintext.
func (r *Resolver) AddAdminKey(p *auth.Principal) string {
	key := auth.NewAdminKey()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		r.keys = make(map[string]*auth.Principal)
	}
	p.Kind = auth.KindAdminKey
	r.keys[auth.HashKey(key)] = p
	return key
}

// RevokeAdminKey makes key unknown again.
func (r *Resolver) RevokeAdminKey(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.keys, auth.HashKey(key))
}

// ResolveUser implements auth.Resolver.
func (r *Resolver) ResolveUser(_ context.Context, userID string) (*auth.Principal, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.users[userID]; ok {
		return p, nil
	}
	return nil, errs.NotFound("user not found")
}

// ResolveAdminKey implements auth.Resolver.
func (r *Resolver) ResolveAdminKey(_ context.Context, keyHash string) (*auth.Principal, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.keys[keyHash]; ok {
		return p, nil
	}
	return nil, errs.NotFound("admin key not found")
}
