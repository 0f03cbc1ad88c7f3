package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
	resync "github.com/sibylhq/sibyl/sync"
)

// Contract tests of compaction, vacuum and snapshot resync, part of storeContractTests.

func testStoreCompact(t *testing.T, s Store) {
	gs := storeGroup(t, s, 1)
	storeWrite(t, gs, &Batch{Append: storeEntries(1, 1, 6), CommitSeq: 6})
	storeWrite(t, gs, &Batch{Append: storeEntries(2, 7, 4), CommitSeq: 8,
		Apply: []AppliedEffect{storePut(1, "1-A", "a", 1), storeNoop(2), storeNoop(3), storeNoop(4), storeNoop(5), storeNoop(6), storeNoop(7), storeNoop(8)}})

	if err := gs.Write(&Batch{Compact: 9}); err == nil {
		t.Fatal("compaction above applied seq 8 accepted")
	}
	storeWrite(t, gs, &Batch{Compact: 7})
	m := storeMeta(t, gs)
	if m.FirstSeq != 8 || m.LastSeq != 10 || m.LastEpoch != 2 || len(m.EpochHistory) != 2 {
		t.Fatalf("meta after compacting through 7 = %+v", m)
	}
	if _, err := gs.Entries(7, 10, 0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Entries(7..) after compaction: %v, want ErrCompacted", err)
	}
	if got := storeSeqs(storeReadEntries(t, gs, 8, 10, 0)); got != "2:8 2:9 2:10" {
		t.Fatalf("entries after compaction = %s", got)
	}
	// Compacting again below the horizon is a no-op, not an error.
	storeWrite(t, gs, &Batch{Compact: 5})
	if m := storeMeta(t, gs); m.FirstSeq != 8 {
		t.Fatalf("FirstSeq after compacting below the horizon = %d", m.FirstSeq)
	}
	// The whole log compacted: the copy is empty but still continues at LastSeq+1.
	storeWrite(t, gs, &Batch{CommitSeq: 10, Apply: []AppliedEffect{storeNoop(9), storeNoop(10)}, Compact: 10})
	if m := storeMeta(t, gs); m.FirstSeq != 11 || m.LastSeq != 10 || m.LastEpoch != 2 {
		t.Fatalf("meta after compacting everything = %+v", m)
	}
	if err := gs.Write(&Batch{Append: storeEntries(2, 12, 1)}); err == nil {
		t.Fatal("append of seq 12 after last seq 10 accepted")
	}
	storeWrite(t, gs, &Batch{Append: storeEntries(3, 11, 1)})
	if m := storeMeta(t, gs); m.FirstSeq != 11 || m.LastSeq != 11 || m.LastEpoch != 3 {
		t.Fatalf("meta after appending to the compacted log = %+v", m)
	}
}

func testStoreVacuum(t *testing.T, s Store) {
	gs := storeGroup(t, s, 1)
	old, recent := storeTestAt, storeTestAt.Add(time.Hour)
	del := func(seq uint64, rid string, at time.Time) AppliedEffect {
		a := storeDelete(seq, rid, 2)
		a.Effect.At = at
		return a
	}
	keyed := func(seq uint64, key string, at time.Time) AppliedEffect {
		a := storeNoop(seq)
		a.Effect.Dedupe = &command.DedupeRecord{Key: key, Hash: "h", Op: command.OpDelete, Seq: seq, At: at}
		return a
	}
	vac := AppliedEffect{Seq: 6, Effect: command.Effect{Kind: command.EffectVacuum, Vacuum: &command.Vacuum{
		Tombstones: 2, Dedupe: 4}}}
	storeWrite(t, gs, &Batch{Append: storeEntries(1, 1, 7), CommitSeq: 7, Apply: []AppliedEffect{
		del(1, "1-A", old),    // at or below the bound: dropped
		del(2, "1-B", recent), // at the bound: dropped (bounds are seqs, never times)
		del(3, "1-C", old),    // above the bound: kept
		keyed(4, "k-old", old), keyed(5, "k-new", recent), vac,
		del(7, "1-D", old), // after the vacuum entry: kept
	}})
	want := map[string]bool{"1-A": false, "1-B": false, "1-C": true, "1-D": true}
	for rid, kept := range want {
		_, ts, err := gs.Resource(rid)
		if err != nil || (ts != nil) != kept {
			t.Errorf("tombstone of %s after vacuum: %+v, %v; want kept=%t", rid, ts, err, kept)
		}
	}
	if rec, _ := gs.Dedupe("k-old"); rec != nil {
		t.Errorf("old dedupe record survived the vacuum: %+v", rec)
	}
	if rec, _ := gs.Dedupe("k-new"); rec == nil {
		t.Error("recent dedupe record was vacuumed")
	}
}

