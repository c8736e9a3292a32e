package usage

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	usagev1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/usage/v1"
	"github.com/tokenmanager/tokenmanager/services/internal/grpcserver"
)

// Benchmarks print each figure beside a baseline measured in the same run.
//
//	go test -run '^$' -bench . -benchtime 20000x ./usage/      (USAGE_BENCH_EVENTS=1000000 for a quick analytics run)

// latencies collects request durations from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) pct(q float64) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	i := int(q * float64(len(s)-1))
	return float64(s[i].Microseconds()) / 1000
}

// loadGen posts n single signed events to url from conc goroutines and
// returns events/s and the latencies.
func loadGen(b *testing.B, url, hash string, n, conc int, prefix string) (float64, *latencies) {
	b.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}}
	defer client.CloseIdleConnections()
	var next atomic.Int64
	lat := &latencies{d: make([]time.Duration, 0, n)}
	var failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				body := fmt.Appendf(nil, `{"event_id":"%s-%d","token_hash":"%s","route":"/api/openai","timestamp":%d,"response_status":200,"response_time_ms":%d,"ip_address":"203.0.113.7","user_agent":"bench","request_method":"POST","error_message":null}`,
					prefix, i, hash, time.Now().UnixMilli(), i%700)
				ts := strconv.FormatInt(time.Now().Unix(), 10)
				req, _ := http.NewRequest("POST", url, strings.NewReader(string(body)))
				req.Header.Set("X-TM-Timestamp", ts)
				req.Header.Set("X-TM-Signature", Sign([]byte(testSecret), ts, body))
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat.add(time.Since(t0))
				if resp.StatusCode != 200 {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if f := failed.Load(); f > 0 {
		b.Fatalf("%s: %d of %d requests failed", prefix, f, n)
	}
	return float64(n) / el.Seconds(), lat
}

func serveHTTP(b *testing.B, h http.Handler) string {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(lis) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + lis.Addr().String() + "/api/usage-log"
}

// peakMem samples the heap until stop is closed.
func peakMem(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse+ms.StackInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// vmHWM is the process's peak resident set, in MB, from /proc.
func vmHWM() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkIngestSingle posts single signed events over HTTP to an
// in-process stand-in for the gateway (net/http reading the raw body and
// calling UsageService.Ingest over loopback gRPC, as gateway/raw.go does),
// with the platform's gRPC server in front of the real service and
// PostgreSQL. Baseline: the same load generator against a bare net/http
// handler that only reads the body. b.N is the number of requests of each.
func BenchmarkIngestSingle(b *testing.B) {
	h := newHarness(b)
	hash := h.token.add(42, "bench", "core-team")

	gs := grpcserver.New(grpcserver.Options{Name: "usage"})
	usagev1.RegisterUsageServiceServer(gs.GRPC(), NewServer(h.svc))
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = gs.Serve(ctx, glis, nil) }()
	b.Cleanup(cancel)
	conn, err := grpc.NewClient(glis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	client := usagev1.NewUsageServiceClient(conn)

	gateway := serveHTTP(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			http.Error(w, `{"detail":"bad body"}`, 400)
			return
		}
		resp, err := client.Ingest(r.Context(), &usagev1.IngestRequest{Body: body, Signature: r.Header.Get("X-TM-Signature"), SignatureTimestamp: r.Header.Get("X-TM-Timestamp")})
		if err != nil {
			w.WriteHeader(503)
			_ = json.NewEncoder(w).Encode(map[string]string{"detail": status.Convert(err).Message()})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"status": resp.GetStatus(), "accepted": resp.GetAccepted(), "duplicates": resp.GetDuplicates()})
	}))
	bare := serveHTTP(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte(`{"status":"logged","accepted":1,"duplicates":0}`))
	}))

	const conc = 64
	n := b.N
	b.ResetTimer()
	baseRate, baseLat := loadGen(b, bare, hash, n, conc, fmt.Sprint("bare", n))
	runtime.GC()
	stop := make(chan struct{})
	peak := peakMem(stop)
	rate, lat := loadGen(b, gateway, hash, n, conc, fmt.Sprint("ingest", n))
	close(stop)
	b.StopTimer()
	var stored int64
	_ = h.pool.QueryRow(context.Background(), "SELECT count(*) FROM usage.events WHERE event_id LIKE $1", fmt.Sprint("ingest", n, "-%")).Scan(&stored)
	if stored != int64(n) {
		b.Fatalf("%d stored of %d acknowledged", stored, n)
	}
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(lat.pct(0.50), "p50_ms")
	b.ReportMetric(lat.pct(0.99), "p99_ms")
	b.ReportMetric(baseRate, "bare_events/s")
	b.ReportMetric(baseLat.pct(0.50), "bare_p50_ms")
	b.ReportMetric(baseLat.pct(0.99), "bare_p99_ms")
	b.ReportMetric(100*rate/baseRate, "%_of_bare")
	b.ReportMetric(float64(<-peak)/(1<<20), "peak_heap_MB")
	b.ReportMetric(vmHWM(), "peak_rss_MB")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkIngestBatch500 posts signed batches of 500 events through the
