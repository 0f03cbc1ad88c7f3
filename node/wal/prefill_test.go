package wal

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

const seekHole = 4 // SEEK_HOLE on Linux

// directLog opens a log with direct writes in a new directory, or skips the test where the
// filesystem takes no direct I/O (the filler works only with direct writes).
func directLog(t *testing.T, opts Options) (*Log, string) {
	t.Helper()
	dir := t.TempDir()
	l, err := Open(dir, opts, func(uint64, []byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if !l.Stats().Direct {
		l.Close()
		t.Skipf("%s takes no direct I/O: nothing to prefill", dir)
	}
	return l, dir
}

// smallFills makes the filler write small chunks close ahead of the log, so that it races
// the log's writes, for the logs the test opens.
func smallFills(t *testing.T) {
	chunk, ahead := fillChunk, fillLookahead
	fillChunk, fillLookahead = 2*blockSize, 4*blockSize
	t.Cleanup(func() { fillChunk, fillLookahead = chunk, ahead })
}

// The filler writes zeros just ahead of the log's writes while appenders race it across
// blocks and segments; every record appended replays at its LSN.
func TestPrefillNeverOverwritesRecords(t *testing.T) {
	seed := *directSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-wal.seed=%d repeats this run)", seed, seed)
	smallFills(t)
	l, dir := directLog(t, Options{SegmentBytes: 128 << 10})
	want := map[uint64]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 6 {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				rec := fmt.Sprintf("w%d-%d-%s", w, i, randomRecord(rng, i))
				lsn, err := l.Append([]byte(rec))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want[lsn] = rec
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	l.Close()
	got := map[uint64]string{}
	if _, err := Open(dir, Options{}, func(lsn uint64, rec []byte) error {
		got[lsn] = string(rec)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for lsn, rec := range want {
		if got[lsn] != rec {
			t.Fatalf("record at LSN %d: replayed %.40q, appended %.40q (%d of %d replayed)", lsn, got[lsn], rec, len(got), len(want))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("replayed %d records, appended %d", len(got), len(want))
	}
}

// Ahead of the log's write position in a new segment, the filler has turned the
// preallocated space into written blocks (where the filesystem reports unwritten extents
// as holes, as ext4 does).
func TestPrefillWritesAheadOfTheLog(t *testing.T) {
	smallFills(t)
	l, dir := directLog(t, Options{SegmentBytes: 256 << 10})
	defer l.Close()
	mustAppend(t, l, "first")
	deadline := time.Now().Add(10 * time.Second)
	for l.fill.filled.Load() < l.fill.pos.Load()+l.fill.lookahead {
		if time.Now().After(deadline) {
			t.Fatalf("the filler got to %d, the log is at %d: not %d ahead after 10 s",
				l.fill.filled.Load(), l.fill.pos.Load(), l.fill.lookahead)
		}
		l.fill.poke()
		time.Sleep(time.Millisecond)
	}
	segs, _ := listSegments(dir)
	f, err := os.Open(filepath.Join(dir, filepath.Base(segs[len(segs)-1].path)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	filled := l.fill.filled.Load()
	hole, err := syscall.Seek(int(f.Fd()), 0, seekHole)
	if err != nil {
		t.Skipf("SEEK_HOLE: %v", err)
	}
	if end, _ := f.Seek(0, 2); hole == end {
		t.Skip("the filesystem reports no holes in preallocated space")
	}
	t.Logf("filled to %d, the first hole at %d", filled, hole)
	if hole < filled {
		t.Fatalf("the segment has unwritten space at %d, below the filler's %d", hole, filled)
	}
}
