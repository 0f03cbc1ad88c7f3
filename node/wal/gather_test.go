package wal

import (
	"runtime"
	"sync"
	"testing"
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
