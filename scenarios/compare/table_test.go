package main

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRatio(t *testing.T) {
	cases := []struct {
		a, b     float64
		okA, okB bool
		want     string
	}{
		{3000, 1500, true, true, "2.00x"},
		{30, 1500, true, true, "0.02x"},
		{1500, 100, true, true, "15.0x"},
		{25000, 100, true, true, "250x"},
		{1, 0, true, true, "-"},
		{1, 2, false, true, "-"},
		{1, 2, true, false, "-"},
	}
	for _, c := range cases {
		if got := formatRatio(ratio(c.a, c.b, c.okA, c.okB)); got != c.want {
			t.Errorf("ratio(%v, %v, %v, %v) prints %q, want %q", c.a, c.b, c.okA, c.okB, got, c.want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	cases := []struct {
		v    float64
		kind valueKind
		want string
	}{
		{2549.6, kindRate, "2550"},
		{0.4567, kindMs, "0.46"},
		{12.345, kindMs, "12.3"},
		{1234.5, kindMs, "1234"},
	}
	for _, c := range cases {
		if got := formatValue(c.v, c.kind); got != c.want {
			t.Errorf("formatValue(%v, %v) = %q, want %q", c.v, c.kind, got, c.want)
		}
	}
}

func TestMedian(t *testing.T) {
	cases := []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{30, 10, 20}, 20},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, c := range cases {
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}

func TestMedianGapNeedsEveryRun(t *testing.T) {
	r := &systemResult{Failovers: []failoverResult{{Resumed: true, GapMs: 40}, {Resumed: true, GapMs: 60}, {Resumed: true, GapMs: 50}}}
	if g, ok := r.medianGapMs(); !ok || g != 50 {
		t.Fatalf("median gap = %v, %v; want 50, true", g, ok)
	}
	r.Failovers[1] = failoverResult{Err: "no write succeeded within 30s of the kill"}
	if _, ok := r.medianGapMs(); ok {
		t.Fatal("a median was given although a run failed")
	}
}

func TestTableRowsAndRender(t *testing.T) {
	results := map[string]*systemResult{
		sysSibyl: {System: sysSibyl, Loads: []loadResult{
			{Clients: 1, Ops: 100, OpsPerSec: 400, P50Ms: 2.5, P99Ms: 4, CPUUsPerOp: 250, DiskKiBPerOp: 6.5},
			{Clients: 16, Ops: 100, OpsPerSec: 3000, P50Ms: 5, P99Ms: 12},
		}, Failovers: []failoverResult{{Resumed: true, GapMs: 40, Victim: "node 1"}}},
		sysEtcd: {System: sysEtcd, Loads: []loadResult{
			{Clients: 1, Ops: 100, OpsPerSec: 200, P50Ms: 5, P99Ms: 8, CPUUsPerOp: 700, DiskKiBPerOp: 13},
			{Clients: 16, Err: "etcd client: dial failed"},
		}, Failovers: []failoverResult{{Resumed: true, GapMs: 1600, Victim: "etcd m1 (leader)"}}},
	}
	rows := tableRows([]int{1, 16}, results, 1, true)
	var labels []string
	for _, r := range rows {
		labels = append(labels, r.Label)
	}
	// The cost rows appear for the client counts some system measured them at.
	want := "writes/s @1|writes/s @16|p50 ms @1|p50 ms @16|p99 ms @1|p99 ms @16|CPU µs/write @1|disk KiB/write @1|failover gap ms (median of 1)"
	if got := strings.Join(labels, "|"); got != want {
		t.Fatalf("row labels\n got %s\nwant %s", got, want)
	}
	out := renderTable([]string{"title"}, rows, tableNotes(results))
	lines := strings.Split(out, "\n")
	find := func(prefix string) []string {
		for _, l := range lines {
			if strings.HasPrefix(l, prefix) {
				return strings.Fields(strings.TrimPrefix(l, prefix))
			}
		}
		t.Fatalf("no line starting %q in\n%s", prefix, out)
		return nil
	}
	if got := strings.Join(find("writes/s @1 "), " "); got != "400 200 - 2.00x -" {
		t.Errorf("writes/s @1 line: %q", got)
	}
	if got := strings.Join(find("writes/s @16 "), " "); got != "3000 - - - -" {
		t.Errorf("writes/s @16 line (etcd failed there): %q", got)
	}
	if got := strings.Join(find("p50 ms @1 "), " "); got != "2.50 5.00 - 0.50x -" {
		t.Errorf("p50 ms @1 line: %q", got)
	}
	if got := strings.Join(find("CPU µs/write @1 "), " "); got != "250 700 - 0.36x -" {
		t.Errorf("CPU µs/write @1 line: %q", got)
	}
	if got := strings.Join(find("failover gap ms (median of 1) "), " "); got != "40.0 1600 - 0.03x -" {
		t.Errorf("failover line: %q", got)
	}
	if !strings.Contains(out, "etcd @16: etcd client: dial failed") {
		t.Errorf("the failed measure is not among the notes:\n%s", out)
	}
	header := lines[2]
	for _, col := range []string{"Sibyl", "etcd", "Redis", "Sibyl/etcd", "Sibyl/Redis"} {
		if !strings.Contains(header, col) {
			t.Errorf("column %q missing from %q", col, header)
		}
	}
	// Every line of the table has the same width: the columns line up.
	width := utf8.RuneCountInString(lines[2])
	for _, l := range lines[3 : 3+len(rows)] {
		if w := utf8.RuneCountInString(l); w != width {
			t.Errorf("line %q is %d wide, the header %d", l, w, width)
		}
	}
}

func TestTableOmitsLatencyWithoutWrites(t *testing.T) {
	results := map[string]*systemResult{
		sysRedis: {System: sysRedis, Loads: []loadResult{{Clients: 1, Ops: 0, OpsPerSec: 0}}},
	}
	rows := tableRows([]int{1}, results, 3, false)
	if _, ok := rows[0].Values[sysRedis]; !ok {
		t.Error("0 writes/s should show as 0")
	}
	if _, ok := rows[1].Values[sysRedis]; ok {
		t.Error("a p50 of no writes should show as missing")
	}
	if len(rows) != 3 {
		t.Errorf("%d rows without failover, want 3", len(rows))
	}
}
