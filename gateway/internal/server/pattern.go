package server

import "strings"

// pattern matches a request path against a route template such as
// /api/tokens/{id}; it labels metrics without unbounded ids.
type pattern struct {
	method   string
	template string
	segments []string
}

func newPattern(method, template string) pattern {
	return pattern{method: method, template: template, segments: strings.Split(strings.Trim(template, "/"), "/")}
}

func (p pattern) match(path string) bool {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if len(segs) != len(p.segments) {
		return false
	}
	for i, s := range p.segments {
		if strings.HasPrefix(s, "{") {
			if segs[i] == "" {
				return false
			}
			continue
		}
		if s != segs[i] {
			return false
		}
	}
	return true
}
