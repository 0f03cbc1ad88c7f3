package location

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node"
)

// promoteOnce runs one planned promotion of group 1 through the FSM, from its main to
// another voter, suspected at suspMs and completed at atMs; it returns the index of the
// activate that completed it.
func promoteOnce(t *testing.T, f *fsm, idx *uint64, reason string, suspMs, atMs int64) uint64 {
	t.Helper()
	g, _ := f.group(1)
	to := g.Active.Voters[0]
	fsmStep(t, f, idx,
		beginPromotion{Server: 1, Epoch: g.NextEpoch(), From: g.Main, Reason: reason, SuspectedMs: suspMs},
		choosePromotion{Server: 1, Epoch: g.NextEpoch(), Main: to, Planned: true})
	g, _ = f.group(1)
	fsmStep(t, f, idx, activate{Server: 1, Version: g.Pending.Version, AtMs: atMs})
	return *idx - 1
}

// TestPromotionHistoryInFSM: a promotion is recorded when the activate of its config
// applies (the new main's barrier committed), under that command's index, with its reason
// and the time from suspicion; the history keeps the last 20, and a snapshot carries it to a
// controller that restores it (a new leader shows what the old one recorded).
func TestPromotionHistoryInFSM(t *testing.T) {
	f, idx := buildFSM(t)
	fsmStep(t, f, &idx, activate{Server: 1, Version: 3})
	if st, _ := f.view(); len(st.Promotions) != 0 {
		t.Fatalf("history before any promotion: %+v", st.Promotions)
	}
	first := promoteOnce(t, f, &idx, command.ReasonMainUnreachable, 10_000, 11_500)
	r, ok := f.promotionAt(first)
	if !ok {
		t.Fatalf("no promotion recorded at the activate's index %d", first)
	}
	if r.Server != 1 || r.Epoch != 2 || r.From != 1 || r.To != 2 || r.Reason != command.ReasonMainUnreachable {
		t.Fatalf("record %+v, want group 1 epoch 2 from 1 to 2 for main_unreachable", r)
	}
	if s, ok := r.seconds(); !ok || s != 1.5 {
		t.Fatalf("seconds %v %v, want 1.5", s, ok)
	}
	if _, ok := f.promotionAt(first - 1); ok {
		t.Fatal("the choosePromotion's index holds a record: only the activate completes one")
	}
	// A refused activate records nothing.
	if err := applyAt(t, f, idx, activate{Server: 1, Version: 99, AtMs: 1}); err == nil {
		t.Fatal("activate of an unknown version was accepted")
	}
	idx++
	for i := int64(1); i <= 21; i++ {
		promoteOnce(t, f, &idx, command.ReasonPlanned, 20_000*i, 20_000*i+250)
	}
	st, _ := f.view()
	if len(st.Promotions) != command.MaxPromotionHistory {
		t.Fatalf("%d promotions kept, want %d", len(st.Promotions), command.MaxPromotionHistory)
	}
	if st.Promotions[0].SuspectedMs != 40_000 || st.Promotions[19].SuspectedMs != 420_000 {
		t.Fatalf("kept %d..%d, want the last 20 (suspected 40000..420000)", st.Promotions[0].SuspectedMs, st.Promotions[19].SuspectedMs)
	}
	// A promotion's epoch is above every earlier one.
	if !slices.IsSortedFunc(st.Promotions, func(a, b promotionRecord) int { return int(a.Epoch) - int(b.Epoch) }) {
		t.Fatalf("history out of epoch order: %+v", st.Promotions)
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.Persist(&bufSink{Buffer: &buf}); err != nil {
		t.Fatal(err)
	}
	g := newFSM()
	if err := g.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, f), snapshotBytes(t, g)) {
		t.Fatal("a restored FSM differs from the one it was taken from")
	}
	restored, _ := g.view()
	if !reflect.DeepEqual(restored.Promotions, st.Promotions) {
		t.Fatalf("restored history %+v\nwant %+v", restored.Promotions, st.Promotions)
	}

	// Status lists them newest first.
	sp := statusPromotions(st.Promotions)
	if sp[0].Epoch != st.Promotions[19].Epoch || sp[19].Epoch != st.Promotions[0].Epoch {
		t.Fatalf("status promotions not newest first: %+v", sp)
	}
	if sp[0].Seconds == nil || *sp[0].Seconds != 0.25 || sp[0].Reason != command.ReasonPlanned {
		t.Fatalf("newest in status: %+v, want planned, 0.25 s", sp[0])
	}
}

// bufSink is a raft.SnapshotSink over a buffer.
type bufSink struct{ *bytes.Buffer }

func (bufSink) ID() string    { return "test" }
func (bufSink) Cancel() error { return nil }
func (bufSink) Close() error  { return nil }