// service's whole ingest path (signature, decode, token check, the single
// writer, INSERT … ON CONFLICT and both rollups in one transaction).
// Baseline: raw pgx CopyFrom of equivalent rows into the same table (same
// indexes, no dedup, no rollups). b.N is the number of batches of each.
func BenchmarkIngestBatch500(b *testing.B) {
	h := newHarness(b)
	hashes := []string{h.token.add(1, "a", "core-team"), h.token.add(2, "b", "core-team"), h.token.add(3, "c", "backend-team")}
	routes := []string{"/api/openai", "/api/images", "/api/x", "/api/y"}
	ctx := context.Background()
	now := time.Now()
	if err := ensurePartition(ctx, h.pool, now); err != nil {
		b.Fatal(err)
	}
	body := func(batch int) []byte {
		var sb strings.Builder
		sb.WriteString(`{"events":[`)
		for i := range 500 {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"event_id":"b%d-%d","token_hash":"%s","route":"%s","timestamp":%d,"response_status":%d,"response_time_ms":%d,"ip_address":"203.0.113.7","user_agent":"bench","request_method":"POST"}`,
				batch, i, hashes[i%3], routes[i%4], now.UnixMilli()-int64(i), 200+(i%4)*100, (i*37)%900)
		}
		sb.WriteString("]}")
		return []byte(sb.String())
	}
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = body(i)
	}
	cols := []string{"event_id", "used_at", "token_hash", "token_id", "team_id", "route_path", "response_status", "response_time_ms", "ip_address", "user_agent", "request_method"}
	copyRows := func(batch int) [][]any {
		rows := make([][]any, 500)
		for i := range rows {
			rows[i] = []any{fmt.Sprintf("c%d-%d", batch, i), now.Add(-time.Duration(i) * time.Millisecond), hashes[i%3], int64(i%3 + 1), "core-team",
				routes[i%4], int32(200 + (i%4)*100), int32((i * 37) % 900), "203.0.113.7", "bench", "POST"}
		}
		return rows
	}
	b.ResetTimer()
	t0 := time.Now()
	for i := range b.N {
		if _, err := h.pool.CopyFrom(ctx, pgx.Identifier{"usage", "events"}, cols, pgx.CopyFromRows(copyRows(i))); err != nil {
			b.Fatal(err)
		}
	}
	copyRate := float64(500*b.N) / time.Since(t0).Seconds()
	t0 = time.Now()
	for i := range b.N {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		acc, _, err := h.svc.Ingest(ctx, bodies[i], Sign([]byte(testSecret), ts, bodies[i]), ts)
		if err != nil || acc != 500 {
			b.Fatalf("%d, %v", acc, err)
		}
	}
	rate := float64(500*b.N) / time.Since(t0).Seconds()
	b.StopTimer()
	b.ReportMetric(rate, "rows/s")
	b.ReportMetric(copyRate, "copyfrom_rows/s")
	b.ReportMetric(100*rate/copyRate, "%_of_copyfrom")
	b.ReportMetric(0, "ns/op")
}
