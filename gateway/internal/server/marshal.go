package server

import (
	"reflect"

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
// fields after marshalling, guided by the message descriptor, in one pass
// over the bytes (numberize.go). Values above 2^53 would lose precision in
// JavaScript; ids and counters stay far below.
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
	if list, ok := messageList(v); ok {
		return m.marshalList(list)
	}
	out, err := m.JSONPb.Marshal(v)
	if err != nil {
		return nil, err
	}
	info := rewriteInfo(descriptorOf(v))
	if info == nil {
		return out, nil
	}
	return numberize(nil, out, shape{msg: info})
}

// marshalList writes a response_body list (a JSON array of messages) in one
// buffer: runtime.JSONPb goes through encoding/json for slices, which grows
// and copies its buffer over and over on a large list.
func (m *contractMarshaler) marshalList(list reflect.Value) ([]byte, error) {
	rewrite := rewriteInfo(descriptorOf(list.Interface()))
	out := append(make([]byte, 0, 256*list.Len()+2), '[')
	var one []byte
	var err error
	for i := range list.Len() {
		if i > 0 {
			out = append(out, ',')
		}
		msg := list.Index(i).Interface().(proto.Message)
		if rewrite == nil {
			if out, err = m.MarshalOptions.MarshalAppend(out, msg); err != nil {
				return nil, err
			}
			continue
		}
		if one, err = m.MarshalOptions.MarshalAppend(one[:0], msg); err != nil {
			return nil, err
		}
		if out, err = numberize(out, one, shape{msg: rewrite}); err != nil {
			return nil, err
		}
	}
	return append(out, ']'), nil
}

// messageList reports whether v is a slice of messages (what a
// response_body list field is marshalled as).
func messageList(v any) (reflect.Value, bool) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice {
		return rv, false
	}
	_, ok := reflect.Zero(rv.Type().Elem()).Interface().(proto.Message)
	return rv, ok
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
// integers to rewrite (Timestamp and Duration are strings by design; a
// Struct's numbers are already numbers, and its strings must stay strings).
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

// has64BitInts reports whether a message (transitively) has a 64-bit
// integer field.
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
