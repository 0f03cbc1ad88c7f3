package sibling

import "testing"

func TestAgreed(t *testing.T) {
	vals := map[uint16]uint64{1: 10, 2: 7, 3: 3, 4: 9, 5: 1}
	value := func(n uint16) uint64 { return vals[n] }
	for _, c := range []struct {
		sets [][]uint16
		want uint64
	}{
		{nil, 99},
		{[][]uint16{{}}, 99},
		{[][]uint16{{1}}, 10},
		{[][]uint16{{1, 2, 3}}, 7},
		{[][]uint16{{1, 2, 3, 4}}, 7},
		{[][]uint16{{1, 2, 3}, {3, 4, 5}}, 3},
		{[][]uint16{{1, 2, 3, 4, 5, 1, 2, 3, 4}}, 7}, // more members than the stack buffer holds
	} {
		if got := (Quorum{Sets: c.sets}).Agreed(value, 99); got != c.want {
			t.Errorf("sets %v: agreed %d, want %d", c.sets, got, c.want)
		}
	}
	q := Quorum{Sets: [][]uint16{{1, 2, 3, 4}}}
	if n := testing.AllocsPerRun(100, func() { q.Agreed(value, 99) }); n != 0 {
		t.Errorf("Agreed allocates %.0f times per call for a set of 4, want 0", n)
	}
}
