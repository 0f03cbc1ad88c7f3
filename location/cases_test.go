package location

import (
	"testing"

	"github.com/sibylhq/sibyl/command"
)

// Named tests for the controller's side of docs/replication.md's cases: which seals are enough
// (every config in use, R = S-W+1 of each) and which sibling is chosen.

const (
	nA uint16 = iota + 2
	nB
	nC
	nD
)

func sealed(last map[uint16][2]uint64) map[uint16]command.SealReply {
	out := map[uint16]command.SealReply{}
	for n, l := range last {
		out[n] = command.SealReply{Node: n, LastEpoch: l[0], LastSeq: l[1]}
	}
	return out
}

// threeVoters returns an FSM whose group 1 has main 1 and voting siblings 2, 3, 4.
func threeVoters(t *testing.T) (*fsm, uint64) {
	f, idx := buildFSM(t) // group 1: main 1; 2 voting; 3 proposed
	for _, c := range []dirCommand{
		activate{Server: 1, Version: 3},
		join(4), addLearner{Server: 1, Node: 4}, proposeVoter{Server: 1, Node: 4}, activate{Server: 1, Version: 4},
	} {
		if err := applyAt(t, f, idx, c); err != nil {
			t.Fatalf("apply %s: %v", c.kind(), err)
		}
		idx++
	}
	g, _ := f.group(1)
	if len(g.Active.Voters) != 3 || g.Pending != nil {
		t.Fatalf("setup: active %v pending %v", g.Active, g.Pending)
	}
	return f, idx
}

// Case 1 scenario A: adding D (3 -> 4) while the main still used {A,B,C}; x is on A and B.
// A seal of R=2 of the new config alone ({C,D}) misses x; it must also cover the active one.
func TestCase1AAddVoterSealsBothConfigs(t *testing.T) {
	g := &command.GroupInfo{Active: command.Config{Version: 1, Voters: []uint16{nA, nB, nC}},
		Pending: &command.Config{Version: 2, Voters: []uint16{nA, nB, nC, nD}}}
	if sealsCover(g, sealed(map[uint16][2]uint64{nC: {5, 99}, nD: {5, 99}})) {
		t.Fatal("seals of C and D covered the active config {A,B,C}: x (on A, B) would be lost")
	}
	r := sealed(map[uint16][2]uint64{nB: {5, 100}, nC: {5, 99}, nD: {5, 99}})
	if !sealsCover(g, r) || chooseMain(r).Node != nB {
		t.Fatalf("B, C, D sealed: cover %v, chosen %d; want covered and B (holds x)", sealsCover(g, r), chooseMain(r).Node)
	}
}

// Case 1 scenario B: removing C (3 -> 2); x on B and C. R=1 of the new {A,B} alone (A) is
// not enough: the active {A,B,C} needs 2.
func TestCase1BRemoveVoterSealsActiveConfig(t *testing.T) {
	g := &command.GroupInfo{Active: command.Config{Version: 1, Voters: []uint16{nA, nB, nC}},
		Pending: &command.Config{Version: 2, Voters: []uint16{nA, nB}}}
	if sealsCover(g, sealed(map[uint16][2]uint64{nA: {5, 99}})) {
		t.Fatal("a seal of A alone covered {A,B,C}")
	}
}

