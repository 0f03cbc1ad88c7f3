package scenarios

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSoak runs many fault schedules and real-process fault runs in one go and prints one
// table: schedules, operations, acknowledged writes, faults by kind, lost writes,
// linearizability violations, stuck schedules, event gaps and repeats. It is skipped unless
// SIBYL_SOAK=1, so CI stays short; CI runs the same code on a few seeds every time.
//
//	SIBYL_SOAK=1 SIBYL_SOAK_SCHEDULES=10000 SIBYL_SOAK_RUNS=50 go test ./scenarios -run TestSoak -timeout 24h -v
//
// SIBYL_SOAK_SEED sets the first in-process seed (default: drawn from the clock and
// printed); schedule i runs seed first+i, and a failing one prints its replay command.
// The real-process runs cycle through kill -9 of a main, SIGSTOP of a main, a partition of
// the main from its siblings through proxies, a kill of the controller leader, and a
// sibling that loses its disk; each checks its history with porcupine and its lost writes.
func TestSoak(t *testing.T) {
	if os.Getenv("SIBYL_SOAK") != "1" {
		t.Skip("a long run: set SIBYL_SOAK=1 (and SIBYL_SOAK_SCHEDULES, SIBYL_SOAK_RUNS)")
	}
	schedules := envInt("SIBYL_SOAK_SCHEDULES", 1000)
	runs := envInt("SIBYL_SOAK_RUNS", 10)
	first := uint64(time.Now().UnixNano()%1_000_000_000_000) + 1_000_000
	if v, err := strconv.ParseUint(os.Getenv("SIBYL_SOAK_SEED"), 10, 64); err == nil {
		first = v
	}
	msg := fmt.Sprintf("soak: %d in-process schedules from seed %d, %d real-process fault runs", schedules, first, runs)
	fmt.Println(msg)
	t.Log(msg)

	var tab soakTable
	start := time.Now()
	for i := 0; i < schedules; i++ {
		seed := first + uint64(i)
		ok := t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := runInProc(t, seed)
			if r.h == nil {
				tab.stuck++
				t.Errorf("seed %d: the schedule did not start its workload", seed)
				return
			}
			tab.schedules++
			tab.ops += r.h.Len()
			tab.acked += ackedOf(r)
			tab.lost += r.lost
			for _, f := range r.faults {
				tab.fault(f)
			}
			if r.lost > 0 {
				t.Errorf("seed %d: %d acknowledged writes lost", seed, r.lost)
			}
			if b := r.backwards.Load(); b > 0 {
				t.Errorf("seed %d: %d sibling reads went backwards", seed, b)
			}
			if err := r.h.Check(60 * time.Second); err != nil {
				tab.violations++
				t.Errorf("seed %d: %v", seed, err)
			}
			for i, evs := range r.events {
				missing, duplicated, reordered, _ := checkEvents(t, evs, r.ew.writes)
				tab.gaps += missing + reordered
				tab.repeats += duplicated
				if missing+duplicated+reordered > 0 {
					t.Errorf("seed %d subscriber %d: %d missing, %d twice, %d out of order", seed, i, missing, duplicated, reordered)
				}
			}
			if t.Failed() {
				t.Logf("replay: go test -race ./scenarios -run 'TestInProcFaults$' -inproc.seed=%d -v", seed)
			}
		})
		if !ok {
			tab.failed++
		}
		if (i+1)%10 == 0 || i+1 == schedules {
			fmt.Printf("soak: %d/%d schedules, %d failed, %v\n", i+1, schedules, tab.failed, time.Since(start).Round(time.Second))
		}
	}
	kinds := []struct {
		name string
		run  func(*testing.T)
	}{
		{"kill -9 main", TestMainCrashFailover},
		{"SIGSTOP main", TestFrozenMainIsFenced},
		{"partition main from siblings", TestMainPartitionedFromSiblings},
		{"kill controller leader", TestControllerLeaderCrash},
		{"sibling disk lost", TestWipedSiblingRejoins},
	}
	for i := 0; i < runs; i++ {
		k := kinds[i%len(kinds)]
		if !t.Run(fmt.Sprintf("run%d %s", i+1, k.name), k.run) {
			tab.failedRuns++
		}
		tab.fault("real: " + k.name)
		tab.realRuns++
		fmt.Printf("soak: %d/%d real-process runs, %d failed, %v\n", i+1, runs, tab.failedRuns, time.Since(start).Round(time.Second))
	}
	report := tab.String(time.Since(start))
	fmt.Print(report)
	t.Log("\n" + report)
}

type soakTable struct {
	schedules, ops, acked, lost, violations, stuck, gaps, repeats, failed int
	realRuns, failedRuns                                                  int
	faults                                                                map[string]int
}

// fault counts a fault by kind: its name without the node it hit, how long it lasted, or
// how it ended ("kill main 1 for 1.2s" is "kill main").
func (s *soakTable) fault(name string) {
	if s.faults == nil {
		s.faults = map[string]int{}
	}
	var words []string
	for _, w := range strings.Fields(name) {
		if w == "for" || strings.HasPrefix(w, "(") {
			break
		}
		if strings.TrimLeft(w, "0123456789.,cms") == "" || strings.TrimRight(strings.TrimLeft(w, "c"), "0123456789,") == "" {
			continue // a node, a controller or a duration
		}
		words = append(words, strings.TrimSuffix(w, ","))
	}
	s.faults[strings.Join(words, " ")]++
}

func (s *soakTable) String(took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "soak results (wall time %v)\n", took.Round(time.Second))
	row := func(k string, v any) { fmt.Fprintf(&b, "  %-34s %v\n", k, v) }
	row("in-process schedules", s.schedules)
	row("operations", s.ops)
	row("acknowledged writes", s.acked)
	row("real-process fault runs", s.realRuns)
	row("failed schedules / runs", fmt.Sprintf("%d / %d", s.failed, s.failedRuns))
	row("lost acknowledged writes", s.lost)
	row("linearizability violations", s.violations)
	row("stuck schedules", s.stuck)
	row("event gaps / repeats", fmt.Sprintf("%d / %d", s.gaps, s.repeats))
	kinds := make([]string, 0, len(s.faults))
	for k := range s.faults {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		row("faults: "+k, s.faults[k])
	}
	return b.String()
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
		return v
	}
	return def
}
