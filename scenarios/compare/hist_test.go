package main

import (
	"math"
	"testing"
	"time"
)

func TestHistBucketsAreContiguous(t *testing.T) {
	prev := -1
	for us := uint64(0); us < 1<<20; us++ {
		b := histBucket(us)
		if b != prev && b != prev+1 {
			t.Fatalf("bucket of %d µs is %d after %d", us, b, prev)
		}
		if v := histValue(b); math.Abs(v-float64(us)) > float64(us)/histSub+0.5 {
			t.Fatalf("bucket %d of %d µs reads back as %v", b, us, v)
		}
		prev = b
	}
}

func TestHistQuantiles(t *testing.T) {
	var a, b latencyHist
	for i := 1; i <= 1000; i++ {
		a.record(time.Duration(i) * 10 * time.Microsecond) // 10 µs .. 10 ms
	}
	b.record(50 * time.Millisecond)
	a.merge(&b)
	if a.total != 1001 {
		t.Fatalf("total %d, want 1001", a.total)
	}
	check := func(q, want float64) {
		t.Helper()
		if got := a.quantileMs(q); math.Abs(got-want)/want > 0.02 {
			t.Errorf("quantile %v = %v ms, want %v ms within 2%%", q, got, want)
		}
	}
	check(0.5, 5.01)
	check(0.99, 9.91)
	check(1, 50)
	if got := msOf(a.max); got != 50 {
		t.Errorf("max %v ms, want 50", got)
	}
	var empty latencyHist
	if got := empty.quantileMs(0.5); got != 0 {
		t.Errorf("quantile of an empty histogram = %v", got)
	}
}
