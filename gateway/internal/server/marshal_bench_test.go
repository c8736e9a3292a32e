package server

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	tokenv1 "github.com/tokenmanager/tokenmanager/proto/tokenmanager/token/v1"
)

// listOf10k is a ListTokens response of 10,000 tokens, shaped like the real ones.
func listOf10k() []*tokenv1.Token {
	now := time.Now()
	out := make([]*tokenv1.Token, 10000)
	for i := range out {
		out[i] = &tokenv1.Token{
			Id: int64(i + 1), Name: fmt.Sprintf("tok-%d", i), TeamId: wrapperspb.String("backend-team"),
			CreatedBy: wrapperspb.String("user_2abc"), TokenPreview: wrapperspb.String("ntk_Q3v9...y5VwXk"),
			Scopes: []string{"*"}, CreatedAt: timestamppb.New(now), Status: "active",
		}
	}
	return out
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(p*float64(len(s)-1))]
}

// BenchmarkMarshalTokens10k: the gateway's contract marshaler (protojson,
// then int64 strings rewritten as numbers) on a 10,000-token list, beside
// plain protojson of the same list (the floor: what grpc-gateway's default
// marshaler costs).
func BenchmarkMarshalTokens10k(b *testing.B) {
	tokens := listOf10k()
	m := newContractMarshaler()
	plain := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}
	resp := &tokenv1.ListTokensResponse{Tokens: tokens}
	var ours, base []time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := m.Marshal(tokens); err != nil {
			b.Fatal(err)
		}
		ours = append(ours, time.Since(start))
		start = time.Now()
		if _, err := plain.Marshal(resp); err != nil {
			b.Fatal(err)
		}
		base = append(base, time.Since(start))
	}
	b.ReportMetric(float64(pct(ours, 0.5).Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(pct(ours, 0.99).Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(pct(base, 0.5).Microseconds())/1000, "protojson_p50_ms")
	b.ReportMetric(float64(pct(base, 0.99).Microseconds())/1000, "protojson_p99_ms")
	b.ReportMetric(float64(pct(ours, 0.5))/float64(pct(base, 0.5)), "p50_ratio")
}
