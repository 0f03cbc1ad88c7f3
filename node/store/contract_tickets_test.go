package store

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/sibylhq/sibyl/command"
)

// storeTicket is a committed ticket effect on rid at seq.
func storeTicket(seq uint64, rid string, st command.TicketState) AppliedEffect {
	return AppliedEffect{Seq: seq, Effect: command.Effect{Kind: command.EffectTicket, RID: rid, Type: "t", Ticket: &st, At: storeTestAt}}
}

func liveTicket(fence uint64, ttl int64) command.TicketState {
	return command.TicketState{Fence: fence, Live: true, TTLMs: ttl}
}

func storeTicketOf(t *testing.T, gs GroupStore, rid string) command.TicketState {
	t.Helper()
	st, err := gs.Ticket(rid)
	if err != nil {
		t.Fatalf("Ticket(%s): %v", rid, err)
	}
	return st
}

func storeLiveTickets(t *testing.T, gs GroupStore) []LiveTicket {
	t.Helper()
	lts, err := gs.LiveTickets()
	if err != nil {
		t.Fatalf("LiveTickets: %v", err)
	}
	return lts
}

// Ticket state changes only through committed effects, in seq order; the fence counter
// outlives the ticket; tickets never change the resource.
func testStoreTickets(t *testing.T, s Store) {
	gs := storeGroup(t, s, 1)
	if st := storeTicketOf(t, gs, "1-A"); st != (command.TicketState{}) {
		t.Fatalf("ticket of an empty group = %+v", st)
	}
	if lts := storeLiveTickets(t, gs); len(lts) != 0 {
		t.Fatalf("live tickets of an empty group = %+v", lts)
	}
	storeWrite(t, gs, &Batch{Epoch: 1, Append: storeEntries(1, 1, 9), CommitSeq: 4, Apply: []AppliedEffect{
		storePut(1, "1-A", "a", 1), storePut(2, "1-B", "b", 1),
		storeTicket(3, "1-B", liveTicket(1, 500)), storeTicket(4, "1-A", liveTicket(1, 100))}})
	want := []LiveTicket{{"1-A", liveTicket(1, 100)}, {"1-B", liveTicket(1, 500)}}
	if lts := storeLiveTickets(t, gs); !reflect.DeepEqual(lts, want) {
		t.Fatalf("live tickets = %+v, want %+v", lts, want)
	}
	if res, _, _ := gs.Resource("1-A"); res == nil || res.Version != 1 {
		t.Fatalf("a ticket changed the resource: %+v", res)
	}

	// Appended but not committed: nothing changes.
	if st := storeTicketOf(t, gs, "1-A"); st != liveTicket(1, 100) {
		t.Fatalf("ticket of 1-A = %+v", st)
	}
	acq := storeTicket(7, "1-A", liveTicket(2, 300))
	acq.Effect.Dedupe = &command.DedupeRecord{Key: "acq", Hash: "h", Op: command.OpAcquireTicket, Epoch: 1, Seq: 7,
		Ticket: &command.TicketInfo{Fence: 2, ExpiresMs: 300}, At: storeTestAt}
	del := storeDelete(8, "1-B", 2)
	del.Effect.Ticket = &command.TicketState{Fence: 1}
	storeWrite(t, gs, &Batch{CommitSeq: 9, Apply: []AppliedEffect{
		storeTicket(5, "1-A", liveTicket(1, 900)),            // renew
		storeTicket(6, "1-A", command.TicketState{Fence: 1}), // release
		acq, del, storeNoop(9)}})
	if st := storeTicketOf(t, gs, "1-A"); st != liveTicket(2, 300) {
		t.Fatalf("ticket of 1-A after renew, release, acquire = %+v", st)
	}
	if st := storeTicketOf(t, gs, "1-B"); st != (command.TicketState{Fence: 1}) {
		t.Fatalf("ticket of 1-B after its delete = %+v, want the counter kept and nothing live", st)
	}
	if res, ts, _ := gs.Resource("1-B"); res != nil || ts == nil {
		t.Fatalf("1-B after delete: %+v %+v", res, ts)
	}
	if rec, err := gs.Dedupe("acq"); err != nil || !reflect.DeepEqual(rec, acq.Effect.Dedupe) {
		t.Fatalf("dedupe record of a keyed acquire = %+v, %v", rec, err)
	}
	want = []LiveTicket{{"1-A", liveTicket(2, 300)}}
	if lts := storeLiveTickets(t, gs); !reflect.DeepEqual(lts, want) {
		t.Fatalf("live tickets = %+v, want %+v", lts, want)
	}
	// Another group's tickets are its own.
	if st := storeTicketOf(t, storeGroup(t, s, 2), "1-A"); st != (command.TicketState{}) {
		t.Fatalf("group 2 sees group 1's ticket: %+v", st)
	}
}

