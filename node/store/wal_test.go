package store

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/sibylhq/sibyl/node/wal"
)

func openTestDurable(t *testing.T, dir string, opts DurableOptions) Store {
	t.Helper()
	s, err := OpenDurable(dir, opts)
	if err != nil {
		t.Fatalf("OpenDurable: %v", err)
	}
	return s
}

// The contract holds with every change still in the layer (no flush during the test) and
// with a flush after every write, racing the test's reads.
func TestDurableStore(t *testing.T) {
	storeContractTests(t, func(t *testing.T) Store { return openTestDurable(t, t.TempDir(), DurableOptions{}) })
}

func TestDurableStoreFlushingAlways(t *testing.T) {
	storeContractTests(t, func(t *testing.T) Store {
		return openTestDurable(t, t.TempDir(), DurableOptions{FlushBytes: 1})
	})
}

func TestDurableStoreReopen(t *testing.T) {
	dir := t.TempDir()
	storeReopenTest(t, func() Store { return openTestDurable(t, dir, DurableOptions{}) }, func(s Store) error { return s.Close() })
}

// After a crash the log tail is replayed over the state store.
func TestDurableStoreReopenAfterCrash(t *testing.T) {
	dir := t.TempDir()
	storeReopenTest(t, func() Store { return openTestDurable(t, dir, DurableOptions{}) },
		func(s Store) error { return s.(*walStore).crash() })
}

func TestDurableStoreReopenAfterCrashMidFlushes(t *testing.T) {
	dir := t.TempDir()
	storeReopenTest(t, func() Store { return openTestDurable(t, dir, DurableOptions{FlushBytes: 1}) },
		func(s Store) error { return s.(*walStore).crash() })
}

// A boot replays only the log since the oldest flush whose log entries are still kept in
// memory (layer_carry.go): the bound on recovery, about (KeepFlushes+2) flush thresholds.
func TestDurableStoreBootReplaysOnlySinceTheLastFlush(t *testing.T) {
	dir := t.TempDir()
	const flushBytes = 64 << 10
	opts := DurableOptions{FlushBytes: flushBytes, WAL: wal.Options{SegmentBytes: 32 << 10}}
	s := openTestDurable(t, dir, opts)
	gs := storeGroup(t, s, 1)
	seq := uint64(0)
	for i := range 3000 {
		seq++
		storeWrite(t, gs, &Batch{Epoch: 1, Append: storeEntries(1, seq, 1), CommitSeq: seq,
			Apply: []AppliedEffect{storePut(seq, fmt.Sprintf("1-%06d", i), "payload-payload-payload", 1)}})
	}
	written := s.(*walStore).WALStats().Bytes
	want := storeStateOf(t, gs, "1-000000", "1-002999")
	if err := s.(*walStore).crash(); err != nil {
		t.Fatal(err)
	}
	s = openTestDurable(t, dir, opts)
	defer s.Close()
	r := s.(*walStore).Replayed()
	// Flushes are asynchronous and segments are removed whole: allow another threshold.
	bound := (DefaultKeepFlushes+3)*flushBytes + (32 << 10)
	if r.Bytes > uint64(bound) {
		t.Fatalf("boot replayed %d bytes of %d written; the bound is about %d", r.Bytes, written, bound)
	}
	if r.Bytes >= written {
		t.Fatalf("boot replayed the whole log (%d bytes): nothing was flushed", r.Bytes)
	}
	if got := storeStateOf(t, storeGroup(t, s, 1), "1-000000", "1-002999"); !reflect.DeepEqual(got, want) {
		t.Fatalf("after crash and replay:\n got %+v\nwant %+v", got, want)
	}
	t.Logf("wrote %d bytes of log, replayed %d (%d records, %d applied)", written, r.Bytes, r.Records, r.Applied)
}

// A dropped group's old records are not replayed into a new copy of the same group.
func TestDurableStoreDropAndRecreateAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s := openTestDurable(t, dir, DurableOptions{})
	gs := storeGroup(t, s, 7)
	storeWrite(t, gs, &Batch{Epoch: 1, Append: storeEntries(1, 1, 1), CommitSeq: 1,
		Apply: []AppliedEffect{storePut(1, "7-A", "a", 1)}})
	if err := s.DropGroup(7); err != nil {
		t.Fatal(err)
	}
	gs = storeGroup(t, s, 7)
	storeWrite(t, gs, &Batch{Epoch: 2, Append: storeEntries(2, 5, 1)})
	want := storeStateOf(t, gs, "7-A")
	if err := s.(*walStore).crash(); err != nil {
		t.Fatal(err)
	}
	s = openTestDurable(t, dir, DurableOptions{})
	defer s.Close()
	if got := storeStateOf(t, storeGroup(t, s, 7), "7-A"); !reflect.DeepEqual(got, want) {
		t.Fatalf("recreated group after crash:\n got %+v\nwant %+v", got, want)
	}
}
