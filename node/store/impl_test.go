package store

import (
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

func TestMemStore(t *testing.T) {
	storeContractTests(t, func(t *testing.T) Store { return NewMemStore() })
}

func openTestBolt(t *testing.T, path string) Store {
	t.Helper()
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	return s
}

func TestBoltStore(t *testing.T) {
	storeContractTests(t, func(t *testing.T) Store {
		return openTestBolt(t, filepath.Join(t.TempDir(), "sibyl.db"))
	})
}

// TestBoltStoreReopen checks durability across Close: everything a returned Write stored is
// there after reopening the file, and the reopened copy continues where it stopped.
func TestBoltStoreReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sibyl.db")
	storeReopenTest(t, func() Store { return openTestBolt(t, path) }, func(s Store) error { return s.Close() })
}

func storeReopenTest(t *testing.T, open func() Store, stop func(Store) error) {
	s := open()
	g1, g10 := storeGroup(t, s, 1), storeGroup(t, s, 10)
	del := storeDelete(3, "1-B", 2)
	del.Effect.Dedupe = &command.DedupeRecord{Key: "k", Hash: "h", Op: command.OpDelete, Epoch: 2, Seq: 3, At: storeTestAt}
	storeWrite(t, g1, &Batch{Epoch: 1, Append: storeEntries(1, 1, 2)})
	storeWrite(t, g1, &Batch{Epoch: 2, Append: storeEntries(2, 3, 4), CommitSeq: 4,
		Apply: []AppliedEffect{storePut(1, "1-A", "a", 1), storePut(2, "1-B", "b", 1), del}})
	storeWrite(t, g1, &Batch{Epoch: 3, Truncate: 6})
	storeWrite(t, g10, &Batch{Append: storeEntries(4, 1, 1)})
	probes := []string{"1-A", "1-B", "k"}
	want1, want10 := storeStateOf(t, g1, probes...), storeStateOf(t, g10)
	if want1.Meta.Epoch != 3 || want1.Meta.LastSeq != 5 || want1.Meta.Applied != 3 || len(want1.Meta.EpochHistory) != 2 {
		t.Fatalf("group 1 before close = %+v", want1.Meta)
	}
	if err := stop(s); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := g1.Meta(); err == nil {
		t.Errorf("Meta on a closed store succeeded")
	}

	s = open()
	defer s.Close()
	if gs, err := s.Groups(); err != nil || !slices.Equal(gs, []command.ServerID{1, 10}) {
		t.Errorf("Groups after reopen = %v, %v; want [1 10]", gs, err)
	}
	g1, g10 = storeGroup(t, s, 1), storeGroup(t, s, 10)
	if got := storeStateOf(t, g1, probes...); !reflect.DeepEqual(got, want1) {
		t.Errorf("group 1 after reopen:\n got %+v\nwant %+v", got, want1)
	}
	if got := storeStateOf(t, g10); !reflect.DeepEqual(got, want10) {
		t.Errorf("group 10 after reopen:\n got %+v\nwant %+v", got, want10)
	}
	storeWrite(t, g1, &Batch{Append: []sibling.Entry{{Epoch: 3, Seq: 6, Data: []byte("x")}}, CommitSeq: 6,
		Apply: []AppliedEffect{storeNoop(4), storeNoop(5), storeNoop(6)}})
	if m := storeMeta(t, g1); m.LastSeq != 6 || m.LastEpoch != 3 || m.Applied != 6 || m.CopyID != want1.Meta.CopyID {
		t.Errorf("meta after writing to the reopened copy = %+v", m)
	}
}
