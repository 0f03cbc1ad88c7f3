package store

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

// storeContractTests is the one test suite every Store implementation must pass. open
// returns a fresh, empty store; the suite closes it.
func storeContractTests(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"EmptyGroup", testStoreEmptyGroup},
		{"AppendAndEntries", testStoreAppendAndEntries},
		{"EmptyLogStartsAnywhere", testStoreEmptyLogStart},
		{"ApplyPutDeleteDedupe", testStoreApply},
		{"AppendCommitApplyInOneBatch", testStoreOneBatch},
		{"List", testStoreList},
		{"Truncate", testStoreTruncate},
		{"EpochHistory", testStoreEpochHistory},
		{"EpochNeverDecreases", testStoreEpochNeverDecreases},
		{"InvalidBatchChangesNothing", testStoreInvalidBatches},
		{"GroupsAndDrop", testStoreGroupsAndDrop},
		{"ConcurrentReadersSeeWholeBatches", testStoreConcurrentReaders},
		{"Tickets", testStoreTickets},
		{"InvalidTicketBatchChangesNothing", testStoreInvalidTicketBatches},
		{"Compact", testStoreCompact},
		{"Vacuum", testStoreVacuum},
		{"SnapshotResync", testStoreSnapshotResync},
		{"ResyncResumeAndCrash", testStoreResyncResumeAndCrash},
		{"Reset", testStoreReset},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			defer func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			tc.fn(t, s)
		})
	}
}

var storeTestAt = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func storeGroup(t *testing.T, s Store, g command.ServerID) GroupStore {
	t.Helper()
	gs, err := s.Group(g)
	if err != nil {
		t.Fatalf("Group(%d): %v", g, err)
	}
	return gs
}

func storeMeta(t *testing.T, gs GroupStore) Meta {
	t.Helper()
	m, err := gs.Meta()
	if err != nil {
		t.Fatalf("Meta: %v", err)
	}
	return m
}

func storeWrite(t *testing.T, gs GroupStore, b *Batch) {
	t.Helper()
	if err := gs.Write(b); err != nil {
		t.Fatalf("Write(%+v): %v", *b, err)
	}
}

func storeReadEntries(t *testing.T, gs GroupStore, from, to uint64, maxBytes int) []sibling.Entry {
	t.Helper()
	es, err := gs.Entries(from, to, maxBytes)
	if err != nil {
		t.Fatalf("Entries(%d, %d, %d): %v", from, to, maxBytes, err)
	}
	return es
}

// entries makes n entries of epoch e from seq from; each carries 10 bytes of data that
// name it, so a test can tell which copy of a seq it reads.
func storeEntries(e, from uint64, n int) []sibling.Entry {
	out := make([]sibling.Entry, n)
	for i := range out {
		s := from + uint64(i)
		out[i] = sibling.Entry{Epoch: e, Seq: s, Data: []byte(fmt.Sprintf("e%03d/s%04d", e, s))}
	}
	return out
}

// storeSeqs renders entries as "epoch:seq" for compact comparisons.
func storeSeqs(es []sibling.Entry) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = fmt.Sprintf("%d:%d", e.Epoch, e.Seq)
	}
	return strings.Join(parts, " ")
}

func storeResource(rid, typ string, version uint64) *command.Resource {
	return &command.Resource{ID: rid, Type: typ, Version: version,
		Data: json.RawMessage(fmt.Sprintf(`{"v":%d}`, version)), Created: storeTestAt, Updated: storeTestAt}
}

func storePut(seq uint64, rid, typ string, version uint64) AppliedEffect {
	return AppliedEffect{Seq: seq, Effect: command.Effect{Kind: command.EffectPut, RID: rid,
		Resource: storeResource(rid, typ, version), At: storeTestAt}}
}

func storeDelete(seq uint64, rid string, version uint64) AppliedEffect {
	return AppliedEffect{Seq: seq, Effect: command.Effect{Kind: command.EffectDelete, RID: rid,
		Version: version, At: storeTestAt}}
}

func storeNoop(seq uint64) AppliedEffect {
	return AppliedEffect{Seq: seq, Effect: command.Effect{Kind: command.EffectNoop}}
}

