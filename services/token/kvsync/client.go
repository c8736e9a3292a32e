// Package kvsync keeps Cloudflare Workers KV equal to what PostgreSQL says
// it should hold. Writers enqueue only the KV key they changed (outbox,
// same transaction); Syncer.Handle, the outbox handler, reads each key's
// wanted value from PostgreSQL at send time and writes or deletes it with
// cloudflare-go. Because a message carries no value, a late, repeated or
// reordered message can only ever write the current truth, and a revocation
// is a delete that is retried until Cloudflare confirms it.
//
// All calls to Cloudflare share a Gate: on HTTP 429 every call pauses
// until Retry-After has passed. The shared "routes" key is coalesced:
// written at most once per RoutesInterval, always with the newest snapshot.
// A reconciler lists the namespace, compares it with PostgreSQL (values are
// fingerprinted in KV metadata, so no value needs to be read back) and
// enqueues a sync for every key that differs, both ways. It touches only the
// keys the Source owns and never copies KV into PostgreSQL.
package kvsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cloudflare/cloudflare-go"
)

// Config is how to reach the namespace.
type Config struct {
	AccountID, APIToken, NamespaceID, BaseURL string
	// RateLimit is the client-side request rate (requests/second); Cloudflare's
	// API allows 1200 per 5 minutes, i.e. 4.
	RateLimit float64
	// Timeout bounds each HTTP call.
	Timeout time.Duration
}

// Gate pauses every Cloudflare call while the API asked us to (429).
type Gate struct {
	mu     sync.Mutex
	until  time.Time
	pauses int64
}

// Wait blocks until calls are allowed again or ctx ends.
func (g *Gate) Wait(ctx context.Context) error {
	for {
		d := g.Remaining()
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Remaining is how long calls stay paused.
func (g *Gate) Remaining() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return time.Until(g.until)
}

// Pause stops calls for d (extending, never shortening, a pause).
func (g *Gate) Pause(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if u := time.Now().Add(d); u.After(g.until) {
		g.until = u
	}
	g.pauses++
}

// Pauses counts the 429 answers seen.
func (g *Gate) Pauses() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pauses
}

// gateTransport waits at the gate before each request, pauses it on 429,
// and buffers error bodies: cloudflare-go does not close the body of a 429
// or 5xx answer when it does not retry, which would leak the connection.
type gateTransport struct {
	gate *Gate
	next http.RoundTripper
}

const (
	defaultRetryAfter = time.Second
	maxRetryAfter     = 5 * time.Minute
)

func (t gateTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.gate.Wait(req.Context()); err != nil {
		return nil, err
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		t.gate.Pause(retryAfter(resp.Header.Get("Retry-After")))
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	return resp, nil
}

// retryAfter parses Retry-After (seconds or an HTTP date), bounded.
func retryAfter(v string) time.Duration {
	d := defaultRetryAfter
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = time.Until(t)
	}
	return min(max(d, 100*time.Millisecond), maxRetryAfter)
}

// Client is the namespace, through cloudflare-go.
type Client struct {
	api  *cloudflare.API
	rc   *cloudflare.ResourceContainer
	ns   string
	Gate *Gate
}

// NewClient builds a client. cloudflare-go's own retries are off: the
// outbox retries, with backoff, and the Gate handles 429.
func NewClient(cfg Config) (*Client, error) {
	gate := &Gate{}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	rate := cfg.RateLimit
	if rate <= 0 {
		rate = 4
	}
	httpClient := &http.Client{Timeout: timeout, Transport: gateTransport{gate: gate, next: http.DefaultTransport.(*http.Transport).Clone()}}
	api, err := cloudflare.NewWithAPIToken(cfg.APIToken, cloudflare.BaseURL(cfg.BaseURL),
		cloudflare.UsingRetryPolicy(0, 0, 0), cloudflare.UsingRateLimit(rate), cloudflare.HTTPClient(httpClient))
	if err != nil {
		return nil, fmt.Errorf("kvsync: cloudflare client: %w", err)
	}
	return &Client{api: api, rc: cloudflare.AccountIdentifier(cfg.AccountID), ns: cfg.NamespaceID, Gate: gate}, nil
}

// Pair is a value to write, with its fingerprint (stored as metadata).
type Pair struct {
	Key, Fingerprint string
	Value            []byte
}

// maxBulk is Cloudflare's limit of pairs or keys per bulk call.
const maxBulk = 10000

// Put writes pairs with bulk writes.
func (c *Client) Put(ctx context.Context, pairs []Pair) error {
	for len(pairs) > 0 {
		if err := c.Gate.Wait(ctx); err != nil {
			return err
		}
		n := min(len(pairs), maxBulk)
		kvs := make([]*cloudflare.WorkersKVPair, n)
		for i, p := range pairs[:n] {
			kvs[i] = &cloudflare.WorkersKVPair{Key: p.Key, Value: string(p.Value), Metadata: map[string]string{"fp": p.Fingerprint}}
		}
		if _, err := c.api.WriteWorkersKVEntries(ctx, c.rc, cloudflare.WriteWorkersKVEntriesParams{NamespaceID: c.ns, KVs: kvs}); err != nil {
			return c.classify("bulk write", err)
		}
		pairs = pairs[n:]
	}
	return nil
}

// Delete deletes keys with bulk deletes (missing keys are fine).
func (c *Client) Delete(ctx context.Context, keys []string) error {
	for len(keys) > 0 {
		if err := c.Gate.Wait(ctx); err != nil {
			return err
		}
		n := min(len(keys), maxBulk)
		if _, err := c.api.DeleteWorkersKVEntries(ctx, c.rc, cloudflare.DeleteWorkersKVEntriesParams{NamespaceID: c.ns, Keys: keys[:n]}); err != nil {
			return c.classify("bulk delete", err)
		}
		keys = keys[n:]
	}
	return nil
}

// Listed is a key in the namespace with the fingerprint it was written with.
type Listed struct {
	Name, Fingerprint string
}

// List lists the whole namespace, following cursors.
func (c *Client) List(ctx context.Context) ([]Listed, error) {
	var out []Listed
	cursor := ""
	for {
		// Wait here, not only in the transport, so the pause does not eat
		// into the HTTP client's timeout.
		if err := c.Gate.Wait(ctx); err != nil {
			return nil, err
		}
		resp, err := c.api.ListWorkersKVKeys(ctx, c.rc, cloudflare.ListWorkersKVsParams{NamespaceID: c.ns, Limit: 1000, Cursor: cursor})
		if err != nil {
			return nil, c.classify("list keys", err)
		}
		for _, k := range resp.Result {
			l := Listed{Name: k.Name}
			if m, ok := k.Metadata.(map[string]any); ok {
				l.Fingerprint, _ = m["fp"].(string)
			}
			out = append(out, l)
		}
		if resp.ResultInfo.Cursor == "" || len(resp.Result) == 0 {
			return out, nil
		}
		cursor = resp.ResultInfo.Cursor
	}
}

// ErrRateLimited marks a call refused with 429; the Gate is paused.
var ErrRateLimited = errors.New("cloudflare: rate limited")

func (c *Client) classify(op string, err error) error {
	if c.Gate.Remaining() > 0 {
		return fmt.Errorf("%s: %w", op, ErrRateLimited)
	}
	return fmt.Errorf("%s: %w", op, err)
}
