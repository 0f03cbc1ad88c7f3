package location

import (
	"reflect"
	"testing"
	"time"
)

// After its main gives up a registration, the node is not added to that group again
// before a wait that doubles with each abort in a row (5 s, 10 s, ... at most 5 min); other
// groups and other nodes are not held back, and a node that became a voter starts again.
func TestRegisterBackoffAfterAnAbort(t *testing.T) {
	for aborts, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 7: 5 * time.Minute, 40: 5 * time.Minute} {
		if got := registerBackoff(aborts); got != want {
			t.Errorf("registerBackoff(%d) = %v, want %v", aborts, got, want)
		}
	}

	t0 := time.Unix(1_800_000_000, 0)
	term := newLeaderTerm(t0)
	if w := term.noteRegisterAbort(1, 5, t0); w != 5*time.Second {
		t.Fatalf("first abort waits %v, want 5s", w)
	}
	plan := []dirCommand{addLearner{Server: 1, Node: 5}, addLearner{Server: 2, Node: 5}, addLearner{Server: 1, Node: 6}, proposeVoter{Server: 1, Node: 4}}
	held := []dirCommand{addLearner{Server: 2, Node: 5}, addLearner{Server: 1, Node: 6}, proposeVoter{Server: 1, Node: 4}}
	if got := withoutBackedOff(plan, term.registerWaiting(t0.Add(4*time.Second))); !reflect.DeepEqual(got, held) {
		t.Fatalf("4s after the abort the plan is %v, want %v", got, held)
	}
	if got := withoutBackedOff(plan, term.registerWaiting(t0.Add(5*time.Second))); !reflect.DeepEqual(got, plan) {
		t.Fatalf("5s after the abort the plan is %v, want all of %v", got, plan)
	}
	t1 := t0.Add(6 * time.Second)
	if w := term.noteRegisterAbort(1, 5, t1); w != 10*time.Second {
		t.Fatalf("second abort in a row waits %v, want 10s", w)
	}
	if got := withoutBackedOff(plan, term.registerWaiting(t1.Add(9*time.Second))); !reflect.DeepEqual(got, held) {
		t.Fatalf("9s after the second abort the plan is %v, want %v", got, held)
	}
	term.clearRegisterBackoff(1, 5)
	if got := withoutBackedOff(plan, term.registerWaiting(t1)); !reflect.DeepEqual(got, plan) {
		t.Fatalf("after the node became a voter the plan is %v, want all of %v", got, plan)
	}
	if w := term.noteRegisterAbort(1, 5, t1); w != 5*time.Second {
		t.Fatalf("an abort after a success waits %v, want 5s again", w)
	}
}
