package node

import (
	"math"
	"testing"
	"time"
)

func TestLoadBinBounds(t *testing.T) {
	for _, d := range []time.Duration{time.Microsecond, 50 * time.Microsecond, 51 * time.Microsecond,
		time.Millisecond, 3 * time.Millisecond, 250 * time.Millisecond, 5 * time.Second} {
		i := loadBin(d)
		upper := loadBinUpper(i)
		ms := float64(d) / float64(time.Millisecond)
		if ms > upper*1.0000001 {
			t.Errorf("%v lands in bin %d whose upper bound is %.4f ms", d, i, upper)
		}
		if i > 0 && ms <= loadBinUpper(i-1) {
			t.Errorf("%v lands in bin %d but fits bin %d (upper %.4f ms)", d, i, i-1, loadBinUpper(i-1))
		}
	}
	if got := loadBin(time.Hour); got != loadBins-1 {
		t.Errorf("an hour lands in bin %d, want the last (%d)", got, loadBins-1)
	}
}

func TestLoadRingLastMinute(t *testing.T) {
	var r loadRing
	base := time.Unix(1_700_000_000, 0)
	// 58 s ago: 100 commits of 1 ms, one of them 100 ms. Now (partial second): 5 of 2 ms.
	for i := 0; i < 99; i++ {
		r.observe(base.Add(-58*time.Second), time.Millisecond)
	}
	r.observe(base.Add(-58*time.Second), 100*time.Millisecond)
	// 70 s ago: outside the span, and its bucket is reused by 10 s ago.
	r.observe(base.Add(-70*time.Second), time.Second)
	r.observe(base.Add(-10*time.Second+time.Millisecond), 4*time.Millisecond)
	for i := 0; i < 5; i++ {
		r.observe(base.Add(300*time.Millisecond), 2*time.Millisecond)
	}
	l := r.snapshot(base.Add(500 * time.Millisecond))
	if l.EndS != base.Unix() || len(l.Commits) != 60 || len(l.P99Ms) != 60 {
		t.Fatalf("snapshot end %d with %d/%d buckets, want %d with 60", l.EndS, len(l.Commits), len(l.P99Ms), base.Unix())
	}
	if l.Commits[1] != 100 || l.Commits[49] != 1 || l.Commits[59] != 5 {
		t.Fatalf("commits at -58 s, -10 s, now: %d %d %d; want 100 1 5", l.Commits[1], l.Commits[49], l.Commits[59])
	}
	sum := 0
	for _, c := range l.Commits {
		sum += int(c)
	}
	if sum != 106 {
		t.Fatalf("%d commits in the span, want 106 (the one 70 s ago is out)", sum)
	}
	// p99 of 100 commits is the 99th: 1 ms, in the bin whose upper bound is within 19% above.
	if p := l.P99Ms[1]; p < 1 || p > 1.19 {
		t.Errorf("p99 at -58 s = %.3f ms, want 1..1.19", p)
	}
	if p := l.P99Ms[49]; p < 4 || p > 4*1.19 {
		t.Errorf("p99 at -10 s = %.3f ms, want 4..4.76", p)
	}
	if want := 101.0 / 59; math.Abs(l.Rate-want) > 1e-9 {
		t.Errorf("rate %.4f/s, want %.4f (full seconds only)", l.Rate, want)
	}
	// 101 commits in full seconds: rank ceil(0.99·101) = 100 of [99 × 1 ms, 4 ms, 100 ms].
	if p := l.MinuteP99Ms; p < 4 || p > 4*1.19 {
		t.Errorf("minute p99 %.3f ms, want 4..4.76", p)
	}
	if empty := new(loadRing).snapshot(base); empty.Rate != 0 || empty.MinuteP99Ms != 0 {
		t.Errorf("an empty ring reports rate %v p99 %v", empty.Rate, empty.MinuteP99Ms)
	}
}
