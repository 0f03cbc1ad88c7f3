package sibling

import (
	"cmp"
	"slices"
	"sort"
)

// Quorum is the set of voting sets a main must satisfy: a majority (floor(S/2)+1) of every
// set. Normally one set, the active config; during a membership change two, the active and
// the pending config (a joint quorum). An empty set is satisfied by the main alone.
type Quorum struct {
	Version uint64
	Sets    [][]uint16
}

// Members returns every node in any set, once, ascending.
func (q Quorum) Members() []uint16 {
	seen := map[uint16]bool{}
	var out []uint16
	for _, s := range q.Sets {
		for _, n := range s {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Majority returns floor(n/2)+1, or 0 for an empty set.
func Majority(n int) int {
	if n == 0 {
		return 0
	}
	return n/2 + 1
}

// Agreed returns the highest value v such that a majority of every set has a value >= v,
// given each member's value. With no sets, or only empty ones, it returns max.
func (q Quorum) Agreed(value func(node uint16) uint64, max uint64) uint64 {
	agreed := max
	var buf [8]uint64 // sets of up to 8 members sort without allocating
	vals := buf[:0]
	for _, set := range q.Sets {
		if len(set) == 0 {
			continue
		}
		vals = vals[:0]
		for _, n := range set {
			vals = append(vals, value(n))
		}
		slices.SortFunc(vals, func(a, b uint64) int { return cmp.Compare(b, a) })
		if v := vals[Majority(len(set))-1]; v < agreed {
			agreed = v
		}
	}
	return agreed
}
