package store

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/node/wal"
)

// waitHealed waits (on the store's change channel, with a deadline) until the store takes
// writes again.
func waitHealed(t *testing.T, s Store) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		fault, changed := s.(Health).Fault()
		if fault == nil {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("the store did not heal within 10 s: %v", fault)
		}
	}
}

func waitFaulted(t *testing.T, s Store) error {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		fault, changed := s.(Health).Fault()
		if fault != nil {
			return fault
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatal("the store reported no fault within 10 s")
		}
	}
}

// A write whose log write or sync fails is refused with ErrDiskFault and changes nothing;
// the store refuses writes while the disk fails, heals by itself when it works again, and
// after a crash holds exactly the writes it acknowledged.
func TestDurableStoreLogFaultIsNotAcknowledged(t *testing.T) {
	for _, tc := range []struct {
		name  string
		point wal.FaultPoint
		err   error
	}{{"write-ENOSPC", wal.FaultWrite, wal.ErrNoSpace}, {"sync-EIO", wal.FaultSync, wal.ErrIO}, {"segment-ENOSPC", wal.FaultCreate, wal.ErrNoSpace}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := &wal.Faults{}
			opts := DurableOptions{HealEvery: 10 * time.Millisecond, WAL: wal.Options{SegmentBytes: 4096, Faults: f}}
			s := openTestDurable(t, dir, opts)
			gs := storeGroup(t, s, 1)
			storeWrite(t, gs, &Batch{Epoch: 1, Append: storeEntries(1, 1, 1)})
			f.Set(tc.point, tc.err)
			var err error
			for seq := uint64(2); err == nil; seq++ { // a segment fault shows at the next roll
				err = gs.Write(&Batch{Append: storeEntries(1, seq, 1), CommitSeq: seq - 1,
					Apply: []AppliedEffect{storePut(seq-1, "1-A", "t", seq-1)}})
				if seq > 200 {
					t.Fatal("200 writes went through with the disk failing")
				}
			}
			if !errors.Is(err, ErrDiskFault) || !errors.Is(err, tc.err) {
				t.Fatalf("failed write: %v; want ErrDiskFault and %v", err, tc.err)
			}
			before := storeMeta(t, gs)
			if fault := waitFaulted(t, s); !errors.Is(fault, tc.err) {
				t.Fatalf("store fault %v, want %v", fault, tc.err)
			}
			if err := gs.Write(&Batch{Append: storeEntries(1, before.LastSeq+1, 1)}); !errors.Is(err, ErrDiskFault) {
				t.Fatalf("write while faulted: %v, want ErrDiskFault", err)
			}
			if m := storeMeta(t, gs); !reflect.DeepEqual(m, before) {
				t.Fatalf("a refused write changed the copy:\n got %+v\nwant %+v", m, before)
			}
			f.Heal()
			waitHealed(t, s)
			storeWrite(t, gs, &Batch{Append: storeEntries(1, before.LastSeq+1, 1), CommitSeq: before.LastSeq})
			want := storeStateOf(t, gs, "1-A")
			if err := s.(*walStore).crash(); err != nil {
				t.Fatal(err)
			}
			s = openTestDurable(t, dir, opts)
			defer s.Close()
			if got := storeStateOf(t, storeGroup(t, s, 1), "1-A"); !reflect.DeepEqual(got, want) {
				t.Fatalf("after heal and crash:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// A batch that only commits and applies is not waited for: when the write that would have
// carried it fails, the store keeps it and the repaired log writes it, so a crash after
// the heal still has it applied.
func TestDurableStoreKeepsLazyBatchesAcrossAFault(t *testing.T) {
	dir := t.TempDir()
	f := &wal.Faults{}
	opts := DurableOptions{HealEvery: 10 * time.Millisecond, WAL: wal.Options{Faults: f}}
	s := openTestDurable(t, dir, opts)
	gs := storeGroup(t, s, 1)
	storeWrite(t, gs, &Batch{Epoch: 1, Append: storeEntries(1, 1, 2)})
	storeWrite(t, gs, &Batch{CommitSeq: 2, Apply: []AppliedEffect{storePut(1, "1-A", "t", 1), storePut(2, "1-B", "t", 1)}})
	f.Set(wal.FaultSync, wal.ErrIO)
	if err := gs.Write(&Batch{Append: storeEntries(1, 3, 1)}); !errors.Is(err, ErrDiskFault) {
		t.Fatalf("write with a failing sync: %v", err)
	}
	f.Heal()
	waitHealed(t, s)
	want := storeStateOf(t, gs, "1-A", "1-B")
	if want.Meta.Applied != 2 || want.Meta.LastSeq != 2 {
		t.Fatalf("before the crash: %+v", want.Meta)
	}
	if err := s.(*walStore).crash(); err != nil {
		t.Fatal(err)
	}
	s = openTestDurable(t, dir, opts)
	defer s.Close()
	if got := storeStateOf(t, storeGroup(t, s, 1), "1-A", "1-B"); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the crash:\n got %+v\nwant %+v", got, want)
	}
}

// A flush whose bbolt commit fails faults the store; the changes stay readable from the
// layers, the log is kept, and the next successful flush stores them.
func TestDurableStoreCommitFaultHeals(t *testing.T) {
	dir := t.TempDir()
	f := &wal.Faults{}
	opts := DurableOptions{HealEvery: 10 * time.Millisecond, WAL: wal.Options{Faults: f}}
	s := openTestDurable(t, dir, opts)
	gs := storeGroup(t, s, 1)
	storeWrite(t, gs, &Batch{Epoch: 1, Append: storeEntries(1, 1, 1), CommitSeq: 1,
		Apply: []AppliedEffect{storePut(1, "1-A", "t", 1)}})
	f.Set(wal.FaultCommit, wal.ErrNoSpace)
	if err := s.(Durable).Flush(); !errors.Is(err, wal.ErrNoSpace) {
		t.Fatalf("flush with a failing commit: %v", err)
	}
	s.(*walStore).setFault(wal.ErrNoSpace) // as the flusher does with a failed flush
	if err := gs.Write(&Batch{Append: storeEntries(1, 2, 1)}); !errors.Is(err, ErrDiskFault) {
		t.Fatalf("write while bbolt fails: %v", err)
	}
	want := storeStateOf(t, gs, "1-A")
	if want.Meta.Applied != 1 {
		t.Fatalf("the failed flush lost the layer: %+v", want.Meta)
	}
	f.Heal()
	waitHealed(t, s)
	if err := s.(*walStore).crash(); err != nil {
		t.Fatal(err)
	}
	s = openTestDurable(t, dir, opts)
	defer s.Close()
	if r := s.(*walStore).Replayed(); r.Applied != 0 {
		t.Fatalf("boot replayed %d records: the healed flush did not store them", r.Applied)
	}
	if got := storeStateOf(t, storeGroup(t, s, 1), "1-A"); !reflect.DeepEqual(got, want) {
		t.Fatalf("after heal and crash:\n got %+v\nwant %+v", got, want)
	}
}