// storeGroupState is everything a reader can observe of a group, for before/after comparisons.
type storeGroupState struct {
	Meta    Meta
	Entries []sibling.Entry
	Live    []command.Resource
	Probes  map[string]string
}

// storeStateOf reads the whole observable state, probing rids and dedupe keys explicitly
// because tombstones, dedupe records and ended tickets cannot be listed.
func storeStateOf(t *testing.T, gs GroupStore, probes ...string) storeGroupState {
	t.Helper()
	st := storeGroupState{Meta: storeMeta(t, gs), Probes: map[string]string{}}
	if st.Meta.LastSeq >= st.Meta.FirstSeq {
		st.Entries = storeReadEntries(t, gs, st.Meta.FirstSeq, st.Meta.LastSeq, 0)
	}
	var err error
	if st.Live, err = gs.List("", "", 0); err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, p := range probes {
		res, ts, err := gs.Resource(p)
		if err != nil {
			t.Fatalf("Resource(%q): %v", p, err)
		}
		rec, err := gs.Dedupe(p)
		if err != nil {
			t.Fatalf("Dedupe(%q): %v", p, err)
		}
		tk, err := gs.Ticket(p)
		if err != nil {
			t.Fatalf("Ticket(%q): %v", p, err)
		}
		b, _ := json.Marshal(struct {
			R *command.Resource
			T *command.Tombstone
			D *command.DedupeRecord
			K command.TicketState
		}{res, ts, rec, tk})
		st.Probes[p] = string(b)
	}
	return st
}

func testStoreEmptyGroup(t *testing.T, s Store) {
	gs := storeGroup(t, s, 7)
	m := storeMeta(t, gs)
	if m.FirstSeq != 1 || m.LastSeq != 0 || m.LastEpoch != 0 || m.Epoch != 0 || m.CommitSeq != 0 ||
		m.Applied != 0 || len(m.EpochHistory) != 0 {
		t.Errorf("empty group meta = %+v, want FirstSeq 1 and everything else zero", m)
	}
	if b, err := hex.DecodeString(m.CopyID); err != nil || len(b) != 16 {
		t.Errorf("CopyID %q is not 128 bits of hex", m.CopyID)
	}
	if es := storeReadEntries(t, gs, 1, 100, 0); len(es) != 0 {
		t.Errorf("Entries of an empty log = %s", storeSeqs(es))
	}
	if res, ts, err := gs.Resource("7-X"); res != nil || ts != nil || err != nil {
		t.Errorf("Resource of unknown rid = %v, %v, %v; want nil, nil, nil", res, ts, err)
	}
	if rec, err := gs.Dedupe("k"); rec != nil || err != nil {
		t.Errorf("Dedupe of unknown key = %v, %v", rec, err)
	}
	if l, err := gs.List("", "", 0); len(l) != 0 || err != nil {
		t.Errorf("List of empty group = %v, %v", l, err)
	}
	// Opening again gives the same copy; another group is another copy.
	if again := storeMeta(t, storeGroup(t, s, 7)); again.CopyID != m.CopyID {
		t.Errorf("reopened group CopyID %q, was %q", again.CopyID, m.CopyID)
	}
	if other := storeMeta(t, storeGroup(t, s, 8)); other.CopyID == m.CopyID {
		t.Errorf("groups 7 and 8 share CopyID %q", m.CopyID)
	}
}

func testStoreAppendAndEntries(t *testing.T, s Store) {
	gs := storeGroup(t, s, 1)
	storeWrite(t, gs, &Batch{Append: storeEntries(1, 1, 5)})
	storeWrite(t, gs, &Batch{Append: storeEntries(1, 6, 5)})
	m := storeMeta(t, gs)
	if m.LastSeq != 10 || m.LastEpoch != 1 || m.Epoch != 1 || m.FirstSeq != 1 || m.CommitSeq != 0 {
		t.Errorf("meta after appending 1..10 = %+v", m)
	}
	got := storeReadEntries(t, gs, 3, 7, 0)
	if !reflect.DeepEqual(got, storeEntries(1, 3, 5)) {
		t.Errorf("Entries(3, 7) = %v, want %v", got, storeEntries(1, 3, 5))
	}
	for _, c := range []struct {
		from, to uint64
		maxBytes int
		want     string
	}{
		{8, 100, 0, "1:8 1:9 1:10"}, // clipped to LastSeq
		{0, 2, 0, "1:1 1:2"},        // seq 0 does not exist
		{11, 20, 0, ""},             // beyond the log
		{7, 3, 0, ""},               // empty range
		{1, 10, 30, "1:1 1:2 1:3"},  // exactly 3 entries of 10 bytes
		{1, 10, 29, "1:1 1:2"},      // never above maxBytes...
		{4, 10, 1, "1:4"},           // ...except for the first entry
		{1, 10, -1, storeSeqs(storeEntries(1, 1, 10))},
	} {
		if got := storeSeqs(storeReadEntries(t, gs, c.from, c.to, c.maxBytes)); got != c.want {
			t.Errorf("Entries(%d, %d, %d) = %q, want %q", c.from, c.to, c.maxBytes, got, c.want)
		}
	}
}

