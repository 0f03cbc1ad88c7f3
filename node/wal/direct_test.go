package wal

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var directSeed = flag.Uint64("wal.seed", 0, "seed of TestDirectWritesKeepEveryRecordAcrossBlocks (0: from the clock)")

// A log writes directly wherever its filesystem takes direct I/O, and buffered when told to.
func TestDirectWritesWhereTheFilesystemAllows(t *testing.T) {
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := openDirect(probe)
	if err != nil {
		t.Skipf("%s takes no direct I/O (%v): the log writes buffered there", dir, err)
	}
	f.Close()
	l, _ := openT(t, filepath.Join(dir, "direct"), Options{})
	defer l.Close()
	if !l.Stats().Direct {
		t.Fatal("the filesystem takes direct I/O but the log writes buffered")
	}
	b, err := Open(filepath.Join(dir, "buffered"), Options{Buffered: true}, func(uint64, []byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Stats().Direct {
		t.Fatal("a log told to write buffered writes directly")
	}
}

// Direct writes rewrite the partial block at the end of the log with each write: records
// of every size, written alone or together, cross blocks and segments, and after a reopen
// every one replays, in order.
func TestDirectWritesKeepEveryRecordAcrossBlocks(t *testing.T) {
	seed := *directSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-wal.seed=%d repeats this run)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		l, _ := openT(t, dir, Options{SegmentBytes: 256 << 10})
		var want []string
		for range 300 {
			// Records queued lazily ride in the next Append's write.
			for range rng.IntN(4) {
				rec := randomRecord(rng, len(want))
				if _, err := l.AppendLazy(rec); err != nil {
					t.Fatal(err)
				}
				want = append(want, string(rec))
			}
			rec := randomRecord(rng, len(want))
			if _, err := l.Append(rec); err != nil {
				t.Fatal(err)
			}
			want = append(want, string(rec))
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		_, got := openT(t, dir, Options{SegmentBytes: 256 << 10})
		if len(got) != len(want) {
			t.Fatalf("replayed %d records, want %d", len(got), len(want))
		}
		for i := range want {
			if got[i].rec != want[i] {
				t.Fatalf("record %d of %d differs (%d bytes, want %d)", i, len(want), len(got[i].rec), len(want[i]))
			}
		}
	})
}

// randomRecord is mostly small, sometimes several blocks, now and then over the block
// buffer's 64 KiB; its bytes name its index so that a misplaced record shows.
func randomRecord(rng *rand.Rand, i int) []byte {
	n := 1 + rng.IntN(600)
	switch rng.IntN(20) {
	case 0:
		n = 4096 + rng.IntN(3*4096)
	case 1:
		n = 70 << 10
	}
	return bytes.Repeat([]byte{byte(i), byte(i >> 8)}, n)[:n]
}

// A direct write pads its last block with zeros, not with what the block buffer held
// before. Here the buffer still holds record R at the very offset where the second write
// ends; had it been written out again, a boot would replay R twice.
func TestDirectWritePadsWithZeros(t *testing.T) {
	dir := t.TempDir()
	l, _ := openT(t, dir, Options{})
	if !l.Stats().Direct {
		t.Skip("no direct I/O here")
	}
	rec := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }
	// Write 1: header (16) | A (8+1000) | R (8+100) at 1024..1132 | S (8+3256), ending at
	// 4396: the partial block of 300 bytes moves to the front of the buffer.
	for _, r := range [][]byte{rec(1000, 'A'), rec(100, 'R')} {
		if _, err := l.AppendLazy(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Append(rec(3256, 'S')); err != nil {
		t.Fatal(err)
	}
	// Write 2: C (8+716) from 300 to 1024 of the block, where R began in the buffer.
	if _, err := l.Append(rec(716, 'C')); err != nil {
		t.Fatal(err)
	}
	l.Close()
	_, got := openT(t, dir, Options{})
	var kinds []byte
	for _, r := range got {
		kinds = append(kinds, r.rec[0])
	}
	if string(kinds) != "ARSC" {
		t.Fatalf("replayed records %q, want \"ARSC\"", kinds)
	}
}

// A filesystem that opens files for direct I/O but refuses the writes (EINVAL, an
// alignment it wants larger) gets buffered writes: the record that met the refusal and
// every later one are durable and replay.
func TestDirectWriteRefusedFallsBackToBuffered(t *testing.T) {
	dir := t.TempDir()
	l, _ := openT(t, dir, Options{})
	if !l.Stats().Direct {
		t.Skip("no direct I/O here")
	}
	if _, err := l.Append([]byte("before")); err != nil {
		t.Fatal(err)
	}
	directWrite = func(*os.File, []byte, int64) error { return syscall.EINVAL }
	defer func() { directWrite = pwriteDurable }()
	for _, r := range []string{"refused", "after"} {
		if _, err := l.Append([]byte(r)); err != nil {
			t.Fatalf("append %q: %v", r, err)
		}
	}
	if l.Stats().Direct {
		t.Fatal("the log still writes directly after the filesystem refused a direct write")
	}
	l.Close()
	_, got := openT(t, dir, Options{})
	var recs []string
	for _, r := range got {
		recs = append(recs, r.rec)
	}
	if strings.Join(recs, ",") != "before,refused,after" {
		t.Fatalf("replayed %q", recs)
	}
}
