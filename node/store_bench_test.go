package node

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

// BenchmarkBoltWrite measures the group commit: one Write (one bbolt transaction, one
// fsync) that appends n 300-byte entries, commits them and applies n put effects, as a
// main does once its siblings acked. entries/s is what one group can sustain per copy.
func BenchmarkBoltWrite(b *testing.B) {
	for _, n := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			s, err := OpenBolt(filepath.Join(b.TempDir(), "sibyl.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			gs, err := s.Group(1)
			if err != nil {
				b.Fatal(err)
			}
			data := make([]byte, 300)
			res := &command.Resource{Type: "bench", Version: 1, Data: []byte(`{"payload":"` + string(storeBenchPayload()) + `"}`)}
			var seq uint64
			for b.Loop() {
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
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// storeBenchPayload returns 280 printable bytes so the JSON resource is about 300 bytes too.
func storeBenchPayload() []byte {
	p := make([]byte, 280)
	for i := range p {
		p[i] = 'a' + byte(i%26)
	}
	return p
}