func testStoreEmptyLogStart(t *testing.T, s Store) {
	gs := storeGroup(t, s, 1)
	if err := gs.Write(&Batch{Append: storeEntries(1, 0, 1)}); err == nil {
		t.Errorf("appending seq 0 to an empty log succeeded")
	}
	storeWrite(t, gs, &Batch{Append: storeEntries(2, 5, 2)})
	m := storeMeta(t, gs)
	if m.FirstSeq != 5 || m.LastSeq != 6 || m.LastEpoch != 2 {
		t.Errorf("meta after starting the log at 5 = %+v, want FirstSeq 5, LastSeq 6, LastEpoch 2", m)
	}
	if _, err := gs.Entries(1, 6, 0); !errors.Is(err, ErrCompacted) {
		t.Errorf("Entries(1, 6) on a log starting at 5: err %v, want ErrCompacted", err)
	}
	if got := storeSeqs(storeReadEntries(t, gs, 5, 6, 0)); got != "2:5 2:6" {
		t.Errorf("Entries(5, 6) = %q", got)
	}
}

func testStoreApply(t *testing.T, s Store) {
	gs := storeGroup(t, s, 1)
	dd := &command.DedupeRecord{Key: "key-1", Hash: "h1", Op: command.OpCreate, Epoch: 1, Seq: 2,
		Resource: storeResource("1-B", "b", 1), At: storeTestAt}
	put2 := storePut(2, "1-B", "b", 1)
	put2.Effect.Dedupe = dd
	storeWrite(t, gs, &Batch{Append: storeEntries(1, 1, 5), CommitSeq: 4})
	storeWrite(t, gs, &Batch{Apply: []AppliedEffect{storePut(1, "1-A", "a", 1), put2,
		storeDelete(3, "1-A", 2), storeNoop(4)}})

	m := storeMeta(t, gs)
	if m.Applied != 4 || m.CommitSeq != 4 || m.LastSeq != 5 {
		t.Errorf("meta after applying 1..4 = %+v", m)
	}
	res, ts, err := gs.Resource("1-A")
	if err != nil || res != nil || !reflect.DeepEqual(ts, &command.Tombstone{RID: "1-A", Version: 2, At: storeTestAt, Seq: 3}) {
		t.Errorf("Resource(1-A) after delete = %v, %+v, %v; want its tombstone version 2", res, ts, err)
	}
	res, ts, err = gs.Resource("1-B")
	if err != nil || ts != nil || !reflect.DeepEqual(res, storeResource("1-B", "b", 1)) {
		t.Errorf("Resource(1-B) = %+v, %v, %v", res, ts, err)
	}
	if rec, err := gs.Dedupe("key-1"); err != nil || !reflect.DeepEqual(rec, dd) {
		t.Errorf("Dedupe(key-1) = %+v, %v; want %+v", rec, err, dd)
	}
	if rec, err := gs.Dedupe("key-2"); err != nil || rec != nil {
		t.Errorf("Dedupe(key-2) = %+v, %v; want nil", rec, err)
	}
	// A put of a deleted rid removes its tombstone: one rid has one committed state.
	storeWrite(t, gs, &Batch{CommitSeq: 5, Apply: []AppliedEffect{storePut(5, "1-A", "a", 3)}})
	if res, ts, err := gs.Resource("1-A"); err != nil || ts != nil || res == nil || res.Version != 3 {
		t.Errorf("Resource(1-A) after re-put = %+v, %+v, %v; want version 3, no tombstone", res, ts, err)
	}
	// Returned values are copies: changing one changes nothing stored.
	res, _, _ = gs.Resource("1-B")
	res.Data[0] = 'X'
	if again, _, _ := gs.Resource("1-B"); string(again.Data) != `{"v":1}` {
		t.Errorf("stored resource changed through a returned value: %s", again.Data)
	}
}

