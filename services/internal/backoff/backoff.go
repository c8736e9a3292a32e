// Package backoff is the one retry delay of the services: exponential,
// capped and jittered, used by the outbox relays, transaction retries and
// connection loops alike.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is exponential backoff from Min to Max.
type Policy struct {
	Min, Max time.Duration
}

// Delay is the wait after the n-th consecutive failure (n ≥ 1): Min doubled
// per earlier failure, capped at Max, then jittered down by up to half, so
// that callers failing together do not retry together. Max 0 means an
// hour.
func (p Policy) Delay(n int) time.Duration {
	ceiling := p.Max
	if ceiling <= 0 {
		ceiling = time.Hour
	}
	d := p.Min
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

// Wait sleeps Delay(n), or until ctx ends; it reports whether the full
// delay passed.
func (p Policy) Wait(ctx context.Context, n int) bool {
	t := time.NewTimer(p.Delay(n))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
