package command

import (
	"bytes"
	"io"
	"math/rand"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
)

func seeded(seed int64) io.Reader { return rand.New(rand.NewSource(seed)) }

func TestIDGenMonotonic(t *testing.T) {
	g := NewIDGen(9, seeded(1))
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	// Many IDs in one millisecond, then the clock steps back an hour, then forward.
	times := []time.Time{t0, t0, t0, t0.Add(999 * time.Microsecond), t0.Add(-time.Hour), t0.Add(-time.Hour), t0.Add(5 * time.Millisecond)}
	var prev RID
	for i, now := range times {
		r := g.Next(now)
		if r.Server != 9 {
			t.Fatalf("server %d", r.Server)
		}
		if i > 0 && r.ID.Compare(prev.ID) <= 0 {
			t.Fatalf("ID %d (%s at %v) does not sort after %s", i, r, now, prev)
		}
		if want := max(uint64(now.UnixMilli()), prev.ID.Time()); r.ID.Time() != want {
			t.Fatalf("ID %d has time %d, want %d", i, r.ID.Time(), want)
		}
		if back, err := ParseRID(r.String()); err != nil || back != r {
			t.Fatalf("ParseRID(%s) = %v, %v", r, back, err)
		}
		prev = r
	}
}

func TestIDGenSeeded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	a, b, c := NewIDGen(1, seeded(5)), NewIDGen(1, seeded(5)), NewIDGen(1, seeded(6))
	for i := 0; i < 3; i++ {
		ra, rb, rc := a.Next(now), b.Next(now), c.Next(now)
		if ra != rb || ra == rc {
			t.Fatalf("same seed: %s %s; other seed: %s", ra, rb, rc)
		}
	}
}

func TestIDGenClampsTime(t *testing.T) {
	if r := NewIDGen(1, seeded(1)).Next(time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)); r.ID.Time() != 0 {
		t.Fatalf("time before 1970 gave ms %d", r.ID.Time())
	}
	if r := NewIDGen(1, seeded(1)).Next(time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC)); r.ID.Time() != ulid.MaxTime() {
		t.Fatalf("time after the ULID range gave ms %d", r.ID.Time())
	}
}

// maxThenRandom yields an all-ones random part first, so the next ID in the same
// millisecond cannot be an increment of it.
type maxThenRandom struct {
	ones int
	rest io.Reader
}

func (r *maxThenRandom) Read(p []byte) (int, error) {
	n := 0
	for ; n < len(p) && r.ones > 0; n++ {
		p[n], r.ones = 0xFF, r.ones-1
	}
	if n > 0 {
		return n, nil
	}
	return r.rest.Read(p)
}

func TestIDGenOverflowMovesToNextMillisecond(t *testing.T) {
	g := NewIDGen(1, &maxThenRandom{ones: 10, rest: seeded(1)})
	now := time.UnixMilli(1_700_000_000_000)
	a, b := g.Next(now), g.Next(now)
	if !bytes.Equal(a.ID.Entropy(), bytes.Repeat([]byte{0xFF}, 10)) {
		t.Fatalf("first random part %x is not all ones", a.ID.Entropy())
	}
	if b.ID.Compare(a.ID) <= 0 || b.ID.Time() != a.ID.Time()+1 {
		t.Fatalf("after %s came %s; want the next millisecond", a, b)
	}
}

func TestIDGenConcurrent(t *testing.T) {
	g := NewIDGen(2, seeded(1))
	now := time.Unix(1_700_000_000, 0)
	const workers, each = 8, 500
	got := make([][]RID, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				got[w] = append(got[w], g.Next(now))
			}
		}()
	}
	wg.Wait()
	var all []string
	for w, ids := range got {
		for i := 1; i < len(ids); i++ {
			if ids[i].ID.Compare(ids[i-1].ID) <= 0 {
				t.Fatalf("worker %d: %s after %s", w, ids[i], ids[i-1])
			}
		}
		for _, r := range ids {
			all = append(all, r.String())
		}
	}
	slices.Sort(all)
	if n := len(slices.Compact(all)); n != workers*each {
		t.Fatalf("%d distinct IDs of %d", n, workers*each)
	}
}
