package main

import (
	"math"
	"math/bits"
	"sort"
	"time"
)

// latencyHist is a log-linear histogram of durations in microseconds, in the manner of
// HdrHistogram: values below 2*histSub are exact, above that each power of two is split
// into histSub buckets, so a recorded value is known within 1/histSub (< 0.8 %). Its
// size is fixed however long a benchmark runs, unlike a slice of every latency.
type latencyHist struct {
	counts [histBuckets]uint64
	total  uint64
	max    time.Duration
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits // buckets per power of two
	// Values up to 2^histMaxBits µs (about 12 days) are kept apart; longer ones share the
	// last bucket.
	histMaxBits = 40
	histBuckets = 2*histSub + (histMaxBits-histSubBits)*histSub
)

// histIndex is the bucket of v microseconds.
func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - (histSubBits + 1) // >= 1
	i := 2*histSub + (shift-1)*histSub + int(v>>uint(shift)) - histSub
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histUpper is the largest value (µs) that falls in bucket i: percentiles report it, so
// they never understate a latency.
func histUpper(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	shift := (i-2*histSub)/histSub + 1
	m := uint64((i-2*histSub)%histSub + histSub)
	return (m+1)<<uint(shift) - 1
}

func (h *latencyHist) record(d time.Duration) {
	us := d.Microseconds()
	if us < 0 {
		us = 0
	}
	h.counts[histIndex(uint64(us))]++
	h.total++
	if d > h.max {
		h.max = d
	}
}

func (h *latencyHist) merge(o *latencyHist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	if o.max > h.max {
		h.max = o.max
	}
}

// percentile returns the latency at or below which a fraction p (0..1] of the recorded
// values lie: the smallest bucket whose cumulative count reaches ceil(p*total), capped
// at the exact maximum. It is 0 when nothing was recorded.
func (h *latencyHist) percentile(p float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			d := time.Duration(histUpper(i)) * time.Microsecond
			if d > h.max {
				d = h.max
			}
			return d
		}
	}
	return h.max
}

// benchResult is the outcome of a benchmark, also printed as JSON with --json.
type benchResult struct {
	Workload    string            `json:"workload"`
	Clients     int               `json:"clients"`
	Size        int               `json:"size"`
	DurationSec float64           `json:"durationSec"`
	Ops         uint64            `json:"ops"`
	OpsPerSec   float64           `json:"opsPerSec"`
	Errors      map[string]uint64 `json:"errors"` // by protocol error code
	P50Ms       float64           `json:"p50Ms"`
	P99Ms       float64           `json:"p99Ms"`
	P999Ms      float64           `json:"p999Ms"`
	MaxMs       float64           `json:"maxMs"`
	// The measured window, in Unix nanoseconds, for tools that sample the machine's
	// CPU and disk meanwhile (scenarios/compare).
	FromUnixNano int64 `json:"fromUnixNano"`
	ToUnixNano   int64 `json:"toUnixNano"`
	// Cost is what the measured window cost per op (benchcost.go), when the node
	// processes are known (--cluster) and /proc can be read.
	Cost *benchCost `json:"cost,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// summarize fills the latency and rate fields from a merged histogram.
func summarize(r *benchResult, h *latencyHist, measured time.Duration) {
	r.Ops = h.total
	r.DurationSec = measured.Seconds()
	if measured > 0 {
		r.OpsPerSec = float64(h.total) / measured.Seconds()
	}
	r.P50Ms = ms(h.percentile(0.50))
	r.P99Ms = ms(h.percentile(0.99))
	r.P999Ms = ms(h.percentile(0.999))
	r.MaxMs = ms(h.max)
}

// sortedCodes lists error codes in a stable order for printing.
func sortedCodes(m map[string]uint64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
