package scenarios

import "testing"

// The soak table counts faults by kind, whatever node they hit and however long.
func TestSoakFaultKinds(t *testing.T) {
	var s soakTable
	for _, name := range []string{"kill main 1 for 1.2s", "kill main 3", "kill sibling 2, disk lost", "cut main 1 from the controllers for 880ms",
		"kill controller leader c2 for 440ms", "pause 91ms", "promote 3 (ok)", "real: kill -9 main"} {
		s.fault(name)
	}
	want := map[string]int{"kill main": 2, "kill sibling disk lost": 1, "cut main from the controllers": 1,
		"kill controller leader": 1, "pause": 1, "promote": 1, "real: kill -9 main": 1}
	for k, v := range want {
		if s.faults[k] != v {
			t.Errorf("kind %q counted %d, want %d (all: %v)", k, s.faults[k], v, s.faults)
		}
	}
	if len(s.faults) != len(want) {
		t.Errorf("kinds %v, want %v", s.faults, want)
	}
}
