package sibling

import "testing"

func entries(epoch uint64, from, to uint64) []Entry {
	var out []Entry
	for s := from; s <= to; s++ {
		out = append(out, Entry{Epoch: epoch, Seq: s, Data: []byte{byte(s)}})
	}
	return out
}

// copyWith returns a follower copy holding the given runs of entries, committed up to commit.
func copyWith(t *testing.T, epoch, commit uint64, runs ...[]Entry) *simCopy {
	t.Helper()
	c := newSimCopy(1, 5)
	var hist []EpochStart
	var last Entry
	for _, r := range runs {
		if err := c.log.Append(r...); err != nil {
			t.Fatal(err)
		}
		for _, e := range r {
			if e.Epoch != last.Epoch {
				hist = append(hist, EpochStart{Epoch: e.Epoch, FirstSeq: e.Seq})
			}
			last = e
		}
	}
	c.f = NewFollower(FollowerState{Group: 1, Self: 5, Epoch: epoch, LastEpoch: last.Epoch, LastSeq: last.Seq,
		Commit: commit, History: hist, Log: c.log})
	return c
}

// Rule (a): a lower epoch is refused with the sibling's epoch, and the main learns it is fenced.
func TestFencedMainLearnsHigherEpoch(t *testing.T) {
	c := copyWith(t, 3, 0, entries(1, 1, 5))
	st := c.f.Step(&Append{Group: 1, Epoch: 2, Main: 1, PrevEpoch: 1, PrevSeq: 5, Entries: entries(2, 6, 6)}, always)
	if st.Ack.OK || st.Ack.Epoch != 3 || st.Durable() {
		t.Fatalf("lower epoch accepted: %+v", st)
	}
	m := NewMain(MainConfig{Group: 1, Self: 1, Epoch: 2, Quorum: Quorum{Sets: [][]uint16{{5}}}, Log: NewMemLog()})
	m.HandleAck(st.Ack)
	if m.Fenced() != 3 {
		t.Fatalf("main not fenced: %d", m.Fenced())
	}
}

// Rule (b): a higher epoch is adopted only on a committed directory record.
func TestHigherEpochNeedsAuthorizedRecord(t *testing.T) {
	c := copyWith(t, 1, 0, entries(1, 1, 3))
	msg := &Append{Group: 1, Epoch: 2, Main: 4, PrevEpoch: 1, PrevSeq: 3, Entries: entries(2, 4, 4)}
	st := c.f.Step(msg, func(uint64, uint16) bool { return false })
	if st.Ack.OK || c.f.Epoch() != 1 {
		t.Fatalf("unauthorized epoch adopted: %+v", st)
	}
	st = c.f.Step(msg, always)
	if !st.Ack.OK || st.Epoch != 2 || c.f.Epoch() != 2 || len(st.Append) != 1 {
		t.Fatalf("authorized epoch not adopted: %+v", st)
	}
}

// docs/replication.md case 2 scenario B: a copy with a divergent uncommitted tail (1,101..103) must
// not accept (2,104) as "next"; the main's probe finds the divergence at 100 and the tail
// is truncated before (2,101..) is appended.
func TestDivergentTailIsTruncatedNotExtended(t *testing.T) {
	a := copyWith(t, 1, 100, entries(1, 1, 103))
	mlog := NewMemLog()
	_ = mlog.Append(entries(1, 1, 100)...)
	_ = mlog.Append(entries(2, 101, 105)...)
	m := NewMain(MainConfig{Group: 1, Self: 2, Epoch: 2, LastEpoch: 2, LastSeq: 105, Commit: 105, EpochFirst: 101,
		History: []EpochStart{{1, 1}, {2, 101}}, Quorum: Quorum{Sets: [][]uint16{{5}}}, Log: mlog})
	// The naive append attached at A's last seq is refused because (2,103) is not in A's log.
	st := a.f.Step(&Append{Group: 1, Epoch: 2, Main: 2, PrevEpoch: 2, PrevSeq: 103, Entries: entries(2, 104, 105)}, always)
	if st.Ack.OK {
		t.Fatal("append attached to (2,103) accepted by a copy holding (1,103)")
	}
	for i := 0; i < 10 && a.log.Last() != 105 || i == 0; i++ {
		msg := m.Heartbeat(5)
		if next, _ := m.NextAppend(5); next != nil {
			msg = next
		}
		st := a.f.Step(msg, always)
		a.apply(t, st)
		m.HandleAck(st.Ack)
	}
	for s := uint64(101); s <= 105; s++ {
		if e, _ := a.log.EpochAt(s); e != 2 {
			t.Fatalf("seq %d has epoch %d after repair, want 2", s, e)
		}
	}
}

