package core

import (
	"errors"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/sibling"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func cfgFor(self uint16) Config {
	return Config{Group: 1, Self: self, MaxBytes: 1 << 10, Window: 4, DownAfter: time.Second}
}

// groupInfo: node 1 is main of epoch, nodes 2 and 3 vote.
func groupInfo(epoch uint64, main uint16) *command.GroupInfo {
	return &command.GroupInfo{Server: 1, Epoch: epoch, Main: main,
		Active:   command.Config{Version: 1, Voters: []uint16{2, 3}},
		Siblings: []command.Member{{Node: 2, State: command.SiblingVoting}, {Node: 3, State: command.SiblingVoting}}}
}

func diskOf(l *sibling.MemLog, epoch, commit uint64) func() (Disk, error) {
	return func() (Disk, error) {
		last := l.Last()
		le, _ := l.EpochAt(last)
		return Disk{Epoch: epoch, LastEpoch: le, LastSeq: last, Commit: commit, Log: l}, nil
	}
}

// A copy named main of a new epoch starts the role with a barrier entry it must persist
// with the epoch, and commits nothing until a majority of the voters acks it.
func TestMainWritesABarrierAndCommitsOnAQuorum(t *testing.T) {
	c := New(cfgFor(1), 0, 0)
	l := sibling.NewMemLog()
	if err := c.Follow(groupInfo(1, 1), false, diskOf(l, 0, 0), t0); err != nil {
		t.Fatal(err)
	}
	rd := c.Ready()
	if len(rd.Roles) != 1 || rd.Roles[0].To != Main || !rd.Roles[0].Barrier {
		t.Fatalf("roles %+v; want one change to main with a barrier", rd.Roles)
	}
	if len(rd.Entries) != 1 || rd.Entries[0].Entry.Seq != 1 || rd.Entries[0].Effect.Kind != command.EffectBarrier {
		t.Fatalf("entries %+v; want the barrier at seq 1", rd.Entries)
	}
	if !rd.Peers || c.NewEpoch() != 1 {
		t.Fatalf("peers changed %v, new epoch %d; want true and 1", rd.Peers, c.NewEpoch())
	}
	if err := l.Append(rd.Entries[0].Entry); err != nil {
		t.Fatal(err)
	}
	seq := c.Propose(&command.Effect{Kind: command.EffectBarrier, At: t0})
	if seq != 2 {
		t.Fatalf("second entry at seq %d, want 2", seq)
	}
	rd = c.Ready()
	l.Append(rd.Entries[0].Entry)
	c.Persisted(1, 2)
	if rd = c.Ready(); rd.CommitTo != 0 || c.Commit() != 0 || c.NewEpoch() != 0 {
		t.Fatalf("commit %d (ready %d), new epoch %d after the main's own write; want nothing committed", c.Commit(), rd.CommitTo, c.NewEpoch())
	}
	c.HandleAcks([]*sibling.Ack{{Group: 1, From: 2, Epoch: 1, OK: true, Seq: 2, LastEpoch: 1}}, t0)
	if rd = c.Ready(); rd.CommitTo != 0 || c.BarrierCommitted() {
		t.Fatalf("committed %d with one of two voters", rd.CommitTo)
	}
	c.HandleAcks([]*sibling.Ack{{Group: 1, From: 3, Epoch: 1, OK: true, Seq: 2, LastEpoch: 1}}, t0)
	rd = c.Ready()
	if rd.CommitTo != 2 || rd.CommitFrom != 0 || c.Commit() != 2 || !c.BarrierCommitted() {
		t.Fatalf("commit %d..%d (core %d); want 0..2 once both voters hold it", rd.CommitFrom, rd.CommitTo, c.Commit())
	}
	if len(rd.Woken) != 1 || rd.Woken[0] != 3 {
		t.Fatalf("woken %v, want [3]", rd.Woken)
	}
}

// An ack from a higher epoch fences the main: it steps down with no_main, and is not main
// again for any epoch below the one that fenced it.
func TestFencedMainStepsDownAndStaysDown(t *testing.T) {
	c := New(cfgFor(1), 0, 0)
	l := sibling.NewMemLog()
	c.Follow(groupInfo(1, 1), false, diskOf(l, 0, 0), t0)
	l.Append(c.Ready().Entries[0].Entry)
	c.HandleAcks([]*sibling.Ack{{Group: 1, From: 2, Epoch: 3, OK: false}}, t0)
	rd := c.Ready()
	if c.Role() != None || len(rd.Roles) != 1 || rd.Roles[0].From != Main || rd.Roles[0].Reason == nil ||
		rd.Roles[0].Reason.Code != command.CodeNoMain {
		t.Fatalf("role %v, changes %+v; want a step-down with no_main", c.Role(), rd.Roles)
	}
	if c.FencedBy() != 3 {
		t.Fatalf("fenced by %d, want 3", c.FencedBy())
	}
	c.Follow(groupInfo(2, 1), false, diskOf(l, 1, 0), t0)
	if c.Role() != None || len(c.Ready().Roles) != 0 {
		t.Fatal("a main fenced by epoch 3 took the role again in epoch 2")
	}
	c.Follow(groupInfo(3, 1), false, diskOf(l, 1, 0), t0)
	if c.Role() != Main {
		t.Fatalf("role %v in epoch 3, want main", c.Role())
	}
}

