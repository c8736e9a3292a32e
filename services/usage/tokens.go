package usage

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// tokenIdentity is what ingest needs to know about a token hash.
type tokenIdentity struct {
	ID   int64
	Team string
}

// tokenCache resolves token hashes through TokenService.ResolveToken and
// remembers the answers: a hash's token and team never change, so hits are
// kept for minutes; misses only for seconds (a token just created may be
// used at once). Bounded: when full, it starts over.
type tokenCache struct {
	client  tokenv1.TokenServiceClient
	hitTTL  time.Duration
	missTTL time.Duration
	max     int
	now     func() time.Time

	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	id      tokenIdentity
	found   bool
	expires time.Time
}

func newTokenCache(client tokenv1.TokenServiceClient) *tokenCache {
	return &tokenCache{client: client, hitTTL: 5 * time.Minute, missTTL: 5 * time.Second, max: 100_000,
		now: time.Now, entries: map[string]cacheEntry{}}
}

var errTokenServiceDown = errs.Unavailable("Token service unavailable; retry later")

// resolve returns the identities of hashes; found is false for unknown
// hashes. An error means the token service could not answer (Unavailable).
func (c *tokenCache) resolve(ctx context.Context, hashes []string) (map[string]tokenIdentity, map[string]bool, error) {
	ids := make(map[string]tokenIdentity, len(hashes))
	unknown := map[string]bool{}
	var missing []string
	now := c.now()
	c.mu.Lock()
	for _, h := range hashes {
		e, ok := c.entries[h]
		switch {
		case !ok || now.After(e.expires):
			missing = append(missing, h)
		case e.found:
			ids[h] = e.id
		default:
			unknown[h] = true
		}
	}
	c.mu.Unlock()
	if len(missing) == 0 {
		return ids, unknown, nil
	}
	type answer struct {
		hash  string
		entry cacheEntry
		err   error
	}
	answers := make(chan answer, len(missing))
	sem := make(chan struct{}, 8)
	for _, h := range missing {
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			resp, err := c.client.ResolveToken(ctx, &tokenv1.ResolveTokenRequest{TokenHash: h})
			switch status.Code(err) {
			case codes.OK:
				answers <- answer{h, cacheEntry{id: tokenIdentity{ID: resp.GetTokenId(), Team: resp.GetTeamId()}, found: true, expires: now.Add(c.hitTTL)}, nil}
			case codes.NotFound:
				answers <- answer{h, cacheEntry{expires: now.Add(c.missTTL)}, nil}
			default:
				answers <- answer{hash: h, err: err}
			}
		}()
	}
	var firstErr error
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries)+len(missing) > c.max {
		clear(c.entries)
	}
	for range missing {
		a := <-answers
		if a.err != nil {
			if firstErr == nil {
				firstErr = a.err
			}
			continue
		}
		c.entries[a.hash] = a.entry
		if a.entry.found {
			ids[a.hash] = a.entry.id
		} else {
			unknown[a.hash] = true
		}
	}
	if firstErr != nil {
		return nil, nil, errs.Wrap(firstErr, errs.ErrUnavailable, errTokenServiceDown.Error())
	}
	return ids, unknown, nil
}

// lastUsed collects the newest use per token hash and sends them to
// TokenService.RecordTokenUse at most once per interval, in one call per
// chunk of hashes — never one call per event. A failed send keeps its uses
// for the next round (newest wins), so the token service catches up once
// it answers.
type lastUsed struct {
	client   tokenv1.TokenServiceClient
	interval time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	pending map[string]time.Time
	failing codes.Code // last failure code logged, to log each change once
	calls   int        // RecordTokenUse calls made (for tests)
}

const lastUsedChunk = 500

func newLastUsed(client tokenv1.TokenServiceClient, interval time.Duration, log *slog.Logger) *lastUsed {
	return &lastUsed{client: client, interval: interval, log: log, pending: map[string]time.Time{}}
}

// note merges uses into the pending set.
func (l *lastUsed) note(uses map[string]time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for h, t := range uses {
		if t.After(l.pending[h]) {
			l.pending[h] = t
		}
	}
}

// run flushes every interval until ctx ends, then flushes once more.
func (l *lastUsed) run(ctx context.Context) {
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.flush(ctx)
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			l.flush(fctx)
			cancel()
			return
		}
	}
}

func (l *lastUsed) flush(ctx context.Context) {
	l.mu.Lock()
	batch := l.pending
	l.pending = map[string]time.Time{}
	l.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	uses := make([]*tokenv1.TokenUse, 0, len(batch))
	for h, t := range batch {
		uses = append(uses, &tokenv1.TokenUse{TokenHash: h, UsedAt: timestamppb.New(t)})
	}
	for len(uses) > 0 {
		n := min(len(uses), lastUsedChunk)
		chunk := uses[:n]
		uses = uses[n:]
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := l.client.RecordTokenUse(cctx, &tokenv1.RecordTokenUseRequest{Uses: chunk})
		cancel()
		l.mu.Lock()
		l.calls++
		code := status.Code(err)
		if err != nil {
			// Keep them for the next round.
			for _, u := range append(chunk, uses...) {
				if t := u.GetUsedAt().AsTime(); t.After(l.pending[u.GetTokenHash()]) {
					l.pending[u.GetTokenHash()] = t
				}
			}
			uses = nil
		}
		if code != l.failing {
			if err != nil {
				l.log.Warn("last_used not delivered to the token service; will retry", "code", code.String(), "tokens", len(batch))
			} else {
				l.log.Info("last_used delivered to the token service again")
			}
			l.failing = code
		}
		l.mu.Unlock()
	}
}
