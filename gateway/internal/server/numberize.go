package server

import (
	"bytes"
	"sync"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// numberize rewrites protojson output so that 64-bit integers are JSON
// numbers: one pass over the bytes, guided by the message descriptor, copying
// everything else as it is (minus insignificant whitespace, which protojson
// varies on purpose). Only the values of 64-bit fields change: a string that
// merely looks like a number elsewhere — in a Struct, a string field, a
// map<string, string> — stays a string.
//
// It replaced decoding the whole response into map[string]any and encoding it
// again, which cost three times as much as protojson itself on a 10,000-token
// list (BenchmarkMarshalTokens10k).
//
// The result is appended to dst (nil: a new buffer).
func numberize(dst, in []byte, want shape) (out []byte, err error) {
	if dst == nil {
		dst = make([]byte, 0, len(in))
	}
	r := rewriter{in: in, out: dst}
	defer func() {
		if p := recover(); p != nil {
			e, ok := p.(rewriteError)
			if !ok {
				panic(p)
			}
			out, err = nil, e
		}
	}()
	r.value(want)
	r.ws()
	if r.pos != len(r.in) {
		r.fail("data after the value")
	}
	return r.out, nil
}

// shape is what a JSON value holds, according to the descriptor.
type shape struct {
	list  bool     // an array of elements shaped by the rest
	mapv  bool     // an object (map field) of values shaped by the rest
	int64 bool     // a 64-bit integer: protojson writes "123"
	msg   *msgInfo // a message with 64-bit integers somewhere below
	// neither int64 nor msg: nothing to rewrite, copied as is
}

func (s shape) elem() shape { return shape{int64: s.int64, msg: s.msg} }

// msgInfo is a message type's field shapes by proto name, computed once per
// type (descriptors are immutable) on first use.
type msgInfo struct {
	md      protoreflect.MessageDescriptor
	wrapper bool // Int64Value, UInt64Value: the value itself is the integer
	once    sync.Once
	byName  map[string]shape
}

var msgInfos sync.Map // protoreflect.FullName → *msgInfo (nil: nothing to rewrite)

// rewriteInfo is md's msgInfo, or nil when md (or md == nil) holds no 64-bit
// integer anywhere below it: its JSON is left as protojson wrote it. Worked
// out once per message type.
func rewriteInfo(md protoreflect.MessageDescriptor) *msgInfo {
	if md == nil {
		return nil
	}
	if v, ok := msgInfos.Load(md.FullName()); ok {
		return v.(*msgInfo)
	}
	var info *msgInfo
	if has64BitInts(md, map[protoreflect.FullName]bool{}) {
		info = &msgInfo{md: md, wrapper: isInt64Wrapper(md.FullName())}
	}
	v, _ := msgInfos.LoadOrStore(md.FullName(), info)
	return v.(*msgInfo)
}

// fields is filled lazily, so that recursive message types only ever
// point at each other's msgInfo.
func (m *msgInfo) fields() map[string]shape {
	m.once.Do(func() {
		m.byName = map[string]shape{}
		fields := m.md.Fields()
		for i := 0; i < fields.Len(); i++ {
			f := fields.Get(i)
			if s := fieldShape(f); s.int64 || s.msg != nil {
				m.byName[string(f.Name())] = s
			}
		}
	})
	return m.byName
}

func fieldShape(f protoreflect.FieldDescriptor) shape {
	s := shape{list: f.IsList(), mapv: f.IsMap()}
	elem := f
	if f.IsMap() {
		elem = f.MapValue()
	}
	switch {
	case is64(elem.Kind()):
		s.int64 = true
	case elem.Message() != nil:
		s.msg = rewriteInfo(elem.Message()) // nil: copied as is
	}
	return s
}

type rewriteError string

func (e rewriteError) Error() string { return "numberize: " + string(e) }

type rewriter struct {
	in  []byte
	pos int
	out []byte
}

func (r *rewriter) fail(why string) { panic(rewriteError(why)) }

func (r *rewriter) peek() byte {
	if r.pos >= len(r.in) {
		r.fail("unexpected end")
	}
	return r.in[r.pos]
}

// ws skips insignificant whitespace.
func (r *rewriter) ws() {
	for r.pos < len(r.in) {
		switch r.in[r.pos] {
		case ' ', '\t', '\n', '\r':
			r.pos++
		default:
			return
		}
	}
}

// expect consumes c and writes it.
func (r *rewriter) expect(c byte) {
	r.ws()
	if r.peek() != c {
		r.fail("want " + string(c))
	}
	r.pos++
	r.out = append(r.out, c)
}

func (r *rewriter) value(s shape) {
	r.ws()
	switch {
	case r.peek() == 'n': // null: an unset message or wrapper
		r.skip()
	case s.list:
		r.array(s.elem())
	case s.mapv:
		r.object(s.elem(), nil)
	case s.int64:
		r.int64()
	case s.msg != nil && s.msg.wrapper:
		r.int64()
	case s.msg != nil:
		r.object(shape{}, s.msg.fields())
	default:
		r.skip()
	}
}

// object copies an object: a map's values shaped by values, or a message's
// fields looked up by their proto names.
func (r *rewriter) object(values shape, fields map[string]shape) {
	for more := r.open('{', '}'); more; more = r.next('}') {
		r.ws()
		if r.peek() != '"' {
			r.fail("want a key")
		}
		start := r.pos
		r.str()
		want := values
		if fields != nil {
			want = fields[string(r.in[start+1:r.pos-1])] // zero shape (copy) for the others
		}
		r.expect(':')
		r.value(want)
	}
}

func (r *rewriter) array(elem shape) {
	for more := r.open('[', ']'); more; more = r.next(']') {
		r.value(elem)
	}
}

// open copies the opening bracket and reports whether elements follow (false
// after copying an immediate closing one).
func (r *rewriter) open(opening, closing byte) bool {
	r.expect(opening)
	r.ws()
	if r.peek() == closing {
		r.pos++
		r.out = append(r.out, closing)
		return false
	}
	return true
}

// next copies what follows an element: a comma (true: another element) or
// the closing bracket (false).
func (r *rewriter) next(closing byte) bool {
	r.ws()
	switch c := r.peek(); c {
	case ',', closing:
		r.pos++
		r.out = append(r.out, c)
		return c == ','
	}
	r.fail("want , or " + string(closing))
	return false
}

// int64 writes a quoted decimal integer without its quotes; anything else
// is copied as it is.
func (r *rewriter) int64() {
	if r.peek() != '"' {
		r.skip()
		return
	}
	i := r.pos + 1
	if i < len(r.in) && r.in[i] == '-' {
		i++
	}
	digits := i
	for i < len(r.in) && r.in[i] >= '0' && r.in[i] <= '9' {
		i++
	}
	if i == digits || i >= len(r.in) || r.in[i] != '"' {
		r.str()
		return
	}
	r.out = append(r.out, r.in[r.pos+1:i]...)
	r.pos = i + 1
}

// str copies a string, quotes and escapes included.
func (r *rewriter) str() {
	start := r.pos
	i := r.pos + 1
	for {
		q := bytes.IndexByte(r.in[i:], '"')
		if q < 0 {
			r.fail("unterminated string")
		}
		i += q
		// The quote ends the string unless an odd number of backslashes escapes it.
		bs := 0
		for j := i - 1; j > start && r.in[j] == '\\'; j-- {
			bs++
		}
		i++
		if bs%2 == 0 {
			break
		}
	}
	r.pos = i
	r.out = append(r.out, r.in[start:i]...)
}

// skip copies any value, dropping the whitespace outside its strings.
func (r *rewriter) skip() {
	switch r.peek() {
	case '"':
		r.str()
	case '{', '[':
		depth := 0
		for r.pos < len(r.in) {
			switch c := r.in[r.pos]; c {
			case '"':
				r.str()
				continue
			case ' ', '\t', '\n', '\r':
				r.pos++
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			r.out = append(r.out, r.in[r.pos])
			r.pos++
			if depth == 0 {
				return
			}
		}
		r.fail("unterminated object or array")
	default: // number, true, false, null
		start := r.pos
		for r.pos < len(r.in) {
			switch r.in[r.pos] {
			case ',', '}', ']', ':', ' ', '\t', '\n', '\r':
				if r.pos == start {
					r.fail("empty value")
				}
				r.out = append(r.out, r.in[start:r.pos]...)
				return
			}
			r.pos++
		}
		if r.pos == start {
			r.fail("empty value")
		}
		r.out = append(r.out, r.in[start:r.pos]...)
	}
}
