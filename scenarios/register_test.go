package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// latencyP99 is the 99th percentile of the latencies of the writers' acknowledged writes
// sent within [from, to] of the history clock.
func latencyP99(ws []*writer, from, to int64) (time.Duration, int) {
	var ls []int64
	for _, w := range ws {
		w.mu.Lock()
		for i, call := range w.ackCalls {
			if call >= from && call <= to {
				ls = append(ls, w.ackTimes[i]-call)
			}
		}
		w.mu.Unlock()
	}
	if len(ls) == 0 {
		return 0, 0
	}
	slices.Sort(ls)
	return time.Duration(ls[len(ls)*99/100]), len(ls)
}

// nodeWithoutCopy returns the highest-numbered of nodes 1..nodes that holds no copy of sg
// (neither its main nor a sibling), failing the test when every node holds one.
func nodeWithoutCopy(t *testing.T, sg command.StatusGroup, nodes int) int {
	t.Helper()
	holders := map[uint16]bool{*sg.Main: true}
	for _, s := range sg.Siblings {
		holders[s.Node] = true
	}
	for id := nodes; id >= 1; id-- {
		if !holders[uint16(id)] {
			return id
		}
	}
	t.Fatalf("every node holds group %d: %+v", sg.Server, sg)
	return 0
}

// fill creates n resources of size bytes in group g with `workers` clients in parallel and
// returns their rids.
func fill(t *testing.T, c *Cluster, g command.ServerID, n, size, workers int) []string {
	t.Helper()
	data, _ := json.Marshal(strings.Repeat("x", size-2)) // size bytes with the quotes
	rids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cl := c.Client(1 + w%len(c.Nodes))
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute) // a big group fills slowly on a shared disk
			defer cancel()
			for i := w; i < n; i += workers {
				r, err := cl.DoRetry(ctx, &command.Request{Op: command.OpCreate, Type: "blob", Data: data,
					Server: ptr(int64(g)), Key: "fill-" + strconv.Itoa(i)})
				if err != nil {
					errs <- fmt.Errorf("create %d: %w", i, err)
					return
				}
				rids[i] = r.Resource.ID
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	return rids
}

func ptr[T any](v T) *T { return &v }

