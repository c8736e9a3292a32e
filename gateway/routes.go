// Package gateway holds the REST facade's route table: the HTTP rule file
// that code generation reads (http_rules.yaml), plus the few routes served by
// hand-written handlers. Tests use it to prove that every endpoint is covered.
package gateway

import (
	_ "embed"
	"fmt"
	"sort"

	"go.yaml.in/yaml/v3"
)

//go:embed http_rules.yaml
var httpRules []byte

// Route is one REST endpoint.
type Route struct {
	Method string // GET, POST, PUT, DELETE
	Path   string // template, e.g. /api/tokens/{id}
	// Selector is the RPC behind the route, e.g. tokenmanager.token.v1.TokenService.ListTokens.
	Selector string
	// Body and ResponseBody are the rule's body and response_body ("" when unset).
	Body, ResponseBody string
	// Raw is true for routes served by a hand-written handler instead of generated code.
	Raw bool
}

// RawRoutes are the contract paths that are not JSON in, JSON out, served by
// hand-written handlers that still call the services over gRPC.
var RawRoutes = []Route{
	{Method: "POST", Path: "/api/usage-log", Selector: "tokenmanager.usage.v1.UsageService.Ingest", Raw: true},
	{Method: "GET", Path: "/api/dashboard/audit-logs/export", Selector: "tokenmanager.audit.v1.AuditService.ExportAuditLogs", Raw: true},
}

type ruleFile struct {
	HTTP struct {
		Rules []struct {
			Selector     string `yaml:"selector"`
			Get          string `yaml:"get"`
			Post         string `yaml:"post"`
			Put          string `yaml:"put"`
			Delete       string `yaml:"delete"`
			Patch        string `yaml:"patch"`
			Body         string `yaml:"body"`
			ResponseBody string `yaml:"response_body"`
		} `yaml:"rules"`
	} `yaml:"http"`
}

// Routes returns every REST endpoint the gateway serves through an RPC,
// sorted by path then method.
func Routes() ([]Route, error) {
	var f ruleFile
	if err := yaml.Unmarshal(httpRules, &f); err != nil {
		return nil, fmt.Errorf("parse http_rules.yaml: %w", err)
	}
	var out []Route
	for _, r := range f.HTTP.Rules {
		method, path := "", ""
		for m, p := range map[string]string{"GET": r.Get, "POST": r.Post, "PUT": r.Put, "DELETE": r.Delete, "PATCH": r.Patch} {
			if p != "" {
				method, path = m, p
			}
		}
		if method == "" {
			return nil, fmt.Errorf("http_rules.yaml: rule %s has no method", r.Selector)
		}
		out = append(out, Route{Method: method, Path: path, Selector: r.Selector, Body: r.Body, ResponseBody: r.ResponseBody})
	}
	out = append(out, RawRoutes...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out, nil
}
