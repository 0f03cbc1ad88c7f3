package main

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

// dashboardPath is the Grafana dashboard shipped in docs/.
const dashboardPath = "../../docs/grafana/sibyl.json"

type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

var metricName = regexp.MustCompile(`\bsibyl_[a-z0-9_]+`)

// dashboardMetrics loads the dashboard, checks its structure, and returns every metric
// family its queries use (histogram series named by their family).
func dashboardMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("%s: title %q, uid %q, %d panels; want all set", dashboardPath, d.Title, d.UID, len(d.Panels))
	}
	names := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if p.Title == "" || p.Type == "" || len(p.Targets) == 0 || ids[p.ID] {
			t.Fatalf("%s: panel %d (%q) lacks a title, type or query, or repeats an id", dashboardPath, p.ID, p.Title)
		}
		ids[p.ID] = true
		for _, q := range p.Targets {
			found := metricName.FindAllString(q.Expr, -1)
			if q.RefID == "" || len(found) == 0 {
				t.Fatalf("%s: panel %q has a query without a refId or a Sibyl metric: %q", dashboardPath, p.Title, q.Expr)
			}
			for _, n := range found {
				names[familyOf(n)] = true
			}
		}
	}
	return names
}

func familyOf(series string) string {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := strings.CutSuffix(series, s); ok {
			return f
		}
	}
	return series
}

// scrapedFamilies is every metric family addr's /metrics exposes.
func scrapedFamilies(t *testing.T, addr string) map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", addr, err)
	}
	defer resp.Body.Close()
	out := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if f, ok := strings.CutPrefix(sc.Text(), "# TYPE "); ok {
			out[strings.Fields(f)[0]] = true
		}
	}
	return out
}

// checkDashboard holds the dashboard against a running cluster: every family it queries is
// exposed by a node or a controller.
func checkDashboard(t *testing.T, cf clusterFile) {
	t.Helper()
	live := map[string]bool{}
	for _, n := range cf.Nodes {
		for f := range scrapedFamilies(t, n.HTTP) {
			live[f] = true
		}
	}
	for _, f := range []string{"sibyl_requests_total", "sibyl_request_seconds", "sibyl_commit_seconds", "sibyl_fsync_seconds",
		"sibyl_fsync_batch_entries", "sibyl_replication_lag_entries", "sibyl_subscribers", "sibyl_connections"} {
		if !live[f] {
			t.Errorf("no node exposes %s (docs/protocol.md §8)", f)
		}
	}
	ctl := scrapedFamilies(t, cf.Controllers[0].HTTP)
	for _, f := range []string{"sibyl_promotions_total", "sibyl_promotion_seconds"} {
		if !ctl[f] {
			t.Errorf("controller %s does not expose %s (docs/protocol.md §8)", cf.Controllers[0].HTTP, f)
		}
	}
	for f := range ctl {
		live[f] = true
	}
	for f := range dashboardMetrics(t) {
		if !live[f] {
			t.Errorf("the dashboard queries %s, which no node or controller exposes", f)
		}
	}
}

func TestDashboardIsWellFormed(t *testing.T) {
	if n := len(dashboardMetrics(t)); n < 8 {
		t.Fatalf("the dashboard uses %d metric families, want the node's and controller's main ones", n)
	}
}