// storeFill writes n resources (with tombstones, dedupe records and tickets among them)
// and commits and applies them.
func storeFill(t *testing.T, gs GroupStore, from uint64, n int) {
	t.Helper()
	var apply []AppliedEffect
	for i := 0; i < n; i++ {
		seq := from + uint64(i)
		rid := fmt.Sprintf("1-%026d", seq)
		switch {
		case i%10 == 3:
			apply = append(apply, storeDelete(seq, fmt.Sprintf("1-%026d", seq-1), 2))
		case i%10 == 5:
			apply = append(apply, storeTicket(seq, fmt.Sprintf("1-%026d", seq-1), liveTicket(seq, 5000)))
		default:
			a := storePut(seq, rid, "t", 1)
			if i%7 == 0 {
				a.Effect.Dedupe = &command.DedupeRecord{Key: "key-" + rid, Hash: "h", Op: command.OpCreate, Seq: seq, At: storeTestAt}
			}
			apply = append(apply, a)
		}
	}
	storeWrite(t, gs, &Batch{Append: storeEntries(1, from, n), CommitSeq: from + uint64(n) - 1, Apply: apply})
}

func storeProbes(n int) []string {
	var p []string
	for i := 1; i <= n; i++ {
		p = append(p, fmt.Sprintf("1-%026d", i), fmt.Sprintf("key-1-%026d", i))
	}
	return p
}

func testStoreSnapshotResync(t *testing.T, s Store) {
	src := storeGroup(t, s, 1)
	storeFill(t, src, 1, 300)
	want := storeStateOf(t, src, storeProbes(320)...)
	snap, err := src.Snapshot(42)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Close()
	// Writes after the snapshot opened are not in it.
	storeFill(t, src, 301, 20)
	h := snap.Header()
	if h.Seq != 300 || h.SeqEpoch != 1 || len(h.History) != 1 {
		t.Fatalf("snapshot header %+v", h)
	}

	dst := storeGroup(t, s, 2)
	storeWrite(t, dst, &Batch{Epoch: 4, Append: storeEntries(1, 1, 3), CommitSeq: 2,
		Apply: []AppliedEffect{storePut(1, "1-00000000000000000000000999", "stale", 1)}})
	copyID := storeMeta(t, dst).CopyID
	a, b := resync.Pipe(8)
	defer a.Close()
	done := make(chan error, 1)
	go func() {
		_, _, err := resync.Receive(context.Background(), b, groupSink{dst}, resync.ReceiveOptions{})
		done <- err
	}()
	if _, err := resync.Send(context.Background(), a, snap, resync.SendOptions{ChunkRecords: 16}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Receive: %v", err)
	}
	got := storeStateOf(t, dst, storeProbes(320)...)
	m := got.Meta
	if m.FirstSeq != 301 || m.LastSeq != 300 || m.CommitSeq != 300 || m.Applied != 300 || m.Epoch != 4 ||
		m.Resyncing || m.CopyID != copyID || !reflect.DeepEqual(m.EpochHistory, []sibling.EpochStart{{Epoch: 1, FirstSeq: 1}}) {
		t.Fatalf("meta after install = %+v", m)
	}
	if !reflect.DeepEqual(got.Live, want.Live) || !reflect.DeepEqual(got.Probes, want.Probes) {
		t.Fatal("installed state differs from the snapshot's")
	}
	if res, _, _ := dst.Resource("1-00000000000000000000000999"); res != nil {
		t.Fatal("a record of the wiped copy survived the resync (zombie)")
	}
	// The copy continues its log at 301 from the main's entries.
	storeWrite(t, dst, &Batch{Append: storeEntries(1, 301, 2)})
}

