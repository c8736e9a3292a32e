package grpcserver

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// metrics are the RPC counters every service exports, labelled by gRPC
// service and method so dashboards can tell RPCs apart.
type metrics struct {
	handled  *prometheus.CounterVec
	handling *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		handled: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "RPCs completed on the server, by status code.",
		}, []string{"service", "method", "code"})),
		handling: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Time the server took to complete RPCs.",
			Buckets: prometheus.DefBuckets,
		}, []string{"service", "method"})),
	}
}

// register registers c, or returns the equal collector registered before
// (several servers in one process, as in tests, share the metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start, returned := time.Now(), false
	defer func() { m.observe(info.FullMethod, code(err, returned), time.Since(start)) }()
	resp, err = handler(ctx, req)
	returned = true
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start, returned := time.Now(), false
	defer func() { m.observe(info.FullMethod, code(err, returned), time.Since(start)) }()
	err = handler(srv, ss)
	returned = true
	return err
}

func (m *metrics) observe(fullMethod string, c codes.Code, d time.Duration) {
	service, method := splitMethod(fullMethod)
	m.handled.WithLabelValues(service, method, c.String()).Inc()
	m.handling.WithLabelValues(service, method).Observe(d.Seconds())
}

// splitMethod splits "/pkg.Service/Method".
func splitMethod(full string) (service, method string) {
	service, method, ok := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	if !ok {
		return "unknown", full
	}
	return service, method
}
