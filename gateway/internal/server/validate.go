package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxJSONDepth bounds how deeply a JSON request body may nest objects and
// arrays. The contract's deepest body (a route's backend_auth_config) needs a
// handful of levels; thousands of levels only cost the services stack and time.
const maxJSONDepth = 64

// intFieldBits resolves a dotted field path in md and returns the bit size of
// the integer it names (0: not an integer, or unknown).
func intFieldBits(md protoreflect.MessageDescriptor, path string) int {
	parts := strings.Split(path, ".")
	for i, p := range parts {
		if md == nil {
			return 0
		}
		f := md.Fields().ByName(protoreflect.Name(p))
		if f == nil {
			return 0
		}
		if i < len(parts)-1 {
			md = f.Message()
			continue
		}
		return kindBits(f)
	}
	return 0
}

func kindBits(f protoreflect.FieldDescriptor) int {
	if f.IsMap() {
		return 0
	}
	switch f.Kind() {
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return 64
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return 32
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return -64
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return -32
	case protoreflect.MessageKind:
		switch f.Message().FullName() {
		case "google.protobuf.Int64Value":
			return 64
		case "google.protobuf.Int32Value":
			return 32
		case "google.protobuf.UInt64Value":
			return -64
		case "google.protobuf.UInt32Value":
			return -32
		}
	}
	return 0
}

// collectIntQuery records the query parameter names (dotted field paths, as
// grpc-gateway accepts them) of integer fields.
func collectIntQuery(md protoreflect.MessageDescriptor, prefix string, into map[string]intSpec, depth int) {
	if depth > 4 {
		return
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		name := prefix + string(f.Name())
		if b := kindBits(f); b != 0 {
			into[name] = intSpec{name: name, bits: b}
			if jn := prefix + f.JSONName(); jn != name {
				into[jn] = intSpec{name: jn, bits: b}
			}
			continue
		}
		if f.Kind() == protoreflect.MessageKind && !f.IsList() && !f.IsMap() && !wellKnownOpaque(f.Message().FullName()) {
			collectIntQuery(f.Message(), name+".", into, depth+1)
		}
	}
}

// strictInt reports whether v is an integer written plainly in decimal: an
// optional minus sign, no leading zeros, no "+", "0x", "_", spaces, and in
// range. grpc-gateway parses integers with strconv base 0, so "0x1" or "010"
// would otherwise name token 1 or token 8.
func strictInt(v string, bits int) bool {
	digits := strings.TrimPrefix(v, "-")
	if digits == "" || (bits < 0 && digits != v) {
		return false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	if len(digits) > 1 && digits[0] == '0' || v == "-0" {
		return false
	}
	if bits < 0 {
		_, err := strconv.ParseUint(v, 10, -bits)
		return err == nil
	}
	_, err := strconv.ParseInt(v, 10, bits)
	return err == nil
}

// badText says what is wrong with a text value ("" when nothing is).
func badText(v string) string {
	if !utf8.ValidString(v) {
		return "is not valid UTF-8"
	}
	if strings.IndexByte(v, 0) >= 0 {
		return "contains a NUL character"
	}
	return ""
}

// printableName is name when it is short, printable ASCII and so safe to
// repeat in an error message; "" otherwise.
func printableName(name string) string {
	if name == "" || len(name) > 64 {
		return ""
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return ""
		}
	}
	return name
}

// checkInput refuses, with 400 and {"detail": ...}, what the services cannot
// store or would misread: NUL or invalid UTF-8 in path segments, query
// parameters and JSON bodies (\u0000 and lone-surrogate escapes included),
// JSON nested deeper than maxJSONDepth, and integer path and query parameters
// not written in plain decimal. It is the one place hostile input is stopped,
// before any RPC; messages name the part that was bad, never its value.
func (s *Server) checkInput(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route, detail := s.inputProblem(r)
		if detail != "" {
			writeError(w, http.StatusBadRequest, detail)
			return
		}
		if r.Body != nil && r.Body != http.NoBody && (route == nil || !route.raw) {
			body, ok := readBody(w, r)
			_ = r.Body.Close()
			if !ok {
				return
			}
			if detail := jsonBodyProblem(body); detail != "" {
				writeError(w, http.StatusBadRequest, detail)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r)
	})
}

// inputProblem checks the path and the query string, and returns the route
// the path selects (nil for none).
func (s *Server) inputProblem(r *http.Request) (*pattern, string) {
	raw := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/")
	segs := make([]string, len(raw))
	for i, e := range raw {
		v, err := url.PathUnescape(e)
		if err != nil {
			return nil, "Invalid URL path: bad percent-encoding"
		}
		if why := badText(v); why != "" {
			return nil, fmt.Sprintf("Invalid URL path: segment %d %s", i+1, why)
		}
		segs[i] = v
	}
	route := matchPattern(s.patterns, r.Method, segs)
	if route != nil {
		for i, spec := range route.intParam {
			if !strictInt(segs[i], spec.bits) {
				return route, fmt.Sprintf("Invalid path parameter %q must be a decimal integer", spec.name)
			}
		}
	}
	if r.URL.RawQuery == "" {
		return route, ""
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return route, "Invalid query string: bad percent-encoding"
	}
	for k, vs := range q {
		if why := badText(k); why != "" {
			return route, "Invalid query string: a parameter name " + why
		}
		name := printableName(k)
		for _, v := range vs {
			if why := badText(v); why != "" {
				if name == "" {
					return route, "Invalid query string: a parameter value " + why
				}
				return route, fmt.Sprintf("Invalid query parameter %q %s", name, why)
			}
			if route == nil {
				continue
			}
			if spec, ok := route.intQuery[k]; ok && v != "" && !strictInt(v, spec.bits) {
				return route, fmt.Sprintf("Invalid query parameter %q must be a decimal integer", spec.name)
			}
		}
	}
	return route, ""
}