// docs/replication.md case 3 scenario B: a heartbeat with commitSeq 102 must not make a copy treat
// its own (1,101), which the main does not hold, as committed.
func TestCommitPointClampedToVerifiedPrefix(t *testing.T) {
	a := copyWith(t, 1, 100, entries(1, 1, 101))
	st := a.f.Step(&Append{Group: 1, Epoch: 2, Main: 2, PrevEpoch: 1, PrevSeq: 100, CommitSeq: 102}, always)
	if !st.Ack.OK {
		t.Fatalf("heartbeat refused: %+v", st.Ack)
	}
	if a.f.Commit() != 100 {
		t.Fatalf("commit point %d, want 100 (only the prefix verified against this main)", a.f.Commit())
	}
	// Rule (e): truncating at or below the commit point is a violation, never applied.
	b := copyWith(t, 2, 101, entries(1, 1, 101))
	st = b.f.Step(&Append{Group: 1, Epoch: 2, Main: 2, PrevEpoch: 1, PrevSeq: 100, Entries: entries(2, 101, 101)}, always)
	if st.Violation == nil {
		t.Fatal("truncation below the commit point not reported")
	}
}

// docs/replication.md case 3: older-epoch entries never commit by counting copies; they commit when
// the new main's barrier commits.
func TestOlderEpochEntriesCommitOnlyThroughBarrier(t *testing.T) {
	mlog := NewMemLog()
	_ = mlog.Append(entries(1, 1, 101)...)
	m := NewMain(MainConfig{Group: 1, Self: 2, Epoch: 3, LastEpoch: 1, LastSeq: 101, Commit: 100, EpochFirst: 102,
		History: []EpochStart{{1, 1}}, Quorum: Quorum{Sets: [][]uint16{{5, 6, 7}}}, Log: mlog})
	m.HandleAck(Ack{From: 5, Epoch: 3, OK: true, Seq: 101})
	m.HandleAck(Ack{From: 6, Epoch: 3, OK: true, Seq: 101})
	if m.Commit() != 100 {
		t.Fatalf("old-epoch entry committed by counting: commit %d", m.Commit())
	}
	e, s := m.Assign() // the barrier
	_ = mlog.Append(Entry{Epoch: e, Seq: s})
	m.Persisted(s)
	m.HandleAck(Ack{From: 5, Epoch: 3, OK: true, Seq: s})
	if m.Commit() != 100 {
		t.Fatalf("barrier committed on one of three: %d", m.Commit())
	}
	m.HandleAck(Ack{From: 6, Epoch: 3, OK: true, Seq: s})
	if m.Commit() != s {
		t.Fatalf("barrier on a majority did not commit: %d, want %d", m.Commit(), s)
	}
}

