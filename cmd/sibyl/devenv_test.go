package main

import (
	"slices"
	"testing"
)

func TestChildEnvSharesCPUs(t *testing.T) {
	base := []string{"PATH=/bin"}
	for _, tc := range []struct {
		processes, cpus, extra int
		want                   string // "" = unchanged
	}{
		{7, 2, 0, "GOMAXPROCS=1"},
		{7, 2, 1, ""}, // a node's share plus one is every CPU
		{7, 16, 0, "GOMAXPROCS=2"},
		{7, 16, 1, "GOMAXPROCS=3"},
		{4, 4, 0, "GOMAXPROCS=1"},
		{4, 4, 1, "GOMAXPROCS=2"},
		{2, 8, 0, "GOMAXPROCS=4"},
		{1, 8, 0, ""},
	} {
		got := childEnv(base, tc.processes, tc.cpus, tc.extra)
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
	if got := childEnv(explicit, 7, 2, 1); !slices.Equal(got, explicit) {
		t.Errorf("an explicit GOMAXPROCS was overridden: %v", got)
	}
}
