package wal

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// A failed sync fails the log: the append waiting for it and every later one fail, and
// their records are dropped, until Repair; the bytes of the failed write reached the file
// (as they may after a real failed fsync), yet a reopen never replays them.
func TestFailedSyncDropsTheRecordEvenIfItsBytesLanded(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		for _, p := range []FaultPoint{FaultWrite, FaultSync} {
			t.Run(map[FaultPoint]string{FaultWrite: "write", FaultSync: "sync"}[p], func(t *testing.T) {
				dir := t.TempDir()
				f := &Faults{}
				l, _ := openT(t, dir, Options{SegmentBytes: 4096, Faults: f})
				mustAppend(t, l, "a-ok")
				f.Set(p, ErrIO)
				if _, err := l.Append([]byte("b-failed")); !errors.Is(err, ErrIO) {
					t.Fatalf("append with a failing disk: %v, want EIO", err)
				}
				if l.Fault() == nil {
					t.Fatal("the log reports no fault after a failed write")
				}
				if _, err := l.Append([]byte("c-refused")); !errors.Is(err, ErrIO) {
					t.Fatalf("append on a failed log: %v, want the fault", err)
				}
				// The disk still fails (a new segment too): Repair says so and the log stays failed.
				f.Set(FaultCreate, ErrIO)
				if err := l.Repair(); err == nil || l.Fault() == nil {
					t.Fatalf("repair on a failing disk: %v, fault %v", err, l.Fault())
				}
				f.Heal()
				if err := l.Repair(); err != nil {
					t.Fatalf("repair on a healed disk: %v", err)
				}
				lsn := mustAppend(t, l, "d-after")
				if want := l.End(); lsn != want {
					t.Fatalf("append after repair at LSN %d, log ends at %d", lsn, want)
				}
				l.Close()
				_, got := openT(t, dir, Options{SegmentBytes: 4096})
				if fmt.Sprint(recs(got)) != "[a-ok d-after]" {
					t.Fatalf("replayed %v, want [a-ok d-after]", recs(got))
				}
				if got[1].lsn != lsn {
					t.Fatalf("d-after replayed at LSN %d, appended at %d", got[1].lsn, lsn)
				}
			})
		}
	})
}

// Lazy records queued before a failure were counted on by their writers: Repair writes
// them; the durable appends of the failed write are dropped.
func TestRepairWritesTheKeptLazyRecords(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		f := &Faults{}
		l, _ := openT(t, dir, Options{SegmentBytes: 4096, Faults: f})
		mustAppend(t, l, "1-ok")
		if _, err := l.AppendLazy([]byte("2-lazy")); err != nil {
			t.Fatal(err)
		}
		f.Set(FaultSync, ErrIO)
		if _, err := l.Append([]byte("3-failed")); err == nil {
			t.Fatal("append with a failing sync succeeded")
		}
		if _, err := l.AppendLazy([]byte("4-refused")); err == nil {
			t.Fatal("lazy append on a failed log succeeded")
		}
		f.Heal()
		if err := l.Repair(); err != nil {
			t.Fatal(err)
		}
		mustAppend(t, l, "5-ok")
		l.Close()
		_, got := openT(t, dir, Options{SegmentBytes: 4096})
		if fmt.Sprint(recs(got)) != "[1-ok 2-lazy 5-ok]" {
			t.Fatalf("replayed %v", recs(got))
		}
	})
}

// A crash before Repair: the failed write's bytes, if they landed, are the log's torn or
// intact tail, like any write whose acknowledgement never went out.
func TestCrashBeforeRepairOpens(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		f := &Faults{}
		l, _ := openT(t, dir, Options{SegmentBytes: 4096, Faults: f})
		mustAppend(t, l, "a")
		f.Set(FaultSync, ErrIO)
		l.Append([]byte("b"))
		l.Close()
		l2, got := openT(t, dir, Options{SegmentBytes: 4096})
		defer l2.Close()
		if len(got) == 0 || got[0].rec != "a" {
			t.Fatalf("replayed %v, want a first", recs(got))
		}
	})
}

// A segment creation that fails (a full disk refuses the preallocation) fails the log;
// appends that had been written and synced into the previous segment in the same write are
// dropped too, and a later reopen does not replay them (the repaired segment starts
// before them).
func TestFailedRollAndRepairAcrossSegments(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		f := &Faults{}
		l, _ := openT(t, dir, Options{SegmentBytes: 512, Faults: f})
		var want []string
		for i := range 10 {
			r := fmt.Sprintf("ok-%02d-%s", i, make([]byte, 60))
			mustAppend(t, l, r)
			want = append(want, r[:5])
		}
		f.Set(FaultCreate, ErrNoSpace)
		failedAt := -1
		for i := range 20 {
			if _, err := l.Append([]byte(fmt.Sprintf("full-%02d-%s", i, make([]byte, 60)))); err != nil {
				if !errors.Is(err, ErrNoSpace) {
					t.Fatalf("append on a full disk: %v, want ENOSPC", err)
				}
				failedAt = i
				break
			}
			want = append(want, fmt.Sprintf("full-%02d", i)[:5])
		}
		if failedAt < 0 {
			t.Fatal("no append failed with the segment creation failing")
		}
		f.Heal()
		if err := l.Repair(); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			r := fmt.Sprintf("af-%02d-%s", i, make([]byte, 60))
			mustAppend(t, l, r)
			want = append(want, r[:5])
		}
		l.Close()
		_, got := openT(t, dir, Options{SegmentBytes: 512})
		var short []string
		for _, r := range recs(got) {
			short = append(short, r[:5])
		}
		if fmt.Sprint(short) != fmt.Sprint(want) {
			t.Fatalf("replayed\n %v\nwant\n %v", short, want)
		}
	})
}

// Concurrent appenders through a failure and a repair: every append that returned an LSN
// is replayed at that LSN, and none that failed is.
func TestConcurrentAppendsAcrossAFailure(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		f := &Faults{}
		l, _ := openT(t, dir, Options{SegmentBytes: 8192, Faults: f})
		var mu sync.Mutex
		acked := map[string]uint64{}
		failed := map[string]bool{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := range 200 {
					r := fmt.Sprintf("w%d-%03d", w, i)
					lsn, err := l.Append([]byte(r))
					mu.Lock()
					if err == nil {
						acked[r] = lsn
					} else {
						failed[r] = true
					}
					mu.Unlock()
					if i%50 == 49 {
						_ = l.Repair()
					}
				}
			}()
		}
		f.SetFor(FaultSync, ErrIO, 5)
		close(start)
		wg.Wait()
		if err := l.Repair(); err != nil {
			t.Fatal(err)
		}
		l.Close()
		_, got := openT(t, dir, Options{SegmentBytes: 8192})
		seen := map[string]uint64{}
		for _, g := range got {
			seen[g.rec] = g.lsn
		}
		for r, lsn := range acked {
			if seen[r] != lsn {
				t.Fatalf("acknowledged %s at LSN %d; replayed at %d", r, lsn, seen[r])
			}
		}
		for r := range failed {
			if _, ok := seen[r]; ok {
				t.Fatalf("failed append %s was replayed", r)
			}
		}
		t.Logf("%d acknowledged, %d failed, %d replayed, %d injected sync failures", len(acked), len(failed), len(got), f.Hits(FaultSync))
	})
}

func mustAppend(t *testing.T, l *Log, rec string) uint64 {
	t.Helper()
	lsn, err := l.Append([]byte(rec))
	if err != nil {
		t.Fatalf("append %s: %v", rec, err)
	}
	return lsn
}

func recs(rs []replayed) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.rec)
	}
	return out
}
