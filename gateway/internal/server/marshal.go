package server

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// contractMarshaler is protojson as the v2.7 contract needs it: proto field
// names, unpopulated fields emitted (null for unset wrappers, timestamps and
// structs; [] for empty lists), and 64-bit integers written as JSON numbers.
//
// protojson writes int64 as a JSON string ("42"), which the dashboard's
// arithmetic and the contract's shapes do not accept. Rather than squeezing ids
// and counters into int32 or double in the API, the gateway rewrites those
// fields after marshalling, guided by the message descriptor. Values above
// 2^53 would lose precision in JavaScript; ids and counters stay far below.
type contractMarshaler struct {
	runtime.JSONPb
}

func newContractMarshaler() *contractMarshaler {
	return &contractMarshaler{runtime.JSONPb{
		MarshalOptions: protojson.MarshalOptions{
			UseProtoNames:   true,
			EmitUnpopulated: true,
		},
		UnmarshalOptions: protojson.UnmarshalOptions{
			// Unknown fields are a client error (400), not silently dropped:
			// a typo in a field name must not look like success.
			DiscardUnknown: false,
		},
	}}
}

// Marshal implements runtime.Marshaler.
func (m *contractMarshaler) Marshal(v any) ([]byte, error) {
	out, err := m.JSONPb.Marshal(v)
	if err != nil {
		return nil, err
	}
	desc := descriptorOf(v)
	if desc == nil || !has64BitInts(desc, map[protoreflect.FullName]bool{}) {
		return out, nil
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, err
	}
	if _, isList := tree.([]any); isList || reflect.ValueOf(v).Kind() == reflect.Slice {
		if items, ok := tree.([]any); ok {
			for i := range items {
				items[i] = numberize(items[i], desc)
			}
		}
	} else {
		tree = numberize(tree, desc)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(tree); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// descriptorOf returns the message descriptor of v, or of the elements of v
// when v is a slice of messages (a response_body list).
func descriptorOf(v any) protoreflect.MessageDescriptor {
	if msg, ok := v.(proto.Message); ok {
		return msg.ProtoReflect().Descriptor()
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice {
		return nil
	}
	elem := rv.Type().Elem()
	if msg, ok := reflect.Zero(elem).Interface().(proto.Message); ok {
		return msg.ProtoReflect().Descriptor()
	}
	return nil
}

func is64(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return true
	}
	return false
}

// wellKnownOpaque are well-known types whose JSON form holds no 64-bit
// integers to rewrite (Timestamp and Duration are strings by design).
func wellKnownOpaque(name protoreflect.FullName) bool {
	switch name {
	case "google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.Struct",
		"google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.FieldMask",
		"google.protobuf.Any", "google.protobuf.Empty":
		return true
	}
	return false
}

func isInt64Wrapper(name protoreflect.FullName) bool {
	return name == "google.protobuf.Int64Value" || name == "google.protobuf.UInt64Value"
}

// has64BitInts reports whether a message (transitively) has a 64-bit integer field.
func has64BitInts(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if isInt64Wrapper(md.FullName()) {
		return true
	}
	if seen[md.FullName()] || wellKnownOpaque(md.FullName()) {
		return false
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.IsMap() {
			f = f.MapValue()
		}
		if is64(f.Kind()) {
			return true
		}
		if f.Message() != nil && has64BitInts(f.Message(), seen) {
			return true
		}
	}
	return false
}

// numberize rewrites, in the decoded JSON value v of message type md, every
// 64-bit integer string into a JSON number.
func numberize(v any, md protoreflect.MessageDescriptor) any {
	if isInt64Wrapper(md.FullName()) {
		return toNumber(v)
	}
	if wellKnownOpaque(md.FullName()) {
		return v
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return v
	}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		key := string(f.Name())
		val, present := obj[key]
		if !present || val == nil {
			continue
		}
		obj[key] = numberizeField(val, f)
	}
	return obj
}

func numberizeField(v any, f protoreflect.FieldDescriptor) any {
	switch {
	case f.IsMap():
		m, ok := v.(map[string]any)
		if !ok {
			return v
		}
		for k, item := range m {
			m[k] = numberizeValue(item, f.MapValue())
		}
		return m
	case f.IsList():
		items, ok := v.([]any)
		if !ok {
			return v
		}
		for i := range items {
			items[i] = numberizeValue(items[i], f)
		}
		return items
	default:
		return numberizeValue(v, f)
	}
}

func numberizeValue(v any, f protoreflect.FieldDescriptor) any {
	if is64(f.Kind()) {
		return toNumber(v)
	}
	if f.Message() != nil {
		return numberize(v, f.Message())
	}
	return v
}

func toNumber(v any) any {
	s, ok := v.(string)
	if !ok || s == "" || strings.ContainsAny(s, ".eE") {
		return v
	}
	return json.Number(s)
}
