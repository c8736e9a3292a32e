package testnet

import (
	"net"
	"testing"
)

func TestFreePortIsFreeFixedAndUnique(t *testing.T) {
	lo, hi := fixedRange()
	seen := map[int]bool{}
	for range 200 {
		p := FreePort(t)
		if p < lo || p >= hi {
			t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	l, err := net.Listen("tcp", FreeAddr(t))
	if err != nil {
		t.Fatalf("FreeAddr's address cannot be bound: %v", err)
	}
	l.Close()
}
