package store

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

// benchStores opens each real store kind: the bbolt store alone (one transaction and its
// fsyncs per write) and the durable store (a log record per write, bbolt in flushes).
var benchStores = []struct {
	name string
	open func(b *testing.B) Store
}{
	{"bolt", func(b *testing.B) Store {
		s, err := OpenBolt(filepath.Join(b.TempDir(), "sibyl.db"))
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
	{"durable", func(b *testing.B) Store {
		s, err := OpenDurable(b.TempDir(), DurableOptions{})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
}

// BenchmarkStoreWrite measures one Write that appends n 300-byte entries, commits them and
// applies n put effects, as a main does once its siblings acked, on each store; groups=4
// runs four groups writing at once (a node that is main of one and sibling of three),
// where the durable store's writes share their fsyncs. entries/s is per store.
//
//	go test ./node -run x -bench StoreWrite -count 6 | benchstat -
func BenchmarkStoreWrite(b *testing.B) {
	for _, st := range benchStores {
		for _, groups := range []int{1, 4} {
			for _, n := range []int{1, 16, 256} {
				b.Run(fmt.Sprintf("store=%s/groups=%d/batch=%d", st.name, groups, n), func(b *testing.B) {
					s := st.open(b)
					defer s.Close()
					var entries sync.WaitGroup
					total := make([]uint64, groups)
					b.ResetTimer()
					for g := range groups {
						gs, err := s.Group(command.ServerID(g + 1))
						if err != nil {
							b.Fatal(err)
						}
						entries.Add(1)
						go func() {
							defer entries.Done()
							total[g] = benchStoreWrites(b, gs, n, b.N)
						}()
					}
					entries.Wait()
					var sum uint64
					for _, t := range total {
						sum += t
					}
					b.ReportMetric(float64(sum)/b.Elapsed().Seconds(), "entries/s")
				})
			}
		}
	}
}

// benchStoreWrites writes `writes` batches of n entries to gs and returns how many entries it wrote.
func benchStoreWrites(b *testing.B, gs GroupStore, n, writes int) uint64 {
	data := make([]byte, 300)
	res := &command.Resource{Type: "bench", Version: 1, Data: []byte(`{"payload":"` + string(storeBenchPayload()) + `"}`)}
	var seq uint64
	for range writes {
		batch := &Batch{Append: make([]sibling.Entry, n), Apply: make([]AppliedEffect, n)}
		for i := range n {
			seq++
			batch.Append[i] = sibling.Entry{Epoch: 1, Seq: seq, Data: data}
			r := *res
			r.ID = fmt.Sprintf("1-%026d", seq)
			batch.Apply[i] = AppliedEffect{Seq: seq, Effect: command.Effect{Kind: command.EffectPut, RID: r.ID, Resource: &r}}
		}
		batch.CommitSeq = seq
		if err := gs.Write(batch); err != nil {
			b.Error(err)
			return seq
		}
	}
	return seq
}

// storeBenchPayload returns 280 printable bytes so the JSON resource is about 300 bytes too.
func storeBenchPayload() []byte {
	p := make([]byte, 280)
	for i := range p {
		p[i] = 'a' + byte(i%26)
	}
	return p
}
