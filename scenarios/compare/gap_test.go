package main

import "testing"

func TestLongestGap(t *testing.T) {
	ms := int64(1_000_000)
	cases := []struct {
		name       string
		successes  []int64
		killAt     int64
		end        int64
		wantGap    int64
		wantFirst  int64
		wantResume bool
		before     int
		after      int
	}{
		{"resume after 50ms", []int64{90 * ms, 99 * ms, 150 * ms, 151 * ms, 152 * ms}, 100 * ms, 153 * ms, 50 * ms, 50 * ms, true, 2, 3},
		{"a second stall is longer", []int64{99 * ms, 110 * ms, 300 * ms, 301 * ms}, 100 * ms, 302 * ms, 190 * ms, 10 * ms, true, 1, 3},
		{"stall at the end counts", []int64{101 * ms}, 100 * ms, 500 * ms, 399 * ms, 1 * ms, true, 0, 1},
		{"never resumed", []int64{10 * ms, 20 * ms}, 100 * ms, 1100 * ms, 1000 * ms, 0, false, 2, 0},
		{"unsorted input", []int64{152 * ms, 90 * ms, 150 * ms}, 100 * ms, 152 * ms, 50 * ms, 50 * ms, true, 1, 2},
		{"successes after end ignored", []int64{150 * ms, 900 * ms}, 100 * ms, 160 * ms, 50 * ms, 50 * ms, true, 0, 1},
	}
	for _, c := range cases {
		g := longestGap(c.successes, c.killAt, c.end)
		if g.Gap != c.wantGap || g.FirstAfter != c.wantFirst || g.Resumed != c.wantResume || g.Before != c.before || g.After != c.after {
			t.Errorf("%s: got %+v; want gap %d first %d resumed %v before %d after %d", c.name, g, c.wantGap, c.wantFirst, c.wantResume, c.before, c.after)
		}
	}
}
