package kvsync

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/cftest"
)

func newClient(t *testing.T) (*Client, *cftest.Server) {
	fake := cftest.New(t)
	c, err := NewClient(Config{AccountID: cftest.AccountID, APIToken: cftest.APIToken, NamespaceID: cftest.NamespaceID,
		BaseURL: fake.BaseURL(), RateLimit: 1000, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c, fake
}

func TestClientAgainstFake(t *testing.T) {
	ctx := context.Background()
	c, fake := newClient(t)
	// Keys with characters that need escaping.
	keys := []string{"secret:A_B", "token:ab/cd?x#y", "routes", "sp ace"}
	var pairs []Pair
	for _, k := range keys {
		pairs = append(pairs, Pair{Key: k, Value: []byte(`{"k":"` + k + `"}`), Fingerprint: "fp-" + k})
	}
	if err := c.Put(ctx, pairs); err != nil {
		t.Fatal(err)
	}
	for i := range 2500 { // more than two pages
		fake.Put("bulk:"+string(rune('a'+i%26))+time.Duration(i).String(), []byte("x"))
	}
	listed, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2504 {
		t.Fatalf("listed %d keys", len(listed))
	}
	fps := map[string]string{}
	for _, l := range listed {
		fps[l.Name] = l.Fingerprint
	}
	for _, k := range keys {
		if fps[k] != "fp-"+k {
			t.Errorf("fingerprint of %q = %q", k, fps[k])
		}
	}
	if err := c.Delete(ctx, []string{"token:ab/cd?x#y", "missing"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := fake.KV()["token:ab/cd?x#y"]; ok {
		t.Fatal("not deleted")
	}
}

func TestClientRateLimitPausesEveryCall(t *testing.T) {
	ctx := context.Background()
	c, fake := newClient(t)
	first := true
	fake.SetFaults(func(cftest.Request) cftest.Fault {
		if first {
			first = false
			return cftest.Fault{Kind: cftest.RateLimit, RetryAfter: 1}
		}
		return cftest.Fault{}
	})
	err := c.Put(ctx, []Pair{{Key: "a", Value: []byte("1")}})
	if !errors.Is(err, ErrRateLimited) {
		t.Fatalf("err = %v", err)
	}
	if c.Gate.Pauses() != 1 || c.Gate.Remaining() < 500*time.Millisecond {
		t.Fatalf("gate: pauses %d, remaining %v", c.Gate.Pauses(), c.Gate.Remaining())
	}
	start := time.Now()
	if err := c.Delete(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Fatalf("a call went out %v after a 429 with Retry-After: 1", waited)
	}
}

func TestClientAuthFailure(t *testing.T) {
	c, fake := newClient(t)
	fake.Token = "other"
	if err := c.Put(context.Background(), []Pair{{Key: "a", Value: []byte("1")}}); err == nil {
		t.Fatal("accepted a wrong API token")
	}
}
