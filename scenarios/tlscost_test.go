package scenarios

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchFigures are the fields of `sibyl bench --json` this test reports.
type benchFigures struct {
	OpsPerSec float64           `json:"opsPerSec"`
	P50Ms     float64           `json:"p50Ms"`
	P99Ms     float64           `json:"p99Ms"`
	Errors    map[string]uint64 `json:"errors"`
}

// TestSecurityCost measures what the security settings cost: `sibyl bench` (writes, 16
// clients, 10 s) against a 4-node cluster started in each clusterMode, one after the
// other in the same run, SIBYL_BENCH_TLS_ROUNDS times (default 1) in turn. It reports
// each run, then per mode the medians of writes/s, p50 and p99, and writes/s relative to
// the open mode (docs/security.md "Cost"). A measurement, not a check: set
// SIBYL_BENCH_TLS=1.
func TestSecurityCost(t *testing.T) {
	if os.Getenv("SIBYL_BENCH_TLS") != "1" {
		t.Skip("a measurement of about a minute: set SIBYL_BENCH_TLS=1 (and SIBYL_BENCH_TLS_ROUNDS)")
	}
	rounds := 1
	if n, err := strconv.Atoi(os.Getenv("SIBYL_BENCH_TLS_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	results := map[string][]benchFigures{}
	for round := 0; round < rounds; round++ {
		for _, mode := range clusterModes {
			t.Run(fmt.Sprintf("%s/round%d", mode.name, round), func(t *testing.T) {
				c := StartCluster(t, withMode(Options{Nodes: 4, WriteTimeout: 5 * time.Second}, mode.opts))
				args := []string{"bench", "--cluster", filepath.Join(c.Dir, "cluster.json"), "--clients", "16",
					"--duration", "10s", "--warmup", "2s", "--json"}
				if c.adminToken != "" {
					// bench writes its own type, which the scenarios' client role does not grant.
					args = append(args, "--token", c.adminToken)
				}
				var out, errb bytes.Buffer
				cmd := exec.Command(sibylBin, args...)
				cmd.Stdout, cmd.Stderr = &out, &errb
				if err := cmd.Run(); err != nil {
					t.Fatalf("sibyl %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
				}
				lines := strings.Split(strings.TrimSpace(out.String()), "\n")
				var f benchFigures
				if err := json.Unmarshal([]byte(lines[len(lines)-1]), &f); err != nil {
					t.Fatalf("bench output %q: %v", lines[len(lines)-1], err)
				}
				t.Logf("%s: %.0f writes/s, p50 %.2f ms, p99 %.2f ms, errors %v", describeMode(mode.opts), f.OpsPerSec, f.P50Ms, f.P99Ms, f.Errors)
				results[mode.name] = append(results[mode.name], f)
			})
		}
	}
	// Medians, each figure on its own: on a shared machine one slow run moves a mean.
	median := func(fs []benchFigures, field func(benchFigures) float64) float64 {
		v := make([]float64, len(fs))
		for i, f := range fs {
			v[i] = field(f)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	ops := func(f benchFigures) float64 { return f.OpsPerSec }
	open := median(results["open"], ops)
	for _, mode := range clusterModes {
		fs := results[mode.name]
		if len(fs) == 0 {
			continue
		}
		m := median(fs, ops)
		t.Logf("%-6s median of %d runs: %6.0f writes/s (%+.1f%% vs open), p50 %.2f ms, p99 %.2f ms",
			mode.name, len(fs), m, 100*(m/open-1), median(fs, func(f benchFigures) float64 { return f.P50Ms }),
			median(fs, func(f benchFigures) float64 { return f.P99Ms }))
	}
}
