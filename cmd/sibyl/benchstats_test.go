package main

import (
	"testing"
	"time"
)

func TestPercentileExact(t *testing.T) {
	var h latencyHist
	// 1..1000 µs, recorded out of order: values below 256 µs are exact, the rest within
	// 1/128.
	for i := 1000; i >= 1; i-- {
		h.record(time.Duration(i) * time.Microsecond)
	}
	check := func(p float64, want time.Duration) {
		t.Helper()
		got := h.percentile(p)
		if got < want || float64(got-want) > float64(want)/histSub {
			t.Errorf("p%v = %v, want %v (at most 1/%d above)", p*100, got, want, histSub)
		}
	}
	check(0.50, 500*time.Microsecond)
	check(0.99, 990*time.Microsecond)
	check(0.999, 999*time.Microsecond)
	check(1, 1000*time.Microsecond)
	check(0.1, 100*time.Microsecond)
	if got := h.percentile(0.2); got != 200*time.Microsecond {
		t.Errorf("p20 = %v, want exactly 200µs (below 256µs buckets are exact)", got)
	}
	if h.max != 1000*time.Microsecond || h.total != 1000 {
		t.Errorf("max %v total %d", h.max, h.total)
	}
}

func TestPercentileNeverAboveMax(t *testing.T) {
	var h latencyHist
	h.record(1001 * time.Microsecond) // its bucket's upper bound is above 1001
	if got := h.percentile(0.5); got != 1001*time.Microsecond {
		t.Errorf("p50 of one value = %v, want that value", got)
	}
	var empty latencyHist
	if got := empty.percentile(0.99); got != 0 {
		t.Errorf("p99 of nothing = %v, want 0", got)
	}
}

func TestHistBuckets(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 255, 256, 257, 258, 511, 512, 1000, 1 << 20, 123456789, 1 << 39} {
		i := histIndex(v)
		if i < prev {
			t.Errorf("histIndex(%d) = %d, below the index of a smaller value", v, i)
		}
		prev = i
		up := histUpper(i)
		if up < v || float64(up-v) > float64(v)/histSub+1 {
			t.Errorf("value %d in bucket %d with upper bound %d: not within 1/%d", v, i, up, histSub)
		}
		if i > 0 && histUpper(i-1) >= v {
			t.Errorf("value %d: previous bucket's upper bound %d already covers it", v, histUpper(i-1))
		}
	}
	if i := histIndex(1 << 62); i != histBuckets-1 {
		t.Errorf("huge value in bucket %d, want the last (%d)", i, histBuckets-1)
	}
}

func TestMergeAndSummarize(t *testing.T) {
	var a, b latencyHist
	for i := 0; i < 90; i++ {
		a.record(time.Millisecond / 10) // 100 µs
	}
	for i := 0; i < 10; i++ {
		b.record(200 * time.Microsecond)
	}
	a.merge(&b)
	var r benchResult
	summarize(&r, &a, 2*time.Second)
	if r.Ops != 100 || r.OpsPerSec != 50 {
		t.Errorf("ops %d at %v/s, want 100 at 50/s", r.Ops, r.OpsPerSec)
	}
	if r.P50Ms != 0.1 || r.P99Ms != 0.2 || r.MaxMs != 0.2 {
		t.Errorf("p50 %vms p99 %vms max %vms, want 0.1, 0.2, 0.2", r.P50Ms, r.P99Ms, r.MaxMs)
	}
}
