package usage

import (
	"math"

	"github.com/tokenmanager/tokenmanager/services/usage/store"
)

// latencyBounds are the rollups' histogram bucket bounds (store.LatencyBounds).
var latencyBounds = store.LatencyBounds

// histBuckets is the length of a rollup's hist array.
const histBuckets = store.HistBuckets

// bucketOf returns the histogram bucket of a latency.
func bucketOf(ms int32) int {
	lo, hi := 0, len(latencyBounds)
	for lo < hi {
		m := (lo + hi) / 2
		if ms <= latencyBounds[m] {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

// Percentiles are latency percentiles in milliseconds.
type Percentiles struct{ P50, P95, P99 float64 }

// percentiles estimates p50/p95/p99 from a histogram; max caps the open top
// bucket. An empty histogram yields zeros.
func percentiles(hist []int64, max int32) Percentiles {
	return Percentiles{P50: quantile(hist, max, 0.50), P95: quantile(hist, max, 0.95), P99: quantile(hist, max, 0.99)}
}

func quantile(hist []int64, max int32, q float64) float64 {
	var n int64
	for _, c := range hist {
		n += c
	}
	if n == 0 {
		return 0
	}
	rank := q * float64(n)
	var cum float64
	for i, c := range hist {
		if c == 0 {
			continue
		}
		if cum+float64(c) >= rank {
			lo, hi := 0.0, float64(max)
			if i > 0 {
				lo = float64(latencyBounds[i-1])
			}
			if i < len(latencyBounds) {
				hi = math.Min(float64(latencyBounds[i]), float64(max))
			}
			if hi < lo {
				hi = lo
			}
			v := lo + (hi-lo)*(rank-cum)/float64(c)
			return math.Round(v*10) / 10
		}
		cum += float64(c)
	}
	return float64(max)
}

// addHist adds b into a (both histBuckets long, or a nil).
func addHist(a, b []int64) []int64 {
	if a == nil {
		a = make([]int64, histBuckets)
	}
	for i := range b {
		if i < len(a) {
			a[i] += b[i]
		}
	}
	return a
}
