package main

import (
	"math"
	"math/bits"
	"time"
)

// latencyHist counts latencies in microseconds in fixed memory: one bucket per
// microsecond below 64 µs, then histSub buckets per power of two, so a quantile is off
// by at most half a bucket (under 1.6 %).
type latencyHist struct {
	counts []uint64
	total  uint64
	max    time.Duration
}

const histSub = 32

// histBucket is the bucket of a latency of us microseconds.
func histBucket(us uint64) int {
	if us < 2*histSub {
		return int(us)
	}
	shift := bits.Len64(us) - 6 // us>>shift is in [32, 64)
	return 2*histSub + (shift-1)*histSub + int(us>>shift) - histSub
}

// histValue is the middle of bucket b, in microseconds.
func histValue(b int) float64 {
	if b < 2*histSub {
		return float64(b)
	}
	k := b - 2*histSub
	shift := k/histSub + 1
	lower := uint64(k%histSub+histSub) << shift
	return float64(lower) + float64(uint64(1)<<shift)/2
}

func (h *latencyHist) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	b := histBucket(uint64(d / time.Microsecond))
	for len(h.counts) <= b {
		h.counts = append(h.counts, 0)
	}
	h.counts[b]++
	h.total++
	h.max = max(h.max, d)
}

func (h *latencyHist) merge(o *latencyHist) {
	for len(h.counts) < len(o.counts) {
		h.counts = append(h.counts, 0)
	}
	for b, n := range o.counts {
		h.counts[b] += n
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// quantileMs is the latency at quantile q (0 < q <= 1) in milliseconds, never above the
// largest latency recorded; 0 for an empty histogram.
func (h *latencyHist) quantileMs(q float64) float64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for b, n := range h.counts {
		seen += n
		if seen >= rank {
			return math.Min(histValue(b)/1000, msOf(h.max))
		}
	}
	return msOf(h.max)
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
