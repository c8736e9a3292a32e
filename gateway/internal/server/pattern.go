package server

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/tokenmanager/tokenmanager/gateway"
)

// pattern is one route of the route table, as the middleware needs it: the
// template (e.g. /api/tokens/{id}) labels metrics without unbounded ids, and
// the integer parameters drive the input check (validate.go).
type pattern struct {
	method   string
	template string
	segments []string // template segments; "{name}" for a parameter
	literals int      // literal segments: the most literal match wins
	// raw routes take their body as exact bytes (the signed usage report):
	// the gateway does not look into it.
	raw      bool
	intParam map[int]intSpec // segment index → integer path parameter
	intQuery map[string]intSpec
}

// intSpec is an integer parameter: its name and bit size (negative for
// unsigned).
type intSpec struct {
	name string
	bits int
}

// newPatterns builds the table from the route table and the request messages'
// descriptors, so every route and every integer parameter is covered without
// listing them by hand.
func newPatterns(routes []gateway.Route) []pattern {
	out := make([]pattern, 0, len(routes))
	for _, r := range routes {
		p := pattern{method: r.Method, template: r.Path, segments: splitPath(r.Path), raw: r.Raw,
			intParam: map[int]intSpec{}, intQuery: map[string]intSpec{}}
		var in protoreflect.MessageDescriptor
		if d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(r.Selector)); err == nil {
			if md, ok := d.(protoreflect.MethodDescriptor); ok {
				in = md.Input()
			}
		}
		for i, s := range p.segments {
			if !strings.HasPrefix(s, "{") {
				p.literals++
				continue
			}
			name := strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
			if eq := strings.IndexByte(name, '='); eq >= 0 {
				name = name[:eq]
			}
			if bits := intFieldBits(in, name); bits > 0 {
				p.intParam[i] = intSpec{name: name, bits: bits}
			}
		}
		if in != nil && r.Body != "*" {
			collectIntQuery(in, "", p.intQuery, 0)
		}
		out = append(out, p)
	}
	return out
}

// splitPath splits a path or template into its segments.
func splitPath(path string) []string { return strings.Split(strings.Trim(path, "/"), "/") }

// matchPattern returns the route that method and the path segments select, or
// nil: literal segments must be equal, parameters non-empty, and the most
// literal route wins (/api/routes/tags over /api/routes/{id}).
func matchPattern(patterns []pattern, method string, segs []string) *pattern {
	var best *pattern
	for i := range patterns {
		p := &patterns[i]
		if p.method != method || len(p.segments) != len(segs) {
			continue
		}
		ok := true
		for j, s := range p.segments {
			if strings.HasPrefix(s, "{") && segs[j] == "" || !strings.HasPrefix(s, "{") && s != segs[j] {
				ok = false
				break
			}
		}
		if ok && (best == nil || p.literals > best.literals) {
			best = p
		}
	}
	return best
}
