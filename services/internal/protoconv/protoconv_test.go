package protoconv

import (
	"testing"
	"time"
)

func TestNilStaysAbsent(t *testing.T) {
	if Time(nil) != nil || String(nil) != nil || NonEmpty("") != nil || Int64(nil) != nil || Int32(nil) != nil || StringPtr(nil) != nil {
		t.Fatal("a nil or empty value became a present one")
	}
	now, s, i, j := time.Unix(1700000000, 5).UTC(), "x", int64(7), int32(8)
	if !Time(&now).AsTime().Equal(now) || String(&s).GetValue() != "x" || NonEmpty("y").GetValue() != "y" ||
		Int64(&i).GetValue() != 7 || Int32(&j).GetValue() != 8 || *StringPtr(String(&s)) != "x" {
		t.Fatal("a value did not round-trip")
	}
}
