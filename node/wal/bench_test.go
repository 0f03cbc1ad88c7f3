package wal

import (
	"fmt"
	"sync"
	"testing"
)

// BenchmarkAppend measures durable appends of 1 KiB records from 1 and 8 writers at once;
// syncs/op shows how many records share an fdatasync.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 8} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l, err := Open(b.TempDir(), Options{}, func(uint64, []byte) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			rec := make([]byte, 1024)
			var wg sync.WaitGroup
			b.ResetTimer()
			per := b.N/writers + 1
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range per {
						if _, err := l.Append(rec); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			st := l.Stats()
			b.ReportMetric(float64(st.Syncs)/float64(st.Records), "syncs/record")
		})
	}
}
