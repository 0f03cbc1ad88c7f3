package node

import (
	"math"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// loadRing is a main's write load over the last minute for the status page: one bucket per
// second, each counting the entries committed in that second and a histogram of their commit
// latency (seq assigned to quorum-durable). Buckets are indexed by Unix second modulo the
// ring's length and reset when a new second reuses them, so an idle main needs no timer.
// The group's mutex guards it.
type loadRing struct {
	buckets [command.LoadSeconds]loadBucket
}

type loadBucket struct {
	sec     int64
	commits uint32
	hist    [loadBins]uint32
}

// The latency histogram has four bins per doubling from 50 µs: a bin's upper bound is
// loadFloor·2^((i+1)/4), so a percentile is off by at most 19%. The last bin takes
// everything from about 6.6 s up.
const (
	loadBins  = 72
	loadFloor = 50 * time.Microsecond
)

func loadBin(d time.Duration) int {
	if d <= loadFloor {
		return 0
	}
	i := int(math.Ceil(4*math.Log2(float64(d)/float64(loadFloor)))) - 1
	return min(max(i, 0), loadBins-1)
}

// loadBinUpper is bin i's upper bound in milliseconds.
func loadBinUpper(i int) float64 {
	return float64(loadFloor) / float64(time.Millisecond) * math.Exp2(float64(i+1)/4)
}

// observe counts one entry committed at now that waited d.
func (r *loadRing) observe(now time.Time, d time.Duration) {
	sec := now.Unix()
	b := &r.buckets[sec%command.LoadSeconds]
	if b.sec != sec {
		*b = loadBucket{sec: sec}
	}
	b.commits++
	b.hist[loadBin(d)]++
}

// snapshot returns the last minute as of now: the current second last. Rate and MinuteP99Ms
// cover the full seconds before the current one.
func (r *loadRing) snapshot(now time.Time) *command.GroupLoad {
	end := now.Unix()
	out := &command.GroupLoad{EndS: end, Commits: make([]uint32, command.LoadSeconds), P99Ms: make([]float64, command.LoadSeconds)}
	var minute [loadBins]uint32
	var total uint64
	for i := range command.LoadSeconds {
		sec := end - command.LoadSeconds + 1 + int64(i)
		b := &r.buckets[((sec%command.LoadSeconds)+command.LoadSeconds)%command.LoadSeconds]
		if b.sec != sec || b.commits == 0 {
			continue
		}
		out.Commits[i] = b.commits
		out.P99Ms[i] = quantile(&b.hist, b.commits, 0.99)
		if sec < end {
			total += uint64(b.commits)
			for j, c := range b.hist {
				minute[j] += c
			}
		}
	}
	out.Rate = float64(total) / float64(command.LoadSeconds-1)
	if total > 0 {
		out.MinuteP99Ms = quantile(&minute, uint32(total), 0.99)
	}
	return out
}

// quantile is the upper bound (ms) of the bin holding the q-th of n observations in hist.
func quantile(hist *[loadBins]uint32, n uint32, q float64) float64 {
	rank := uint32(math.Ceil(q * float64(n)))
	var seen uint32
	for i, c := range hist {
		seen += c
		if seen >= rank {
			return loadBinUpper(i)
		}
	}
	return loadBinUpper(loadBins - 1)
}
