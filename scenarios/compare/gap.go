package main

import "sort"

// gapStats is what a failover run's successful writes say about its gap. Times are
// nanoseconds since the run started.
type gapStats struct {
	Resumed    bool  // some write succeeded at or after the kill
	Gap        int64 // longest time without a successful write, from the kill to the end
	FirstAfter int64 // from the kill to the first success after it
	Before     int   // successes before the kill
	After      int   // successes at or after the kill
}

// longestGap measures, over the successes' completion times (any order), the longest
// interval without a success between killAt and end: from the kill to the first success,
// between two successes, and from the last success to end. Without a success after the
// kill, the gap is all of killAt..end and Resumed is false.
func longestGap(successes []int64, killAt, end int64) gapStats {
	s := append([]int64(nil), successes...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var g gapStats
	prev := killAt
	for _, t := range s {
		if t < killAt {
			g.Before++
			continue
		}
		if t > end {
			break
		}
		if !g.Resumed {
			g.Resumed = true
			g.FirstAfter = t - killAt
		}
		g.After++
		g.Gap = max(g.Gap, t-prev)
		prev = t
	}
	g.Gap = max(g.Gap, end-prev)
	return g
}