// Case 1 scenario C: the shrink every promotion makes. 2 was chosen ({3,4} pending, the
// active config still {2,3,4}); 2 crashes before {3,4} hold x. Sealing only 4 is not enough.
func TestCase1CPromotionShrinkSealsActiveConfig(t *testing.T) {
	f, idx := threeVoters(t)
	if err := applyAt(t, f, idx, beginPromotion{Server: 1, Epoch: 2, From: 1}); err != nil {
		t.Fatal(err)
	}
	if err := applyAt(t, f, idx+1, choosePromotion{Server: 1, Epoch: 2, Main: 2}); err != nil {
		t.Fatal(err)
	}
	g, _ := f.group(1)
	if g.Pending == nil || len(g.Pending.Voters) != 2 || len(g.Active.Voters) != 3 {
		t.Fatalf("after choosing 2: active %v pending %v; want active of 3 and a pending of 2", g.Active, g.Pending)
	}
	if sealsCover(&g, sealed(map[uint16][2]uint64{4: {1, 99}})) {
		t.Fatal("one seal covered the active config {2,3,4}")
	}
	r := sealed(map[uint16][2]uint64{3: {1, 100}, 4: {1, 99}})
	if !sealsCover(&g, r) || chooseMain(r).Node != 3 {
		t.Fatalf("3 and 4 sealed: cover %v chosen %d; want 3, which holds x", sealsCover(&g, r), chooseMain(r).Node)
	}
}

// Case 1 scenario D: a main alone (S=0) cannot be sealed, so it is never promoted
// automatically: its writes exist on it only.
func TestCase1DNoVotersNoPromotion(t *testing.T) {
	f := newFSM()
	if err := applyAt(t, f, 1, join(7)); err != nil {
		t.Fatal(err)
	}
	if err := applyAt(t, f, 2, beginPromotion{Server: 7, Epoch: 2, From: 7}); err == nil {
		t.Fatal("a promotion of a group with no voting sibling was opened")
	}
	g := &command.GroupInfo{Active: command.Config{Version: 1}}
	if sealsCover(g, sealed(map[uint16][2]uint64{nA: {1, 1}})) {
		t.Fatal("an empty config counted as covered")
	}
}

// Case 2 scenario C: choose compares each sibling's last entry (epoch, seq), never its
// current epoch: A holds (1,110) uncommitted, C the committed (2,105); C wins.
func TestCase2CChooseByLastEntryEpoch(t *testing.T) {
	r := sealed(map[uint16][2]uint64{nA: {1, 110}, nC: {2, 105}})
	if got := chooseMain(r).Node; got != nC {
		t.Fatalf("chose %d, want C (last entry (2,105) beats (1,110))", got)
	}
}

// Case 5 scenario A: an attempt's epoch is never reused, even when it was abandoned.
func TestCase5AAbandonedEpochNotReused(t *testing.T) {
	f, idx := threeVoters(t)
	if err := applyAt(t, f, idx, beginPromotion{Server: 1, Epoch: 2, From: 1}); err != nil {
		t.Fatal(err)
	}
	if err := applyAt(t, f, idx+1, abandonPromotion{Server: 1, Epoch: 2}); err != nil {
		t.Fatal(err)
	}
	if err := applyAt(t, f, idx+2, beginPromotion{Server: 1, Epoch: 2, From: 1}); err == nil {
		t.Fatal("epoch 2 was opened again after it was abandoned")
	}
	if err := applyAt(t, f, idx+3, choosePromotion{Server: 1, Epoch: 2, Main: 2}); err == nil {
		t.Fatal("an abandoned attempt was chosen")
	}
	g, _ := f.group(1)
	if g.NextEpoch() != 3 {
		t.Fatalf("next epoch %d, want 3", g.NextEpoch())
	}
}

// Case 5 scenario D: a copy that lost its disk reports another copy ID; its seal is not
// counted, so the seal cannot be completed by a copy that holds nothing it acked.
func TestCase5DAmnesiacCopyNotCounted(t *testing.T) {
	g := &command.GroupInfo{Siblings: []command.Member{{Node: nA, State: command.SiblingVoting, CopyID: "disk-1"}}}
	if sameCopy(g, command.SealReply{Node: nA, CopyID: "disk-2"}) {
		t.Fatal("a seal reply from another disk was counted")
	}
	if !sameCopy(g, command.SealReply{Node: nA, CopyID: "disk-1"}) {
		t.Fatal("the recorded copy was not counted")
	}
}