func testStoreInvalidTicketBatches(t *testing.T, s Store) {
	gs := storeGroup(t, s, 1)
	storeWrite(t, gs, &Batch{Epoch: 1, Append: storeEntries(1, 1, 4), CommitSeq: 2, Apply: []AppliedEffect{
		storePut(1, "1-A", "a", 1), storeTicket(2, "1-A", liveTicket(1, 100))}})
	probes := []string{"1-A"}
	before := storeStateOf(t, gs, probes...)
	noTicket := storeTicket(4, "1-A", command.TicketState{})
	noTicket.Effect.Ticket = nil
	for _, c := range []struct {
		name string
		a    AppliedEffect
		want string
	}{
		{"ticket effect without a ticket", noTicket, `ticket effect on rid "1-A" carries no ticket`},
		{"fence 0", storeTicket(4, "1-A", command.TicketState{}), "malformed"},
		{"live without a ttl", storeTicket(4, "1-A", command.TicketState{Fence: 2, Live: true}), "malformed"},
		{"ended with a ttl", storeTicket(4, "1-A", command.TicketState{Fence: 2, TTLMs: 9}), "malformed"},
		{"no rid", storeTicket(4, "", liveTicket(2, 9)), "ticket state without a rid"},
	} {
		// A valid release first, in the same batch: a refused batch must not keep it.
		err := gs.Write(&Batch{CommitSeq: 4, Apply: []AppliedEffect{storeTicket(3, "1-A", command.TicketState{Fence: 1}), c.a}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Write err = %v, want one containing %q", c.name, err, c.want)
		}
		if after := storeStateOf(t, gs, probes...); !reflect.DeepEqual(before, after) {
			t.Fatalf("%s: refused batch changed the group:\nbefore %+v\nafter  %+v", c.name, before, after)
		}
	}
}

// Tickets are on disk: a reopened store has the live tickets and the counters.
func TestBoltStoreTicketsReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sibyl.db")
	s := openTestBolt(t, path)
	gs := storeGroup(t, s, 1)
	storeWrite(t, gs, &Batch{Epoch: 1, Append: storeEntries(1, 1, 4), CommitSeq: 4, Apply: []AppliedEffect{
		storePut(1, "1-A", "a", 1), storeTicket(2, "1-A", liveTicket(1, 100)),
		storeTicket(3, "1-A", command.TicketState{Fence: 1}), storeTicket(4, "1-A", liveTicket(2, 50))}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestBolt(t, path)
	defer s.Close()
	gs = storeGroup(t, s, 1)
	if st := storeTicketOf(t, gs, "1-A"); st != liveTicket(2, 50) {
		t.Fatalf("ticket after reopen = %+v", st)
	}
}

// A copy written before the tickets bucket existed gets one when it is opened, empty: the
// state of a copy that never saw a ticket entry.
func TestBoltStoreAddsTicketsBucket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sibyl.db")
	s := openTestBolt(t, path)
	storeWrite(t, storeGroup(t, s, 1), &Batch{Epoch: 1, Append: storeEntries(1, 1, 1), CommitSeq: 1,
		Apply: []AppliedEffect{storePut(1, "1-A", "a", 1)}})
	err := s.(*boltStore).db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(groupBucketName(1)).DeleteBucket([]byte("tickets"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestBolt(t, path)
	defer s.Close()
	gs := storeGroup(t, s, 1)
	if st := storeTicketOf(t, gs, "1-A"); st != (command.TicketState{}) {
		t.Fatalf("ticket in the upgraded copy = %+v", st)
	}
	storeWrite(t, gs, &Batch{Append: storeEntries(1, 2, 1), CommitSeq: 2, Apply: []AppliedEffect{storeTicket(2, "1-A", liveTicket(1, 5))}})
	if st := storeTicketOf(t, gs, "1-A"); st != liveTicket(1, 5) {
		t.Fatalf("ticket written to the upgraded copy = %+v", st)
	}
	if res, _, err := gs.Resource("1-A"); err != nil || res == nil {
		t.Fatalf("the upgrade lost the resource: %v %v", res, err)
	}
	if err := s.DropGroup(1); err != nil {
		t.Fatal(err)
	}
	if _, err := gs.Ticket("1-A"); !errors.Is(err, ErrNoCopy) {
		t.Fatalf("Ticket on a dropped group: %v, want ErrNoCopy", err)
	}
}