func testStoreOneBatch(t *testing.T, s Store) {
	gs := storeGroup(t, s, 1)
	storeWrite(t, gs, &Batch{Epoch: 1, Append: storeEntries(1, 1, 3), CommitSeq: 3,
		Apply: []AppliedEffect{{Seq: 1, Effect: command.Effect{Kind: command.EffectBarrier}},
			storePut(2, "1-A", "a", 1), {Seq: 3, Effect: command.Effect{Kind: command.EffectConfig, Config: 2}}}})
	m := storeMeta(t, gs)
	if m.LastSeq != 3 || m.CommitSeq != 3 || m.Applied != 3 || m.Epoch != 1 {
		t.Errorf("meta after append+commit+apply in one batch = %+v", m)
	}
	if res, _, _ := gs.Resource("1-A"); res == nil {
		t.Errorf("resource put in the same batch as its append is missing")
	}
	// A lower CommitSeq is ignored, not an error: commit points only move forward.
	storeWrite(t, gs, &Batch{CommitSeq: 1})
	if m := storeMeta(t, gs); m.CommitSeq != 3 {
		t.Errorf("CommitSeq went from 3 to %d", m.CommitSeq)
	}
}

func testStoreList(t *testing.T, s Store) {
	gs := storeGroup(t, s, 1)
	rids := []string{"2-C", "10-B", "1-A", "3-E", "20-D", "4-F"}
	types := []string{"x", "y", "x", "y", "x", "x"}
	var apply []AppliedEffect
	for i, rid := range rids {
		apply = append(apply, storePut(uint64(i+1), rid, types[i], 1))
	}
	apply = append(apply, storeDelete(7, "4-F", 2))
	storeWrite(t, gs, &Batch{Append: storeEntries(1, 1, 7), CommitSeq: 7, Apply: apply})

	for _, c := range []struct {
		typ, after string
		limit      int
		want       string
	}{
		{"", "", 0, "1-A 10-B 2-C 20-D 3-E"}, // byte order; the deleted 4-F is gone
		{"", "10-B", 0, "2-C 20-D 3-E"},      // after is exclusive
		{"", "10", 0, "10-B 2-C 20-D 3-E"},   // after need not exist
		{"", "", 2, "1-A 10-B"},
		{"", "3-E", 0, ""},
		{"x", "", 0, "1-A 2-C 20-D"},
		{"x", "1-A", 1, "2-C"},
		{"y", "", 0, "10-B 3-E"},
		{"z", "", 0, ""},
	} {
		l, err := gs.List(c.typ, c.after, c.limit)
		if err != nil {
			t.Fatalf("List(%q, %q, %d): %v", c.typ, c.after, c.limit, err)
		}
		var got []string
		for _, r := range l {
			got = append(got, r.ID)
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("List(%q, %q, %d) = %q, want %q", c.typ, c.after, c.limit, strings.Join(got, " "), c.want)
		}
	}
}

func testStoreConcurrentReaders(t *testing.T, s Store) {
	gs := storeGroup(t, s, 1)
	const batches, per = 50, 10
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				m, err := gs.Meta()
				if err != nil {
					t.Errorf("Meta: %v", err)
					return
				}
				// A reader sees whole batches: the log and the commit point move together.
				if m.LastSeq%per != 0 || m.CommitSeq != m.LastSeq {
					t.Errorf("reader saw half a batch: %+v", m)
					return
				}
			}
		}()
	}
	for i := range batches {
		if err := gs.Write(&Batch{Append: storeEntries(1, uint64(i*per+1), per), CommitSeq: uint64((i + 1) * per)}); err != nil {
			t.Errorf("Write batch %d: %v", i, err)
			break
		}
	}
	close(done)
	wg.Wait()
	if got := len(storeReadEntries(t, gs, 1, batches*per, 0)); got != batches*per {
		t.Errorf("log holds %d entries, want %d", got, batches*per)
	}
}
