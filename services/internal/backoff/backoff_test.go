package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelayDoublesJittersAndCaps(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: time.Second}
	for n, full := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond,
		4: 800 * time.Millisecond, 5: time.Second, 50: time.Second} {
		lo, hi := full, time.Duration(0)
		for range 200 {
			d := p.Delay(n)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo < full/2 || hi > full {
			t.Errorf("Delay(%d) in [%v, %v], want within [%v, %v]", n, lo, hi, full/2, full)
		}
		if hi-lo < full/10 {
			t.Errorf("Delay(%d) barely jitters: [%v, %v]", n, lo, hi)
		}
	}
	if d := (Policy{}).Delay(3); d != 0 {
		t.Errorf("zero policy: %v", d)
	}
	if d := (Policy{Min: time.Millisecond}).Delay(1000); d > time.Hour {
		t.Errorf("uncapped policy overflows: %v", d)
	}
}

func TestWaitStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if (Policy{Min: time.Hour}).Wait(ctx, 1) {
		t.Error("Wait ran its full hour after the context ended")
	}
	if !(Policy{Min: time.Millisecond}).Wait(context.Background(), 1) {
		t.Error("Wait was cut short")
	}
}