// docs/replication.md case 1 scenario A: during a change {A,B,C} -> {A,B,C,D} the main needs a
// majority of both; acks from A and B alone do not commit.
func TestJointQuorumNeedsBothConfigs(t *testing.T) {
	mlog := NewMemLog()
	m := NewMain(MainConfig{Group: 1, Self: 1, Epoch: 1, EpochFirst: 1, History: []EpochStart{{1, 1}},
		Quorum: Quorum{Version: 2, Sets: [][]uint16{{2, 3, 4}, {2, 3, 4, 5}}}, Log: mlog})
	e, s := m.Assign()
	_ = mlog.Append(Entry{Epoch: e, Seq: s})
	m.Persisted(s)
	m.HandleAck(Ack{From: 2, Epoch: 1, OK: true, Seq: 1})
	m.HandleAck(Ack{From: 3, Epoch: 1, OK: true, Seq: 1})
	if m.Commit() != 0 {
		t.Fatalf("committed on 2 of the new 4: %d", m.Commit())
	}
	m.HandleAck(Ack{From: 5, Epoch: 1, OK: true, Seq: 1})
	if m.Commit() != 1 {
		t.Fatalf("not committed with majorities of both configs: %d", m.Commit())
	}
}

// docs/replication.md case 10 scenario A: a read must wait for a round sent after it arrived.
func TestReadRoundMustBeFresh(t *testing.T) {
	m := NewMain(MainConfig{Group: 1, Self: 1, Epoch: 1, EpochFirst: 1, History: []EpochStart{{1, 1}},
		Quorum: Quorum{Sets: [][]uint16{{2, 3, 4}}}, Log: NewMemLog()})
	old := m.Heartbeat(2) // round 1 goes out before the read arrives
	r := m.ReadRound()
	if r == old.Round {
		t.Fatalf("read got round %d, which was already sent", r)
	}
	m.HandleAck(Ack{From: 2, Epoch: 1, OK: true, Round: old.Round})
	m.HandleAck(Ack{From: 3, Epoch: 1, OK: true, Round: old.Round})
	if m.RoundConfirmed(r) {
		t.Fatal("read confirmed by answers to a round sent before it arrived")
	}
	h2, h3 := m.Heartbeat(2), m.Heartbeat(3)
	m.HandleAck(Ack{From: 2, Epoch: 1, Round: h2.Round})
	if m.RoundConfirmed(r) {
		t.Fatal("read confirmed by one of three")
	}
	m.HandleAck(Ack{From: 3, Epoch: 2, Round: h3.Round}) // a sealed sibling does not count
	if m.RoundConfirmed(r) {
		t.Fatal("read confirmed by an answer from a higher epoch")
	}
	m.HandleAck(Ack{From: 4, Epoch: 1, Round: m.Heartbeat(4).Round})
	if !m.RoundConfirmed(r) {
		t.Fatal("read not confirmed by a fresh majority")
	}
}

// A main never goes back to an older config: a directory fetched before a membership
// change and applied after it would otherwise hand it the old voters, or, under a
// group's first config with no voters, let it commit alone.
func TestMainIgnoresAnOlderQuorum(t *testing.T) {
	mlog := NewMemLog()
	m := NewMain(MainConfig{Group: 1, Self: 1, Epoch: 1, EpochFirst: 1, History: []EpochStart{{1, 1}},
		Quorum: Quorum{Version: 3, Sets: [][]uint16{{2, 3, 4}}}, Log: mlog})
	if m.SetQuorum(Quorum{Version: 1}, nil) {
		t.Fatal("SetQuorum took config version 1 after version 3")
	}
	if q := m.Quorum(); q.Version != 3 || len(q.Sets) != 1 || len(q.Sets[0]) != 3 {
		t.Fatalf("quorum after an older config: %+v", q)
	}
	e, s := m.Assign()
	_ = mlog.Append(Entry{Epoch: e, Seq: s})
	m.Persisted(s)
	if m.Commit() >= s {
		t.Fatalf("the main committed seq %d alone with voters 2, 3, 4", s)
	}
	if !m.SetQuorum(Quorum{Version: 4, Sets: [][]uint16{{2, 3}}}, nil) {
		t.Fatal("SetQuorum refused a newer config")
	}
}