func testStoreResyncResumeAndCrash(t *testing.T, s Store) {
	src := storeGroup(t, s, 1)
	storeFill(t, src, 1, 200)
	snap, err := src.Snapshot(7)
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Close()
	dst := storeGroup(t, s, 2)
	storeFill(t, dst, 1, 5)

	pos, err := dst.BeginResync(snap.Header())
	if err != nil || pos != nil {
		t.Fatalf("BeginResync: %q, %v", pos, err)
	}
	recs, err := snap.Read(nil, 1<<20, 50)
	if err != nil || len(recs) != 50 {
		t.Fatalf("Read: %d records, %v", len(recs), err)
	}
	if err := dst.WriteResync(recs); err != nil {
		t.Fatalf("WriteResync: %v", err)
	}
	// A crash here leaves a copy that knows it holds nothing usable.
	if m := storeMeta(t, dst); !m.Resyncing || m.LastSeq != 0 || m.CommitSeq != 0 {
		t.Fatalf("meta in the middle of a resync = %+v", m)
	}
	if err := dst.Write(&Batch{Append: storeEntries(1, 1, 1)}); err == nil {
		t.Fatal("append to a copy in the middle of a resync accepted")
	}
	// The same snapshot resumes after the last record written; another starts over.
	pos, err = dst.BeginResync(snap.Header())
	if err != nil || string(pos) != string(resync.PositionOf(recs[49])) {
		t.Fatalf("resume position %q, %v; want %q", pos, err, resync.PositionOf(recs[49]))
	}
	other := snap.Header()
	other.ID = 8
	if pos, err = dst.BeginResync(other); err != nil || pos != nil {
		t.Fatalf("BeginResync of another snapshot: %q, %v", pos, err)
	}
	if live, _ := dst.List("", "", 0); len(live) != 0 {
		t.Fatalf("%d resources survived the restart of the resync", len(live))
	}
	if err := dst.FinishResync(snap.Header()); err == nil {
		t.Fatal("FinishResync of a snapshot other than the one under way accepted")
	}
}

func testStoreReset(t *testing.T, s Store) {
	gs := storeGroup(t, s, 1)
	storeFill(t, gs, 1, 50)
	before := storeMeta(t, gs)
	if err := gs.Reset(7); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	m := storeMeta(t, gs)
	if m.Epoch != 7 || m.LastSeq != 0 || m.CommitSeq != 0 || m.Applied != 0 || m.FirstSeq != 1 || m.Resyncing ||
		len(m.EpochHistory) != 0 || m.CopyID == "" || m.CopyID == before.CopyID {
		t.Fatalf("meta after Reset = %+v (before %+v)", m, before)
	}
	if live, _ := gs.List("", "", 0); len(live) != 0 {
		t.Fatalf("%d resources survived Reset", len(live))
	}
	storeWrite(t, gs, &Batch{Append: storeEntries(7, 1, 2), CommitSeq: 2})
	// A copy marked resyncing starts over unmarked.
	if _, err := gs.BeginResync(resync.Header{ID: 3}); err != nil {
		t.Fatal(err)
	}
	if err := gs.Reset(7); err != nil {
		t.Fatal(err)
	}
	if m := storeMeta(t, gs); m.Resyncing {
		t.Fatalf("meta after resetting a resyncing copy = %+v", m)
	}
}
