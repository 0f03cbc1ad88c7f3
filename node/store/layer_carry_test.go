package store

import (
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// boltLogSeqs lists the seqs the state store itself (bbolt, not the layers) holds in g's
// log bucket.
func boltLogSeqs(t *testing.T, s *walStore, g *walGroup) []uint64 {
	t.Helper()
	var seqs []uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(g.name).Bucket([]byte(subBucketNames[bucketLog]))
		return b.ForEach(func(k, _ []byte) error {
			seq, err := logSeq(k)
			seqs = append(seqs, seq)
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return seqs
}

func seqRange(lo, hi uint64) []uint64 {
	var out []uint64
	for s := lo; s <= hi; s++ {
		out = append(out, s)
	}
	return out
}

// Entries compacted within KeepFlushes flushes of their append never reach bbolt; those
// still there are written by the flush after; a crash meanwhile rebuilds the kept ones from
// the log, and a clean shutdown writes them all.
func TestFlushKeepsShortLivedLogEntriesOutOfBbolt(t *testing.T) {
	dir := t.TempDir()
	opts := DurableOptions{KeepFlushes: 1}
	st := openTestDurable(t, dir, opts)
	s := st.(*walStore)
	gs := storeGroup(t, s, 1)
	wg := s.groups[1]
	var noops []AppliedEffect
	for seq := uint64(1); seq <= 100; seq++ {
		noops = append(noops, storeNoop(seq))
	}
	storeWrite(t, gs, &Batch{Epoch: 1, Append: storeEntries(1, 1, 100), CommitSeq: 100, Apply: noops})

	flush := func(what string) {
		t.Helper()
		if err := s.Flush(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	expect := func(what string, want []uint64) {
		t.Helper()
		if got := boltLogSeqs(t, s, wg); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: bbolt's log bucket holds %v, want %v", what, got, want)
		}
	}
	flush("the flush after the append")
	expect("after the flush that appended 1..100", nil)
	storeWrite(t, gs, &Batch{Compact: 50})
	flush("the flush after the compaction")
	expect("after compacting 1..50 and a second flush", nil)

	// A crash now: the log still holds the appends, and a boot puts 51..100 back.
	if err := s.crash(); err != nil {
		t.Fatal(err)
	}
	st = openTestDurable(t, dir, opts)
	s = st.(*walStore)
	wg = s.groups[1]
	if r := s.Replayed(); r.LogOnly == 0 {
		t.Fatalf("boot replayed %+v: no record for its log entries only", r)
	}
	gs = storeGroup(t, s, 1)
	es, err := gs.Entries(51, 100, 0)
	if err != nil || len(es) != 50 || es[0].Seq != 51 {
		t.Fatalf("after a crash with entries kept in memory: %d entries (%v), want 51..100", len(es), err)
	}
	if m, _ := gs.Meta(); m.FirstSeq != 51 || m.LastSeq != 100 {
		t.Fatalf("after the crash the log holds %d..%d, want 51..100", m.FirstSeq, m.LastSeq)
	}
	flush("the first flush after the boot")
	expect("after the first flush after the boot", nil)
	flush("the second flush after the boot")
	expect("after the second flush after the boot", nil)
	flush("the third flush after the boot")
	expect("after the third flush after the boot", seqRange(51, 100))

	// A clean shutdown keeps nothing in memory.
	storeWrite(t, gs, &Batch{Epoch: 1, Append: storeEntries(1, 101, 10)})
	flush("a flush of 101..110")
	expect("after a flush of 101..110", seqRange(51, 100))
	if len(s.groups[1].carried) != 1 {
		t.Fatalf("after a flush of 101..110, %d generations kept, want 1", len(s.groups[1].carried))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st = openTestDurable(t, dir, opts)
	s = st.(*walStore)
	defer s.Close()
	if r := s.Replayed(); r.Applied != 0 || r.LogOnly != 0 {
		t.Fatalf("boot after a clean shutdown replayed %+v", r)
	}
	expect("after a clean shutdown", seqRange(51, 110))
}