// jsonBodyProblem scans a JSON body for what must not reach the services:
// invalid UTF-8 or NUL anywhere (raw, or escaped as \u0000 or as a lone
// surrogate), and nesting deeper than maxJSONDepth. Syntax errors are left to
// the decoder, which answers them with 400 itself. The message names the
// field (its JSON path) when it can.
func jsonBodyProblem(body []byte) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return ""
	}
	if !utf8.Valid(body) {
		if p := jsonScan(body); p != "" {
			return p
		}
		return "Invalid JSON body: not valid UTF-8"
	}
	if p := jsonScan(body); p != "" {
		return p
	}
	if bytes.IndexByte(body, 0) >= 0 {
		return "Invalid JSON body: contains a NUL character"
	}
	return ""
}

// jsonFrame is one open object or array while scanning.
type jsonFrame struct {
	array bool
	index int    // element index in an array
	key   string // current key in an object ("" when not printable)
}

func jsonScan(b []byte) string {
	var stack []jsonFrame
	expectKey := false // the next string in the current object is a key
	where := func() string {
		var sb strings.Builder
		for _, f := range stack {
			switch {
			case f.array:
				fmt.Fprintf(&sb, "[%d]", f.index)
			case f.key == "":
				if sb.Len() > 0 {
					sb.WriteByte('.')
				}
				sb.WriteString("?")
			default:
				if sb.Len() > 0 {
					sb.WriteByte('.')
				}
				sb.WriteString(f.key)
			}
			if sb.Len() > 200 {
				break
			}
		}
		if sb.Len() == 0 || sb.Len() > 200 {
			return ""
		}
		return sb.String()
	}
	fail := func(isKey bool, why string) string {
		loc := where()
		switch {
		case isKey && loc != "":
			return fmt.Sprintf("Invalid JSON body: a field name inside %q %s", loc, why)
		case isKey:
			return "Invalid JSON body: a field name " + why
		case loc != "":
			return fmt.Sprintf("Invalid JSON body: field %q %s", loc, why)
		}
		return "Invalid JSON body: a value " + why
	}
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '{', '[':
			if len(stack) >= maxJSONDepth {
				return fmt.Sprintf("Invalid JSON body: nested deeper than %d levels", maxJSONDepth)
			}
			stack = append(stack, jsonFrame{array: c == '['})
			expectKey = c == '{'
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			expectKey = false
		case ',':
			if n := len(stack); n > 0 {
				if stack[n-1].array {
					stack[n-1].index++
				} else {
					expectKey = true
				}
			}
		case '"':
			isKey := expectKey
			val, end, why := scanString(b, i)
			if why != "" {
				if isKey {
					// The key itself is bad: report where its object is.
					return fail(true, why)
				}
				return fail(false, why)
			}
			i = end
			if isKey {
				stack[len(stack)-1].key = printableName(val)
				expectKey = false
			}
		case 0:
			return "Invalid JSON body: contains a NUL character"
		}
	}
	return ""
}

// scanString reads the JSON string starting at b[start] (the quote) and
// returns its decoded value (keys only need it; values are decoded too, it is
// cheap), the index of the closing quote, and what is wrong with it. An
// unterminated string ends the scan; the decoder reports the syntax error.
func scanString(b []byte, start int) (string, int, string) {
	var sb strings.Builder
	i := start + 1
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return sb.String(), i, ""
		case c == 0:
			return "", i, "contains a NUL character"
		case c == '\\':
			if i+1 >= len(b) {
				return sb.String(), len(b), ""
			}
			if b[i+1] != 'u' {
				sb.WriteByte(b[i+1])
				i += 2
				continue
			}
			r, ok := hex4(b, i+2)
			if !ok {
				return sb.String(), len(b), "" // syntax error: left to the decoder
			}
			i += 6
			switch {
			case r == 0:
				return "", i, "contains a NUL character"
			case utf16.IsSurrogate(r):
				r2, ok := rune(0), false
				if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
					r2, ok = hex4(b, i+2)
				}
				if !ok || r > 0xdbff || r2 < 0xdc00 || r2 > 0xdfff {
					return "", i, "is not valid UTF-8 (unpaired surrogate escape)"
				}
				sb.WriteRune(utf16.DecodeRune(r, r2))
				i += 6
			default:
				sb.WriteRune(r)
			}
		case c < 0x80:
			sb.WriteByte(c)
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				return "", i, "is not valid UTF-8"
			}
			sb.WriteRune(r)
			i += n
		}
	}
	return sb.String(), len(b), ""
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[at:at+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	return rune(v), true
}