// TestPromotionMetrics: every group has a zero series per reason before anything happens;
// a completed promotion moves its series and the histogram, which uses the node's buckets.
func TestPromotionMetrics(t *testing.T) {
	if !reflect.DeepEqual(promotionBuckets, node.LatencyBuckets) {
		t.Fatalf("promotion buckets %v differ from the node's %v", promotionBuckets, node.LatencyBuckets)
	}
	var p promotionStats
	total := prometheus.NewDesc("sibyl_promotions_total", "h", []string{"server", "reason"}, nil)
	secs := prometheus.NewDesc("sibyl_promotion_seconds", "h", nil, nil)
	collector := collectFunc(func(ch chan<- prometheus.Metric) { p.collect(ch, total, secs, []uint16{1, 2}) })
	if n := testutil.CollectAndCount(collector, "sibyl_promotions_total"); n != 2*len(command.PromotionReasons) {
		t.Fatalf("%d series before any promotion, want one per group and reason (%d)", n, 2*len(command.PromotionReasons))
	}
	p.observe(promotionRecord{Server: 2, Reason: command.ReasonMainUnreachable, SuspectedMs: 1000, AtMs: 1800})
	p.observe(promotionRecord{Server: 2, Reason: command.ReasonMainUnreachable}) // duration unknown
	want := `
# HELP sibyl_promotion_seconds h
# TYPE sibyl_promotion_seconds histogram
`
	var b strings.Builder
	b.WriteString(want)
	for _, ub := range promotionBuckets {
		n := 0
		if ub >= 0.8 {
			n = 1
		}
		b.WriteString(`sibyl_promotion_seconds_bucket{le="` + formatBound(ub) + `"} ` + itoa(n) + "\n")
	}
	b.WriteString("sibyl_promotion_seconds_bucket{le=\"+Inf\"} 1\nsibyl_promotion_seconds_sum 0.8\nsibyl_promotion_seconds_count 1\n")
	if err := testutil.CollectAndCompare(collector, strings.NewReader(b.String()), "sibyl_promotion_seconds"); err != nil {
		t.Fatal(err)
	}
	if err := testutil.CollectAndCompare(collector, strings.NewReader(`
# HELP sibyl_promotions_total h
# TYPE sibyl_promotions_total counter
`+seriesLines(map[[2]string]int{{"2", command.ReasonMainUnreachable}: 2})), "sibyl_promotions_total"); err != nil {
		t.Fatal(err)
	}
}

func seriesLines(nonzero map[[2]string]int) string {
	var b strings.Builder
	for _, g := range []string{"1", "2"} {
		for _, r := range command.PromotionReasons {
			b.WriteString(`sibyl_promotions_total{reason="` + r + `",server="` + g + `"} ` + itoa(nonzero[[2]string{g, r}]) + "\n")
		}
	}
	return b.String()
}

func formatBound(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

type collectFunc func(ch chan<- prometheus.Metric)

func (f collectFunc) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(f, ch) }
func (f collectFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

// TestPromotionSuspicion: an automatic promotion of a main that is gone carries the reason
// main_unreachable and starts at the first suspicion (a sibling's report), before the
// heartbeats were overdue; planned and drain promotions name themselves.
func TestPromotionSuspicion(t *testing.T) {
	f, idx := buildFSM(t)
	fsmStep(t, f, &idx, activate{Server: 1, Version: 3})
	start := time.Unix(1_700_000_000, 0)
	lt := newLeaderTerm(start)
	now := start.Add(1500 * time.Millisecond)
	lt.noteJoin(1, start)
	lt.noteJoin(2, now)
	lt.noteJoin(3, now)
	suspected := start.Add(200 * time.Millisecond)
	lt.promo.suspect(1, suspected)
	lt.promo.suspect(1, suspected.Add(time.Second)) // a later report does not move it
	lt.promo.markDead(1, now)
	st, _ := f.view()
	d := st.directory(func(n nodeRecord) (string, uint64) { return lt.nodeState(n, now, time.Second) })
	var got *promotionAction
	for _, a := range planPromotionActions(lt, d, reportSet{}, now, time.Second) {
		if a.group.Server == 1 && a.start {
			got = &a
		}
	}
	if got == nil {
		t.Fatal("no promotion of group 1 planned for a dead main")
	}
	if got.reason != command.ReasonMainUnreachable || !got.since.Equal(suspected) {
		t.Fatalf("reason %q since %v, want main_unreachable since %v", got.reason, got.since, suspected)
	}
	// Heard again: the suspicion is forgotten.
	lt.promo.alive(1)
	if _, ok := lt.promo.suspectedAt(1); ok {
		t.Fatal("a node heard again is still suspected")
	}
}
