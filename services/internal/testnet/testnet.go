// Package testnet gives tests loopback addresses for processes they start.
//
// A port the kernel hands out for port 0 lies in its ephemeral range, from
// which it also picks the local ports of outgoing connections and other
// processes' port-0 listeners: between a probe listener closing and the
// child process binding, the port can be taken ("address already in use",
// seen in CI). FreeAddr picks below the ephemeral range instead, where the
// kernel never hands out ports on its own, and never gives one port twice
// within a test binary.
package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreeAddr returns "127.0.0.1:<port>" with a port nobody listens on now,
// not given to another caller in this process, below the ephemeral range.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

// FreePort is FreeAddr's port.
func FreePort(t testing.TB) int {
	t.Helper()
	lo, hi := fixedRange()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		if handedOut.ports[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // somebody's
		}
		l.Close()
		handedOut.ports[port] = true
		return port
	}
	t.Fatal("testnet: no free loopback port below the ephemeral range after 1000 tries")
	return 0
}

// fixedRange is from 10000 up to the start of the ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range; 32768 when it cannot be read).
func fixedRange() (lo, hi int) {
	lo, hi = 10000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > lo+1000 {
				hi = n
			}
		}
	}
	return lo, hi
}
