package wal

import (
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Appenders that are runnable when a write starts ride in it: the leader lets them queue
// before it takes what is pending. With one scheduler slot and a sync that holds it, an
// appender left out waits for a whole second write.
func TestRunnableAppendersShareTheWriteThatStarts(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
		l, _ := openT(t, t.TempDir(), Options{SegmentBytes: 1 << 20})
		defer l.Close()
		const rounds, appenders = 10, 4
		for range rounds {
			start := make(chan struct{})
			var wg sync.WaitGroup
			for range appenders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if _, err := l.Append([]byte("record")); err != nil {
						t.Error(err)
					}
				}()
			}
			close(start)
			wg.Wait()
		}
		// One write per round; the scheduler may now and then run the leader before the rest.
		if st := l.Stats(); st.Syncs > rounds*3/2 {
			t.Fatalf("%d syncs for %d rounds of %d appenders that were runnable together: the first write left the others out", st.Syncs, rounds, appenders)
		}
	})
}

// A write waits GatherDelay for more records only when records queued while the write
// before it was in flight: never for a lone writer, once for two that overlap, and never
// when the delay is turned off.
func TestGatherWaitsOnlyWhenRecordsQueuedDuringTheLastWrite(t *testing.T) {
	for _, c := range []struct {
		name  string
		delay time.Duration
		waits uint64
	}{{"default", 0, 1}, {"off", -1, 0}} {
		t.Run(c.name, func(t *testing.T) {
			l, _ := openT(t, t.TempDir(), Options{SegmentBytes: 1 << 20, GatherDelay: c.delay})
			defer l.Close()
			if !l.Stats().Direct {
				t.Skip("no direct I/O in the test directory")
			}
			for range 3 {
				mustAppend(t, l, "alone")
			}
			if w := l.Stats().GatherWaits; w != 0 {
				t.Fatalf("a lone writer's writes waited %d times, want 0", w)
			}

			var wg sync.WaitGroup
			queueBehindAHeldWrite(t, l, &wg)
			wg.Wait()
			if w := l.Stats().GatherWaits; w != c.waits {
				t.Fatalf("the write after one that had a record queued behind it waited %d times, want %d", w, c.waits)
			}
		})
	}
}

// queueBehindAHeldWrite appends "first" and holds its write in flight until "second" has
// queued behind it, then lets the write go; wg counts the two appenders.
func queueBehindAHeldWrite(t *testing.T, l *Log, wg *sync.WaitGroup) {
	inWrite, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	directWrite = func(f *os.File, b []byte, off int64) error {
		once.Do(func() { close(inWrite); <-release })
		return pwriteDurable(f, b, off)
	}
	t.Cleanup(func() { directWrite = pwriteDurable })
	wg.Add(2)
	go func() { defer wg.Done(); appendOrError(t, l, "first") }()
	<-inWrite
	go func() { defer wg.Done(); appendOrError(t, l, "second") }()
	waitFor(l, func() bool { return len(l.pending) > 0 })
	close(release)
}

// appendOrError is mustAppend for goroutines other than the test's.
func appendOrError(t *testing.T, l *Log, rec string) {
	if _, err := l.Append([]byte(rec)); err != nil {
		t.Errorf("append %q: %v", rec, err)
	}
}

// A record queued while the leader gathers ends the wait at once: with a wait of an hour,
// the write that carries it still happens.
func TestARecordQueuedEndsTheGather(t *testing.T) {
	l, _ := openT(t, t.TempDir(), Options{SegmentBytes: 1 << 20, GatherDelay: time.Hour})
	defer l.Close()
	if !l.Stats().Direct {
		t.Skip("no direct I/O in the test directory")
	}
	var wg sync.WaitGroup
	queueBehindAHeldWrite(t, l, &wg)
	// "second" leads the next write and, a record having queued during the last one,
	// gathers; "third" ends that.
	waitFor(l, func() bool { return l.gathered != nil })
	wg.Add(1)
	go func() { defer wg.Done(); appendOrError(t, l, "third") }()
	wg.Wait()
	if st := l.Stats(); st.GatherWaits != 1 || st.Writes != 2 {
		t.Fatalf("%d gathers and %d writes, want 1 gather and 2 writes (first; second and third)", st.GatherWaits, st.Writes)
	}
}

// waitFor yields until cond, read under l.mu, holds.
func waitFor(l *Log, cond func() bool) {
	for {
		l.mu.Lock()
		ok := cond()
		l.mu.Unlock()
		if ok {
			return
		}
		runtime.Gosched()
	}
}
