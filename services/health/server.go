package health

import (
	"context"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	healthv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/health/v1"
)

// ServiceName and Version are what /health and /health/detailed report.
const (
	ServiceName = "token-manager"
	Version     = "3.0.0"
)

// checkTimeout bounds each check, so one hung dependency cannot stall the
// page (the dashboard polls every 30 s).
const checkTimeout = 3 * time.Second

// Server is the HealthService.
type Server struct {
	healthv1.UnimplementedHealthServiceServer
	checks map[string]Check
	now    func() time.Time
}

// NewServer returns a HealthService running checks (by report key:
// "database", "cloudflare_kv", "clerk", "<name>_service").
func NewServer(checks map[string]Check) *Server {
	return &Server{checks: checks, now: time.Now}
}

// Check is liveness: it consults nothing.
func (s *Server) Check(context.Context, *healthv1.CheckRequest) (*healthv1.CheckResponse, error) {
	return &healthv1.CheckResponse{Status: StatusHealthy, Service: ServiceName, Version: Version}, nil
}

// GetDetailedHealth runs every check concurrently and folds them into one
// status with the rules of the package comment.
func (s *Server) GetDetailedHealth(ctx context.Context, _ *healthv1.GetDetailedHealthRequest) (*healthv1.GetDetailedHealthResponse, error) {
	results := s.run(ctx)
	resp := &healthv1.GetDetailedHealthResponse{
		Status:    Overall(results),
		Service:   ServiceName,
		Version:   Version,
		Timestamp: timestamppb.New(s.now()),
		Checks:    make(map[string]*healthv1.DependencyCheck, len(results)),
	}
	for name, r := range results {
		resp.Checks[name] = &healthv1.DependencyCheck{
			Status:    r.Status,
			Message:   r.Message,
			LatencyMs: r.Latency.Milliseconds(),
			Details:   r.Details,
		}
	}
	return resp, nil
}

func (s *Server) run(ctx context.Context) map[string]Result {
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		results = make(map[string]Result, len(s.checks))
	)
	for name, check := range s.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			start := time.Now()
			r := check(cctx)
			r.Latency = time.Since(start)
			mu.Lock()
			results[name] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	return results
}

// Overall folds check results into healthy, degraded or unhealthy.
func Overall(results map[string]Result) string {
	bad := func(r Result) bool { return r.Status == StatusUnhealthy || r.Status == StatusWarning }
	if db, ok := results["database"]; ok && bad(db) {
		return "unhealthy"
	}
	services, serving := 0, 0
	degraded := false
	for name, r := range results {
		if strings.HasSuffix(name, "_service") {
			services++
			if r.Status == StatusHealthy {
				serving++
			}
		}
		if bad(r) {
			degraded = true
		}
	}
	if services > 0 && serving == 0 {
		return "unhealthy"
	}
	if degraded {
		return "degraded"
	}
	return StatusHealthy
}
