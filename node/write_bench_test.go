package node

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/node/wal"
)

// BenchmarkWrite runs the write path of four real nodes in this process (durable stores
// on disk, replication over WebSockets on loopback): clients update their own resource of
// group 1 (main node 1, voters 2, 3 and 4), each waiting for its answer before the next.
// Besides ns/op it reports the process's CPU time per write, so the figure covers the
// main and its siblings; allocs/op likewise.
//
//	go test -run '^$' -bench BenchmarkWrite -benchmem ./node/
func BenchmarkWrite(b *testing.B) {
	for _, clients := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			_, nodes := testClusterWith(b, func(c *Config) { c.WriteTimeout = 5 * time.Second })
			s := nodes[0].n.NewSession()
			defer s.Close()
			ctx := context.Background()
			rids := make([]string, clients)
			for i := range rids {
				req := command.Request{Op: command.OpCreate, Type: "bench", Data: json.RawMessage(`{"n":0}`), Server: i64(1)}
				var r *command.Reply
				var err error
				waitUntil(b, 10*time.Second, "a create", func() bool {
					r, err = s.Start(ctx, &req, false)()
					return err == nil
				})
				rids[i] = r.Resource.ID
			}
			data := json.RawMessage(`{"payload":"` + strings.Repeat("x", 256) + `"}`)
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			b.ReportAllocs()
			cpu0, wal0 := cpuTime(), walTotals(nodes)
			b.ResetTimer()
			for c := 0; c < clients; c++ {
				n := b.N / clients
				if c < b.N%clients {
					n++
				}
				wg.Add(1)
				go func(rid string, n int) {
					defer wg.Done()
					for range n {
						req := command.Request{Op: command.OpUpdate, RID: rid, Data: data, JSONChecked: true} // as the API server decodes it
						if _, err := s.Start(ctx, &req, false)(); err != nil {
							errs <- err
							return
						}
					}
				}(rids[c], n)
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			wal1 := walTotals(nodes)
			b.ReportMetric(float64(wal1.Syncs-wal0.Syncs)/float64(b.N), "fsyncs/op")
			b.ReportMetric(float64(wal1.Bytes-wal0.Bytes)/float64(b.N), "wal-B/op")
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
		})
	}
}

// walTotals sums the write-ahead log counters of the nodes' stores.
func walTotals(nodes []*testNode) wal.Stats {
	var t wal.Stats
	for _, tn := range nodes {
		if d, ok := tn.n.store.(store.Durable); ok {
			s := d.WALStats()
			t.Records, t.Writes, t.Syncs, t.Bytes = t.Records+s.Records, t.Writes+s.Writes, t.Syncs+s.Syncs, t.Bytes+s.Bytes
		}
	}
	return t
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
