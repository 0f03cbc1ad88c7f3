package main

import (
	"slices"
	"testing"
)

func TestChildEnvSharesCPUs(t *testing.T) {
	base := []string{"PATH=/bin"}
	for _, tc := range []struct {
		processes, cpus int
		want            string // "" = unchanged
	}{
		{7, 2, "GOMAXPROCS=1"},
		{7, 16, "GOMAXPROCS=2"},
		{4, 4, "GOMAXPROCS=1"},
		{2, 8, "GOMAXPROCS=4"},
		{1, 8, ""},
	} {
		got := childEnv(base, tc.processes, tc.cpus)
		if tc.want == "" {
			if !slices.Equal(got, base) {
				t.Errorf("%d processes on %d CPUs: %v, want the environment unchanged", tc.processes, tc.cpus, got)
			}
			continue
		}
		if !slices.Contains(got, tc.want) || !slices.Contains(got, "PATH=/bin") {
			t.Errorf("%d processes on %d CPUs: %v, want %s added", tc.processes, tc.cpus, got, tc.want)
		}
	}
	explicit := []string{"GOMAXPROCS=3"}
	if got := childEnv(explicit, 7, 2); !slices.Equal(got, explicit) {
		t.Errorf("an explicit GOMAXPROCS was overridden: %v", got)
	}
}
