package location

import (
	"slices"
	"testing"

	"github.com/sibylhq/sibyl/command"
)

// Case 5, rule "An epoch number is never reused for a different main", and invariant 1
// ("At most one node acts as main for each (group, epoch)"): a main that restarts (a join
// with a higher incarnation) is given a fresh epoch. While a promotion attempt is open its
// epoch is already consumed, so the restarted main must not get that epoch: otherwise the
// attempt's choice later names a second main of the same epoch (or moves the epoch back).
func TestCase5_RestartedMainNeverTakesAnOpenAttemptsEpoch(t *testing.T) {
	f, idx := threeVoters(t)
	apply := func(c dirCommand) error {
		err := applyAt(t, f, idx, c)
		idx++
		return err
	}
	if err := apply(beginPromotion{Server: 1, Epoch: 2, From: 1}); err != nil {
		t.Fatal(err)
	}
	// Node 1, the main being replaced, restarts and joins while the seals are out.
	rejoin := join(1)
	rejoin.Instance, rejoin.Incarnation = "inst-2", 2
	if err := apply(rejoin); err != nil {
		t.Fatal(err)
	}
	g, _ := f.group(1)
	mains := map[uint64]uint16{g.Epoch: g.Main}
	if g.Epoch == 2 {
		t.Errorf("the restarted main 1 was given epoch 2, the open attempt's epoch")
	}
	// The attempt's choice must not name another main for an epoch that already has one,
	// nor move the group's epoch back.
	before := g.Epoch
	if err := apply(choosePromotion{Server: 1, Epoch: 2, Main: nA}); err == nil {
		g, _ = f.group(1)
		if m, ok := mains[g.Epoch]; ok && m != g.Main {
			t.Fatalf("epoch %d has two mains: %d (after its restart) and %d (chosen)", g.Epoch, m, g.Main)
		}
		if g.Epoch < before {
			t.Fatalf("choosing attempt 2 moved the group's epoch back from %d to %d", before, g.Epoch)
		}
	}
	g, _ = f.group(1)
	if n := g.NextEpoch(); n <= 2 {
		t.Fatalf("next epoch %d: epoch 2 would be reused", n)
	}
}

// The same rule after an abandoned attempt: its epoch stays consumed, so a main that
// restarts afterwards takes the epoch after it (docs/protocol.md: "epochs may skip numbers").
func TestCase5_RestartedMainSkipsAnAbandonedEpoch(t *testing.T) {
	f, idx := threeVoters(t)
	for _, c := range []dirCommand{
		beginPromotion{Server: 1, Epoch: 2, From: 1},
		abandonPromotion{Server: 1, Epoch: 2},
	} {
		if err := applyAt(t, f, idx, c); err != nil {
			t.Fatal(err)
		}
		idx++
	}
	rejoin := join(1)
	rejoin.Instance, rejoin.Incarnation = "inst-2", 2
	if err := applyAt(t, f, idx, rejoin); err != nil {
		t.Fatal(err)
	}
	if g, _ := f.group(1); g.Epoch != 3 || g.Main != 1 {
		t.Fatalf("after the restart: epoch %d main %d, want epoch 3 (2 was consumed by the abandoned attempt) and main 1", g.Epoch, g.Main)
	}
}

// Case 5 scenario C: "B reports (e,105), but (e,104..105) were not yet fsynced. B is chosen,
// crashes, and reboots with (e,103). It carries on as main of e+1 and writes (e+1,104)."
// The rule: a chosen main that restarts is given a new epoch, so whatever it writes after
// the restart can never be mistaken for what it sent before.
func TestCase5C_RestartedChosenMainGetsANewEpoch(t *testing.T) {
	f, idx := threeVoters(t)
	for _, c := range []dirCommand{
		join(nA), // A's record, incarnation 1 (threeVoters joined it already; same process)
		beginPromotion{Server: 1, Epoch: 2, From: 1},
		choosePromotion{Server: 1, Epoch: 2, Main: nA},
	} {
		if err := applyAt(t, f, idx, c); err != nil {
			t.Fatalf("%s: %v", c.kind(), err)
		}
		idx++
	}
	rejoin := join(nA)
	rejoin.Instance, rejoin.Incarnation = "inst-A2", 2
	if err := applyAt(t, f, idx, rejoin); err != nil {
		t.Fatal(err)
	}
	if g, _ := f.group(1); g.Main != nA || g.Epoch != 3 {
		t.Fatalf("after the chosen main restarted: main %d epoch %d, want main A in epoch 3", g.Main, g.Epoch)
	}
}

// Case 14 (d): "'Bumped at every change of a group's main'. Add 'epochs may skip numbers',
// since abandoned attempts consume epochs (case 5)." An abandoned attempt's epoch is skipped:
// the next promotion is one above it.
func TestCase14D_EpochsSkipAbandonedNumbers(t *testing.T) {
	f, idx := threeVoters(t)
	for _, c := range []dirCommand{
		beginPromotion{Server: 1, Epoch: 2, From: 1},
		abandonPromotion{Server: 1, Epoch: 2},
		beginPromotion{Server: 1, Epoch: 3, From: 1},
		choosePromotion{Server: 1, Epoch: 3, Main: nA},
	} {
		if err := applyAt(t, f, idx, c); err != nil {
			t.Fatalf("%s: %v", c.kind(), err)
		}
		idx++
	}
	if g, _ := f.group(1); g.Epoch != 3 || g.Main != nA {
		t.Fatalf("group 1: epoch %d main %d, want epoch 3 (2 skipped) with main A", g.Epoch, g.Main)
	}
}

// Case 14 (e): "'Will survive any promotion'. Add 'as long as fewer than W of the copies that
// acknowledged it lose their disks'. Amnesia is handled by demotion (case 5)." The rule of
// case 5: "A copy that reports another ID, or none, is demoted to syncing by a committed
// config change (case 1) before it may be counted anywhere."
func TestCase14E_AmnesiacCopyIsDemoted(t *testing.T) {
	f, idx := threeVoters(t)
	g, _ := f.group(1)
	if m := member(&g, nA); m == nil || m.CopyID != "copy-2" {
		t.Fatalf("setup: A's recorded copy %+v", m)
	}
	// A lost its disk and restarted with the same ID: it reports a new copy ID. The main
	// reports every sibling recent and caught up.
	reports := promotedReports(g, false,
		command.SiblingProgress{Node: nA, Seq: 1000, Recent: true},
		command.SiblingProgress{Node: nB, Seq: 1000, Recent: true},
		command.SiblingProgress{Node: nC, Seq: 1000, Recent: true})
	reports[nA] = map[uint16]command.GroupReport{1: {Server: 1, Role: command.RoleSibling, Epoch: 1, CopyID: "disk-lost"}}
	for round := 0; round < 3; round++ {
		for _, c := range planRound(upDirectory(f), reports, nil) {
			if applyAt(t, f, idx, c) == nil {
				idx++
			}
		}
	}
	g, _ = f.group(1)
	demoted := memberState(g, nA) == command.SiblingSyncing || (g.Pending != nil && !slices.Contains(g.Pending.Voters, nA))
	if !demoted {
		t.Fatalf("A reports another copy ID and is still counted: state %q, active %v, pending %v", memberState(g, nA), g.Active, g.Pending)
	}
}
