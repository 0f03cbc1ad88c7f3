package sibling

import "testing"

// Named tests for docs/replication.md cases 5, 11 and 13 on the replication cores.

// copyAs is copyWith for copy id (copyWith's copies answer as 5).
func copyAs(t *testing.T, id uint16, epoch, commit uint64, runs ...[]Entry) *simCopy {
	t.Helper()
	c := copyWith(t, epoch, commit, runs...)
	c.id = id
	c.f.st.Self = id
	return c
}

// exchange runs one main and its copies over a perfect network until nothing moves, and
// returns every entry each copy was sent (by seq) so tests can see what was re-sent.
func exchange(t *testing.T, m *Main, copies map[uint16]*simCopy, rounds int) map[uint16][]uint64 {
	t.Helper()
	sent := map[uint16][]uint64{}
	for r := 0; r < rounds; r++ {
		for id, c := range copies {
			msgs := []*Append{m.Heartbeat(id)}
			for {
				a, err := m.NextAppend(id)
				if err != nil {
					t.Fatal(err)
				}
				if a == nil {
					break
				}
				msgs = append(msgs, a)
			}
			for _, a := range msgs {
				for _, e := range a.Entries {
					sent[id] = append(sent[id], e.Seq)
				}
				st := c.f.Step(a, always)
				c.apply(t, st)
				m.HandleAck(st.Ack)
			}
		}
	}
	return sent
}

// Case 5 scenario C: "B reports (e,105), but (e,104..105) were batched and not yet fsynced.
// B is chosen, crashes, and reboots with (e,103)." The rule: acks and reports cover only
// fsynced entries. A main sends entries while its own fsync is in flight, but counts only
// what it has persisted itself: siblings acking 105 commit nothing above the main's 103.
func TestCase5C_CommitCoversOnlyWhatTheMainFsynced(t *testing.T) {
	mlog := NewMemLog()
	m := NewMain(MainConfig{Group: 1, Self: 1, Epoch: 1, EpochFirst: 1, History: []EpochStart{{1, 1}},
		Quorum: Quorum{Sets: [][]uint16{{2, 3, 4}}}, Log: mlog})
	for i := 0; i < 5; i++ {
		e, s := m.Assign()
		_ = mlog.Append(Entry{Epoch: e, Seq: s})
	}
	m.Persisted(3)
	m.HandleAck(Ack{From: 2, Epoch: 1, OK: true, Seq: 5})
	m.HandleAck(Ack{From: 3, Epoch: 1, OK: true, Seq: 5})
	if m.Commit() != 3 {
		t.Fatalf("commit %d with the main's log fsynced to 3, want 3", m.Commit())
	}
	m.Persisted(5)
	if m.Commit() != 5 {
		t.Fatalf("commit %d once the main fsynced 5, want 5", m.Commit())
	}
	// A follower's ack names only what its Step asked to make durable.
	c := copyWith(t, 1, 0, entries(1, 1, 3))
	st := c.f.Step(&Append{Group: 1, Epoch: 1, Main: 1, PrevEpoch: 1, PrevSeq: 3, Entries: entries(1, 4, 5)}, always)
	if !st.Ack.OK || st.Ack.Seq != 5 || len(st.Append) != 2 {
		t.Fatalf("step %+v: the ack must name exactly the entries the step makes durable", st)
	}
}

// Case 11 scenario B: "The new main implements 'commit the tail in e+1' by re-stamping (e,104)
// as (e+1,104). Valid tokens (g,e,104) ... no longer match." The rule: entries are never
// re-stamped. A new main of epoch 3 inherits (2,101..104) and writes its barrier (3,105);
// the tail commits with the barrier and keeps epoch 2 everywhere.
func TestCase11B_InheritedTailIsNeverRestamped(t *testing.T) {
	mlog := NewMemLog()
	_ = mlog.Append(entries(1, 1, 100)...)
	_ = mlog.Append(entries(2, 101, 104)...)
	m := NewMain(MainConfig{Group: 1, Self: 2, Epoch: 3, LastEpoch: 2, LastSeq: 104, Commit: 100, EpochFirst: 105,
		History: []EpochStart{{1, 1}, {2, 101}, {3, 105}}, Quorum: Quorum{Sets: [][]uint16{{5, 6}}}, Log: mlog})
	e, s := m.Assign()
	_ = mlog.Append(Entry{Epoch: e, Seq: s}) // the barrier
	m.Persisted(s)
	copies := map[uint16]*simCopy{
		5: copyAs(t, 5, 3, 100, entries(1, 1, 100), entries(2, 101, 104)), // holds the tail already
		6: copyAs(t, 6, 3, 100, entries(1, 1, 100)),                       // lacks it
	}
	exchange(t, m, copies, 4)
	if m.Commit() != 105 {
		t.Fatalf("commit %d, want the barrier 105 (and the inherited tail with it)", m.Commit())
	}
	for id, c := range copies {
		for seq := uint64(101); seq <= 104; seq++ {
			if ep, ok := c.log.EpochAt(seq); !ok || ep != 2 {
				t.Fatalf("copy %d holds seq %d at epoch %d (%v), want 2: re-stamped", id, seq, ep, ok)
			}
		}
		if ep, _ := c.log.EpochAt(105); ep != 3 || c.f.Commit() < 104 {
			t.Fatalf("copy %d: barrier epoch %d commit %d", id, ep, c.f.Commit())
		}
	}
	for seq := uint64(101); seq <= 104; seq++ {
		if ep, _ := mlog.EpochAt(seq); ep != 2 {
			t.Fatalf("the new main's own log re-stamped seq %d to epoch %d", seq, ep)
		}
	}
}

// Case 13 scenario C, on the main: "the new main continues from [the learner's position] if
// its log still holds that entry". A learner that held (1,1..90) when the old main crashed is
// continued by the new main from 91: nothing at or below 90 is sent again, and the learner
// never counts towards the commit.
func TestCase13C_NewMainContinuesLearnerFromItsPosition(t *testing.T) {
	mlog := NewMemLog()
	_ = mlog.Append(entries(1, 1, 100)...)
	m := NewMain(MainConfig{Group: 1, Self: 2, Epoch: 2, LastEpoch: 1, LastSeq: 100, Commit: 95, EpochFirst: 101,
		History: []EpochStart{{1, 1}, {2, 101}}, Quorum: Quorum{Sets: [][]uint16{{5, 6}}}, Learners: []uint16{7}, Log: mlog})
	e, s := m.Assign()
	_ = mlog.Append(Entry{Epoch: e, Seq: s})
	m.Persisted(s)
	learner := copyAs(t, 7, 2, 90, entries(1, 1, 90))
	copies := map[uint16]*simCopy{7: learner}
	sent := exchange(t, m, copies, 4)
	for _, seq := range sent[7] {
		if seq <= 90 {
			t.Fatalf("seq %d re-sent to a learner that held up to 90 (sent %v)", seq, sent[7])
		}
	}
	if learner.log.Last() != 101 {
		t.Fatalf("learner at %d, want 101", learner.log.Last())
	}
	if m.Commit() != 95 {
		t.Fatalf("commit %d moved with only a learner answering, want 95", m.Commit())
	}
	if p := m.Peers()[7]; !p.Learner || p.Match != 101 {
		t.Fatalf("learner progress %+v", p)
	}
}
