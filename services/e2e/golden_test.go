package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// updateGolden rewrites the golden files instead of comparing against them:
// UPDATE_GOLDEN=1 go test ./e2e/
var updateGolden = os.Getenv("UPDATE_GOLDEN") != ""

// assertGolden compares a JSON response with testdata/<name>, after
// replacing the values of volatile keys (at any depth) with "<volatile>".
// Both sides are compared as canonical JSON, so key order and whitespace
// do not matter; types, keys and values do.
func assertGolden(t *testing.T, name string, body []byte, volatile []string) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: response is not JSON: %v\n%s", name, err, body)
	}
	v = mask(v, volatile)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	path := filepath.Join("testdata", name)
	if updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s: %v (run with UPDATE_GOLDEN=1 to create it)", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n got: %s\nwant: %s", name, got, want)
	}
}

func mask(v any, keys []string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, item := range x {
			masked := false
			for _, key := range keys {
				if k == key {
					x[k] = "<volatile>"
					masked = true
				}
			}
			if !masked {
				x[k] = mask(item, keys)
			}
		}
	case []any:
		for i := range x {
			x[i] = mask(x[i], keys)
		}
	}
	return v
}

// getGolden GETs path as bearer, requires 200 and compares the body with
// testdata/<name> (volatile keys masked).
func (s *stack) getGolden(t *testing.T, path, bearer, name string, volatile []string) response {
	t.Helper()
	r := s.do("GET", path, bearer, nil)
	if r.Status != 200 {
		t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
	}
	assertGolden(t, name, r.Body, volatile)
	return r
}
