package node

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// vacuumEntries counts the vacuum entries in the main's log of group 1.
func vacuumEntries(t *testing.T, gs store.GroupStore) (n int, last command.Vacuum) {
	t.Helper()
	m, err := gs.Meta()
	if err != nil {
		t.Fatal(err)
	}
	es, err := gs.Entries(m.FirstSeq, m.LastSeq, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		eff, err := command.DecodeEffect(e.Data)
		if err != nil {
			t.Fatal(err)
		}
		if eff.Kind == command.EffectVacuum {
			n++
			last = *eff.Vacuum
		}
	}
	return n, last
}

// The main vacuums tombstones and keys once they are older than the retention by its
// monotonic clock, at the same position on every copy, and writes no vacuum entries while
// the group has nothing new to drop.
func TestCase12D_VacuumIsAnEntryOldEnoughAndQuietWhenIdle(t *testing.T) {
	_, nodes := testClusterWith(t, func(c *Config) {
		c.VacuumEvery, c.TombstoneRetention, c.DedupeRetention = 20*time.Millisecond, 300*time.Millisecond, time.Hour
	})
	s := nodes[0].n.NewSession()
	defer s.Close()
	var rid string
	waitUntil(t, 5*time.Second, "create", func() bool {
		r, err := do(t, s, command.Request{Op: command.OpCreate, Type: "t", Data: json.RawMessage(`0`), Server: i64(1), Key: "k1"})
		if err == nil {
			rid = r.Resource.ID
		}
		return err == nil
	})
	del, err := do(t, s, command.Request{Op: command.OpDelete, RID: rid})
	if err != nil {
		t.Fatal(err)
	}
	g1 := nodes[0].n.localGroup(1)
	deletedAt := time.Now()
	waitUntil(t, 5*time.Second, "the delete applied", func() bool {
		_, ts, _ := g1.gs.Resource(rid)
		return ts != nil
	})
	waitUntil(t, 5*time.Second, "the tombstone vacuumed on every copy", func() bool {
		for _, tn := range nodes {
			if _, ts, _ := tn.n.localGroup(1).gs.Resource(rid); ts != nil {
				return false
			}
		}
		return true
	})
	// The retention counts from the main's mark at or after the delete's seq, which may
	// precede the acknowledgement by the commit's few milliseconds.
	if took := time.Since(deletedAt); took < 250*time.Millisecond {
		t.Fatalf("the tombstone went %v after the delete, within its 300ms retention", took)
	}
	n, last := vacuumEntries(t, g1.gs)
	if last.Tombstones < del.Seq {
		t.Fatalf("last vacuum drops tombstones through %d, below the delete at %d", last.Tombstones, del.Seq)
	}
	if rec, _ := g1.gs.Dedupe("k1"); rec == nil {
		t.Fatal("the key was vacuumed long before its one-hour retention")
	}
	// Idle now: many vacuum periods pass without a new vacuum entry.
	idleFrom := time.Now()
	waitUntil(t, 5*time.Second, "ten vacuum periods", func() bool { return time.Since(idleFrom) > 200*time.Millisecond })
	if again, _ := vacuumEntries(t, g1.gs); again != n {
		t.Fatalf("an idle group wrote %d more vacuum entries", again-n)
	}
}
