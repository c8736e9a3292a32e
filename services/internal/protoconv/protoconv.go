// Package protoconv holds the conversions between Go values and the
// protobuf well-known types that every service's gRPC server makes:
// optional values (nil pointer ↔ absent wrapper) and times.
package protoconv

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Time is t as a Timestamp; nil when t is.
func Time(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}

// String is *p as a StringValue; nil when p is.
func String(p *string) *wrapperspb.StringValue {
	if p == nil {
		return nil
	}
	return wrapperspb.String(*p)
}

// NonEmpty is s as a StringValue; nil (JSON null) when s is "" (not
// recorded).
func NonEmpty(s string) *wrapperspb.StringValue {
	if s == "" {
		return nil
	}
	return wrapperspb.String(s)
}

// Int64 is *p as an Int64Value; nil when p is.
func Int64(p *int64) *wrapperspb.Int64Value {
	if p == nil {
		return nil
	}
	return wrapperspb.Int64(*p)
}

// Int32 is *p as an Int32Value; nil when p is.
func Int32(p *int32) *wrapperspb.Int32Value {
	if p == nil {
		return nil
	}
	return wrapperspb.Int32(*p)
}

// StringPtr is the value of v; nil when v is absent.
func StringPtr(v *wrapperspb.StringValue) *string {
	if v == nil {
		return nil
	}
	s := v.GetValue()
	return &s
}
