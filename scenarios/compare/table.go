package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode/utf8"
)

// valueKind says how a row's values print.
type valueKind int

const (
	kindRate valueKind = iota // writes per second
	kindMs                    // milliseconds
	kindCost                  // the machine's CPU µs or disk KiB per write
)

// tableRow is one measure: a value per system that measured it.
type tableRow struct {
	Label  string             `json:"label"`
	Kind   valueKind          `json:"-"`
	Values map[string]float64 `json:"values"` // by system; absent when not measured
}

// tableRows lays the results out as rows: writes/s at each client count, then p50, p99,
// the machine's CPU time and disk bytes per write, then the failover gap.
func tableRows(clients []int, results map[string]*systemResult, failoverRuns int, withFailover bool) []tableRow {
	var rows []tableRow
	measures := []struct {
		label string
		kind  valueKind
		get   func(loadResult) float64
	}{
		{"writes/s", kindRate, func(l loadResult) float64 { return l.OpsPerSec }},
		{"p50 ms", kindMs, func(l loadResult) float64 { return l.P50Ms }},
		{"p99 ms", kindMs, func(l loadResult) float64 { return l.P99Ms }},
		{"CPU µs/write", kindCost, func(l loadResult) float64 { return l.CPUUsPerOp }},
		{"disk KiB/write", kindCost, func(l loadResult) float64 { return l.DiskKiBPerOp }},
	}
	for _, m := range measures {
		var measured []tableRow
		for _, n := range clients {
			row := tableRow{Label: fmt.Sprintf("%s @%d", m.label, n), Kind: m.kind, Values: map[string]float64{}}
			for sys, r := range results {
				l, ok := r.load(n)
				switch {
				case !ok:
				case m.kind == kindRate:
					row.Values[sys] = m.get(l)
				case m.kind == kindMs && l.Ops > 0:
					row.Values[sys] = m.get(l)
				case m.kind == kindCost && m.get(l) > 0:
					row.Values[sys] = m.get(l)
				}
			}
			if m.kind != kindCost || len(row.Values) > 0 {
				measured = append(measured, row)
			}
		}
		rows = append(rows, measured...)
	}
	if withFailover {
		row := tableRow{Label: fmt.Sprintf("failover gap ms (median of %d)", failoverRuns), Kind: kindMs, Values: map[string]float64{}}
		for sys, r := range results {
			if g, ok := r.medianGapMs(); ok {
				row.Values[sys] = g
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// formatValue prints a value of kind: writes/s whole, milliseconds to three significant
// digits at most.
func formatValue(v float64, kind valueKind) string {
	if kind == kindRate {
		return fmt.Sprintf("%.0f", v)
	}
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// ratio is a/b, false when either is missing or b is 0.
func ratio(a, b float64, okA, okB bool) (float64, bool) {
	if !okA || !okB || b == 0 {
		return 0, false
	}
	return a / b, true
}

// formatRatio prints a ratio as "1.23x" ("-" when there is none).
func formatRatio(r float64, ok bool) string {
	switch {
	case !ok:
		return "-"
	case r >= 100:
		return fmt.Sprintf("%.0fx", r)
	case r >= 10:
		return fmt.Sprintf("%.1fx", r)
	default:
		return fmt.Sprintf("%.2fx", r)
	}
}

// renderTable prints the header lines, then one line per row with the columns Sibyl,
// etcd, Redis, Sibyl/etcd and Sibyl/Redis ("-" where a value is missing), then the
// notes.
func renderTable(header []string, rows []tableRow, notes []string) string {
	cols := []string{"", displayName(sysSibyl), displayName(sysEtcd), displayName(sysRedis),
		displayName(sysSibyl) + "/" + displayName(sysEtcd), displayName(sysSibyl) + "/" + displayName(sysRedis)}
	cells := [][]string{cols}
	for _, r := range rows {
		line := []string{r.Label}
		for _, sys := range allSystems {
			if v, ok := r.Values[sys]; ok {
				line = append(line, formatValue(v, r.Kind))
			} else {
				line = append(line, "-")
			}
		}
		s, okS := r.Values[sysSibyl]
		for _, other := range []string{sysEtcd, sysRedis} {
			o, okO := r.Values[other]
			line = append(line, formatRatio(ratio(s, o, okS, okO)))
		}
		cells = append(cells, line)
	}
	widths := make([]int, len(cols))
	for _, line := range cells {
		for i, c := range line {
			widths[i] = max(widths[i], utf8.RuneCountInString(c)) // fmt pads by runes
		}
	}
	var b strings.Builder
	for _, h := range header {
		b.WriteString(h + "\n")
	}
	b.WriteString("\n")
	for _, line := range cells {
		for i, c := range line {
			if i == 0 {
				fmt.Fprintf(&b, "%-*s", widths[i], c)
			} else {
				fmt.Fprintf(&b, "  %*s", widths[i], c)
			}
		}
		b.WriteString("\n")
	}
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			b.WriteString(n + "\n")
		}
	}
	return b.String()
}

// tableNotes lists what the table's numbers leave out: systems that failed, measures
// that failed, failed writes in measured windows, and failover runs.
func tableNotes(results map[string]*systemResult) []string {
	var notes []string
	for _, sys := range allSystems {
		r := results[sys]
		if r == nil {
			continue
		}
		name := displayName(sys)
		if r.Err != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", name, firstLine(r.Err)))
		}
		for _, l := range r.Loads {
			if l.Err != "" {
				notes = append(notes, fmt.Sprintf("%s @%d: %s", name, l.Clients, firstLine(l.Err)))
				continue
			}
			if n := sumErrors(l.Errors); n > 0 {
				notes = append(notes, fmt.Sprintf("%s @%d: %d failed writes in the measured window (%s)", name, l.Clients, n, topErrors(l.Errors, 2)))
			}
		}
		if len(r.Failovers) > 0 {
			var gaps []string
			for _, f := range r.Failovers {
				switch {
				case f.Err != "":
					gaps = append(gaps, "failed: "+firstLine(f.Err))
				default:
					gaps = append(gaps, formatValue(f.GapMs, kindMs))
				}
			}
			notes = append(notes, fmt.Sprintf("%s failover gaps ms: %s (killed %s)", name, strings.Join(gaps, ", "), r.Failovers[0].Victim))
		}
	}
	return notes
}

func sumErrors(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// topErrors names the k most frequent messages with their counts.
func topErrors(m map[string]uint64, k int) string {
	type kv struct {
		msg string
		n   uint64
	}
	var all []kv
	for msg, n := range m {
		all = append(all, kv{msg, n})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return all[i].msg < all[j].msg
	})
	var parts []string
	for i := 0; i < len(all) && i < k; i++ {
		parts = append(parts, fmt.Sprintf("%d× %s", all[i].n, all[i].msg))
	}
	return strings.Join(parts, "; ")
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}
