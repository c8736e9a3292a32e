package gateway

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

// routeTableFile is the route table as JSON, for the tests of modules that
// may not import this one (the services' end-to-end tests read it to cover
// every endpoint): this test writes it with UPDATE_GOLDEN=1 and fails when
// the committed file differs from Routes().
const routeTableFile = "testdata/routes.json"

func TestRouteTableFile(t *testing.T) {
	routes, err := Routes()
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		Method   string `json:"method"`
		Path     string `json:"path"`
		Selector string `json:"selector"`
		Raw      bool   `json:"raw,omitempty"`
	}
	list := make([]entry, len(routes))
	for i, r := range routes {
		list[i] = entry{r.Method, r.Path, r.Selector, r.Raw}
	}
	want, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(routeTableFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(routeTableFile)
	if err != nil {
		t.Fatalf("%v (run UPDATE_GOLDEN=1 go test . in gateway/)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not the route table: run UPDATE_GOLDEN=1 go test . in gateway/ and commit it", routeTableFile)
	}
}