// An empty copy is never main past a group's first epoch while the group has voters: it
// lost its disk, and a barrier at seq 1 would overwrite what the voters committed.
func TestEmptyCopyRefusesToBeMainOfALaterEpoch(t *testing.T) {
	c := New(cfgFor(1), 0, 0)
	err := c.Follow(groupInfo(4, 1), false, diskOf(sibling.NewMemLog(), 0, 0), t0)
	if err == nil || c.Role() != None {
		t.Fatalf("err %v, role %v; want a refusal and no role", err, c.Role())
	}
}

// A copy that promised a later epoch is never main of an earlier one: a node that served
// as main at its group's new home (rehome) and restarted can hear its replaced home first,
// which gives it a fresh epoch of the older generation's band; serving would append entries
// of that epoch after the later epoch's (TestSimulationLocations found it, seed 8 with the
// copies accepting an older home's seal).
func TestCopyRefusesToBeMainOfAnEpochBelowItsPromise(t *testing.T) {
	later := command.EpochBand(1) + 1
	l := sibling.NewMemLog()
	if err := l.Append(sibling.Entry{Epoch: later, Seq: 1, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	c := New(cfgFor(1), later, 0)
	err := c.Follow(groupInfo(4, 1), false, diskOf(l, later, 0), t0)
	if err == nil || c.Role() != None || len(c.Ready().Entries) != 0 {
		t.Fatalf("err %v, role %v; want a refusal, no role and no entry", err, c.Role())
	}
	if err := c.Follow(groupInfo(later+1, 1), false, diskOf(l, later, 0), t0); err != nil || c.Role() != Main {
		t.Fatalf("err %v, role %v in epoch %d; want main", err, c.Role(), later+1)
	}
}

// A directory that arrives late with an older config changes nothing.
func TestMainIgnoresAnOlderConfig(t *testing.T) {
	c := New(cfgFor(1), 0, 0)
	gi := groupInfo(1, 1)
	gi.Pending = &command.Config{Version: 2, Voters: []uint16{2, 3, 4}}
	gi.Siblings = append(gi.Siblings, command.Member{Node: 4, State: command.SiblingVoting})
	c.Follow(gi, false, diskOf(sibling.NewMemLog(), 0, 0), t0)
	c.Ready()
	c.Follow(groupInfo(1, 1), false, nil, t0)
	if v := c.Replication().Quorum().Version; v != 2 || len(c.Ready().Entries) != 0 {
		t.Fatalf("quorum version %d after an older directory, want 2 and no new entry", v)
	}
}

// A sibling steps appends into one Write per truncation-free run, acks each, and counts as
// hearing its main; an automatic seal is refused while it does.
func TestSiblingStepsWritesAndRefusesAnAutoSealWhileHearing(t *testing.T) {
	c := New(cfgFor(2), 0, 0)
	l := sibling.NewMemLog()
	if err := c.Follow(groupInfo(1, 1), true, diskOf(l, 0, 0), t0); err != nil {
		t.Fatal(err)
	}
	if rd := c.Ready(); len(rd.Roles) != 1 || rd.Roles[0].To != Sibling {
		t.Fatalf("changes %+v; want one to sibling", rd.Roles)
	}
	auth := func(epoch uint64, main uint16) bool { return epoch == 1 && main == 1 }
	app := &sibling.Append{Group: 1, Epoch: 1, Main: 1, PrevSeq: 0, Entries: []sibling.Entry{{Epoch: 1, Seq: 1, Data: []byte("x")}}, CommitSeq: 0}
	writes, acks := c.Step([]*sibling.Append{app}, auth, t0)
	if len(writes) != 1 || len(writes[0].Append) != 1 || writes[0].Epoch != 1 || len(acks) != 1 || !acks[0].OK || acks[0].Seq != 1 {
		t.Fatalf("writes %+v acks %+v; want one write of seq 1 in epoch 1 and an ok ack", writes, acks)
	}
	c.Written(&writes[0])
	req := &command.SealRequest{Server: 1, Epoch: 2, Auto: true}
	if err := c.CheckSeal(req, true, t0.Add(time.Millisecond)); !errors.Is(err, ErrSealHears) {
		t.Fatalf("auto seal while hearing: %v, want ErrSealHears", err)
	}
	if err := c.CheckSeal(req, true, t0.Add(2*time.Second)); err != nil {
		t.Fatalf("auto seal after down-after: %v", err)
	}
	l.Append(writes[0].Append...)
	le, ls, _ := c.Seal(2, Disk{Epoch: 2, LastEpoch: 1, LastSeq: 1, Log: l})
	if le != 1 || ls != 1 || c.Sealed() != 2 {
		t.Fatalf("sealed at (%d,%d), sealed epoch %d; want (1,1) and 2", le, ls, c.Sealed())
	}
	// Sealed at 2, it refuses the old main's appends from now on.
	_, acks = c.Step([]*sibling.Append{{Group: 1, Epoch: 1, Main: 1, PrevEpoch: 1, PrevSeq: 1}}, auth, t0)
	if len(acks) != 1 || acks[0].OK || acks[0].Epoch != 2 {
		t.Fatalf("ack to the old main after a seal: %+v; want a refusal carrying epoch 2", acks)
	}
}

// A main refuses every seal: it is the copy a promotion replaces.
func TestMainRefusesSeal(t *testing.T) {
	c := New(cfgFor(1), 0, 0)
	c.Follow(groupInfo(1, 1), false, diskOf(sibling.NewMemLog(), 0, 0), t0)
	if err := c.CheckSeal(&command.SealRequest{Server: 1, Epoch: 2}, false, t0); !errors.Is(err, ErrSealMain) {
		t.Fatalf("seal of a main: %v, want ErrSealMain", err)
	}
}

// A sibling's write carries the highest config version of the appends it takes, for the
// driver to record before it acks (a seal reports it, docs/locations.md "Moving a home");
// an append it refuses adds nothing, and the version survives a truncation's split.
func TestSiblingWriteCarriesTheConfigVersionOfTakenAppends(t *testing.T) {
	c := New(cfgFor(2), 0, 0)
	l := sibling.NewMemLog()
	if err := c.Follow(groupInfo(2, 1), true, diskOf(l, 2, 0), t0); err != nil {
		t.Fatal(err)
	}
	c.Ready()
	auth := func(epoch uint64, main uint16) bool { return epoch == 2 && main == 1 }
	msgs := []*sibling.Append{
		{Group: 1, Epoch: 1, Main: 9, Config: 9}, // a fenced main: refused
		{Group: 1, Epoch: 2, Main: 1, Config: 3, Entries: []sibling.Entry{{Epoch: 2, Seq: 1, Data: []byte("x")}}}, // taken
		{Group: 1, Epoch: 2, Main: 1, Config: 4, PrevEpoch: 2, PrevSeq: 1},                                        // a heartbeat, taken
	}
	writes, acks := c.Step(msgs, auth, t0)
	if len(acks) != 3 || acks[0].OK || !acks[1].OK || !acks[2].OK {
		t.Fatalf("acks %+v; want the fenced main refused, the others taken", acks)
	}
	if len(writes) != 1 || writes[0].Config != 4 {
		t.Fatalf("writes %+v; want one carrying config version 4 (not the refused append's 9)", writes)
	}
	c.Written(&writes[0])
	l.Append(writes[0].Append...)

	// A later main's entry at seq 2 truncates this batch's: the write splits in two, and
	// each carries the version of the appends up to it.
	auth = func(epoch uint64, main uint16) bool { return epoch >= 2 && main == 1 }
	msgs = []*sibling.Append{
		{Group: 1, Epoch: 2, Main: 1, Config: 5, PrevEpoch: 2, PrevSeq: 1, Entries: []sibling.Entry{{Epoch: 2, Seq: 2, Data: []byte("y")}}},
		{Group: 1, Epoch: 3, Main: 1, Config: 6, PrevEpoch: 2, PrevSeq: 1, Entries: []sibling.Entry{{Epoch: 3, Seq: 2, Data: []byte("z")}}},
	}
	writes, acks = c.Step(msgs, auth, t0)
	if len(writes) != 2 || writes[1].Truncate != 2 || !acks[1].OK {
		t.Fatalf("writes %+v acks %+v; want two, the second truncating at seq 2", writes, acks)
	}
	if writes[0].Config != 5 || writes[1].Config != 6 {
		t.Fatalf("config versions %d and %d of the split writes, want 5 and 6", writes[0].Config, writes[1].Config)
	}
}