// TestRegisterSiblingUnder20kResources (docs/design.md "Sibling registration"): a group
// holding 20,000 resources of 1 KiB, whose log was compacted, gets a fifth copy while 4
// writers update it. The new copy is rebuilt from one snapshot and replays what changed
// meanwhile, which the main keeps for it whatever --log-keep-max says; the phases are
// sync, replay, active, each once; writes never pause. It reports the time until the copy votes and the
// writers' p99 before and during, and checks every resource on the new copy against the
// main, plus the usual porcupine and lost-write checks.
func TestRegisterSiblingUnder20kResources(t *testing.T) {
	n := 20_000
	if s := os.Getenv("SIBYL_REGISTER_RESOURCES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	// The main keeps 500 entries for a lagging voter; the snapshot goes at 8 MB/s, so the
	// writes made meanwhile are more than that: only the hold for the learner spares it a
	// second snapshot.
	c := StartCluster(t, Options{Nodes: 5, WriteTimeout: 2 * time.Second,
		NodeFlags: "--log-keep 500 --log-keep-max 500 --sync-rate 8000000"})
	sg := c.WaitVoting(1, 3)
	extra := nodeWithoutCopy(t, sg, 5)
	start := time.Now()
	rids := fill(t, c, 1, n, 1024, 16)
	t.Logf("filled group 1 with %d resources of 1 KiB in %v", n, time.Since(start).Round(time.Millisecond))

	h := NewHistory()
	ws, stop := startWritersFrom(t, c, h, 1, 4, othersThan(extra, 5), 0)
	waitFor(t, 20*time.Second, "writes before", func() bool { return acked(ws) >= 200 })
	beforeFrom := h.Now()
	time.Sleep(3 * time.Second) // a measurement window, not synchronisation
	beforeTo := h.Now()

	regStart := time.Now()
	duringFrom := h.Now()
	committedBefore := c.Metric(int(*sg.Main), "sibyl_node_committed_entries_total")
	phases := registerOverWS(t, c, 1, 1, int64(extra))
	committedDuring := c.Metric(int(*sg.Main), "sibyl_node_committed_entries_total") - committedBefore
	duringTo := h.Now()
	took := time.Since(regStart)
	// After: the group now commits with 3 of 4 siblings instead of 2 of 3.
	afterFrom := h.Now()
	time.Sleep(3 * time.Second) // a measurement window, not synchronisation
	afterTo := h.Now()
	stop()

	p99Before, nBefore := latencyP99(ws, beforeFrom, beforeTo)
	p99During, nDuring := latencyP99(ws, duringFrom, duringTo)
	p99After, nAfter := latencyP99(ws, afterFrom, afterTo)
	lost := checkRun(t, c, h, ws, 1)
	t.Logf("registerSibling of node %d: voting after %v, phases %v", extra, took.Round(time.Millisecond), compactPhases(phases))
	t.Logf("writers' p99: before %v (%d writes), during %v (%d writes), after, with 4 siblings, %v (%d writes); lost %d, linearizable: yes",
		p99Before.Round(time.Microsecond), nBefore, p99During.Round(time.Microsecond), nDuring,
		p99After.Round(time.Microsecond), nAfter, lost)
	// One snapshot, then the log the main kept for the copy: each phase once, in order
	// (docs/register-sibling.md), with the snapshot's byte progress in the sync phase.
	syncs := 0
	for _, p := range phases {
		if p == "sync" {
			syncs++
		}
	}
	if syncs < 2 || !slices.Equal(phaseRuns(phases), []string{"sync", "replay", "active"}) {
		t.Fatalf("progress phases %v: want sync (with the snapshot's progress), replay, active, each once", compactPhases(phases))
	}
	if n := c.Metric(int(*sg.Main), "sibyl_node_snapshots_sent_total"); n != 1 {
		t.Fatalf("the main sent %v snapshots, want 1", n)
	}
	t.Logf("the main committed %.0f entries during the registration", committedDuring)
	if committedDuring < 500+1024 {
		t.Fatalf("only %.0f entries committed during the registration: the copy never lagged past --log-keep-max", committedDuring)
	}
	// The main's log was compacted far below where the new copy started, so it was built
	// from a snapshot, not from the log.
	sent := c.Metric(int(*sg.Main), "sibyl_node_snapshot_sent_bytes_total")
	compacted := c.Metric(int(*sg.Main), "sibyl_node_log_compacted_entries_total")
	t.Logf("main sent %.1f MB of snapshot; it had compacted %.0f log entries", sent/1e6, compacted)
	if sent < float64(n)*1024 {
		t.Fatalf("main sent %.0f bytes of snapshot for %d resources of 1 KiB", sent, n)
	}

	// Every resource on the new copy equals the main's.
	main := c.Client(int(*sg.Main))
	copyCl := c.Client(extra)
	defer main.Close()
	defer copyCl.Close()
	sample := rids
	rng := rand.New(rand.NewPCG(uint64(n), 4))
	differ := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan string)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			for rid := range next {
				want, err1 := main.Get(ctx, rid, command.Linearizable)
				got, err2 := getOnCopy(ctx, copyCl, rid, want)
				if err1 != nil || err2 != nil || got.Resource.Version != want.Resource.Version || string(got.Resource.Data) != string(want.Resource.Data) {
					mu.Lock()
					differ++
					if differ <= 3 {
						t.Errorf("%s: main %v %v, new copy %v %v", rid, want, err1, got, err2)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, i := range rng.Perm(len(sample)) {
		next <- sample[i]
	}
	close(next)
	wg.Wait()
	t.Logf("compared %d resources on node %d with the main: %d differ", len(sample), extra, differ)
}

// getOnCopy reads rid from the copy the client is connected to (a sibling read), waiting
// until it has applied the version the main answered.
func getOnCopy(ctx context.Context, cl *client.Client, rid string, want *command.Reply) (*command.Reply, error) {
	for {
		r, err := cl.Do(ctx, &command.Request{Op: command.OpGet, RID: rid, Consistency: command.SiblingRead})
		if err == nil && r.Resource.Version >= want.Resource.Version {
			return r, nil
		}
		if ctx.Err() != nil {
			return r, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// phaseRuns is ps with each run of one phase written once.
func phaseRuns(ps []string) []string {
	var out []string
	for _, p := range ps {
		if len(out) == 0 || out[len(out)-1] != p {
			out = append(out, p)
		}
	}
	return out
}

// compactPhases shortens a run of repeated phases to "phase×n".
func compactPhases(ps []string) []string {
	var out []string
	for i := 0; i < len(ps); {
		j := i
		for j < len(ps) && ps[j] == ps[i] {
			j++
		}
		if j-i > 1 {
			out = append(out, fmt.Sprintf("%s×%d", ps[i], j-i))
		} else {
			out = append(out, ps[i])
		}
		i = j
	}
	return out
}
