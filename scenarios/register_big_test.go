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

	"github.com/gorilla/websocket"
	"github.com/sibylhq/sibyl/command"
)

// TestRegisterSiblingBigGroup is the registration measurement of docs/register-sibling.md,
// run on demand (SIBYL_BIGREG=1; SIBYL_BIGREG_BYTES sets the group's size, 1 GiB by
// default): a group is filled with resources of 16 KiB, the cluster's write capacity is
// measured with closed-loop writers, then writers run at 80 % of it while a fifth copy is
// registered. It prints the progress phases with their times (each must come exactly
// once), the time until the copy votes, and the writers' p99 before and during.
func TestRegisterSiblingBigGroup(t *testing.T) {
	if os.Getenv("SIBYL_BIGREG") == "" {
		t.Skip("the 1 GiB registration measurement runs with SIBYL_BIGREG=1")
	}
	total := int64(1 << 30)
	if s := os.Getenv("SIBYL_BIGREG_BYTES"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 1<<20 {
			t.Fatalf("SIBYL_BIGREG_BYTES=%q: want a byte count of at least 1 MiB", s)
		}
		total = v
	}
	const size = 16 << 10
	n := int(total / size)
	c := StartCluster(t, Options{Nodes: 5, WriteTimeout: 5 * time.Second})
	sg := c.WaitVoting(1, 3)
	extra := nodeWithoutCopy(t, sg, 5)
	start := time.Now()
	rids := fill(t, c, 1, n, size, 32)
	t.Logf("filled group 1 with %d resources of %d KiB (%.2f GiB) in %v", n, size>>10, float64(n*size)/(1<<30), time.Since(start).Round(time.Second))

	writers := othersThan(extra, 5)
	capacity := measureCapacity(t, c, writers, rids, 32, 10*time.Second)
	rate := capacity * 8 / 10
	t.Logf("write capacity: %.0f writes/s with 32 closed-loop writers of 1 KiB updates; writers now at 80 %%: %.0f/s", capacity, rate)

	load := startPacedLoad(t, c, writers, rids, 32, rate)
	time.Sleep(10 * time.Second) // a measurement window, not synchronisation
	beforeTo := time.Now()
	phases, took, err := registerTimed(t, c.Node(1).HTTP, 1, int64(extra))
	duringTo := time.Now()
	got := load.stop()
	if err != nil {
		t.Fatalf("registerSibling(1, %d): %v", extra, err)
	}
	before := got.p99(beforeTo.Add(-10*time.Second), beforeTo)
	during := got.p99(beforeTo, duringTo)
	var line []string
	for _, p := range phases {
		line = append(line, fmt.Sprintf("%s@%.1fs", p.phase, p.at.Seconds()))
	}
	t.Logf("registerSibling of node %d: phases %s; voting after %v", extra, strings.Join(line, " "), took.Round(time.Millisecond))
	t.Logf("writers at %.0f/s: p99 before %v (%d writes, %.0f/s), during %v (%d writes, %.0f/s); %d failed",
		rate, before.p99.Round(time.Microsecond), before.n, before.perSecond, during.p99.Round(time.Microsecond), during.n, during.perSecond, got.failed)
	main := int(*c.WaitVoting(1, 4).Main) // the main now: it may have moved under the load
	sent := c.Metric(main, "sibyl_node_snapshot_sent_bytes_total")
	t.Logf("main (node %d, node %d at the start) sent %d snapshot(s), %.2f GB", main, *sg.Main,
		int(c.Metric(main, "sibyl_node_snapshots_sent_total")), sent/1e9)
	var names []string
	for _, p := range phases {
		names = append(names, p.phase)
	}
	if !slices.Equal(names, []string{"sync", "replay", "active"}) {
		t.Fatalf("phases %v: want sync, replay, active, each exactly once", names)
	}
}

// measureCapacity runs `workers` closed-loop writers updating random resources with 1 KiB
// for d and returns the acknowledged writes per second.
func measureCapacity(t *testing.T, c *Cluster, nodes []int, rids []string, workers int, d time.Duration) float64 {
	l := startLoad(t, c, nodes, rids, workers, 0)
	time.Sleep(d) // the measurement window, not synchronisation
	r := l.stop()
	return float64(r.ok) / d.Seconds()
}

// startPacedLoad runs `workers` writers that together send about rate updates a second.
func startPacedLoad(t *testing.T, c *Cluster, nodes []int, rids []string, workers int, rate float64) *load {
	return startLoad(t, c, nodes, rids, workers, time.Duration(float64(workers)/rate*float64(time.Second)))
}

// load is a set of writers updating random resources; each op's send time and latency
// are kept.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	res    loadResult
}

type loadResult struct {
	ok, failed int
	sent       []time.Time
	lat        []time.Duration
}

type window struct {
	p99       time.Duration
	n         int
	perSecond float64
}

// p99 is the 99th percentile latency of the writes sent within [from, to).
func (r loadResult) p99(from, to time.Time) window {
	var ls []time.Duration
	for i, s := range r.sent {
		if !s.Before(from) && s.Before(to) {
			ls = append(ls, r.lat[i])
		}
	}
	if len(ls) == 0 {
		return window{}
	}
	slices.Sort(ls)
	return window{p99: ls[len(ls)*99/100], n: len(ls), perSecond: float64(len(ls)) / to.Sub(from).Seconds()}
}

// startLoad starts the writers: every = 0 runs them closed-loop, else each sends one
// update per period (skipping ticks it is too slow for).
func startLoad(t *testing.T, c *Cluster, nodes []int, rids []string, workers int, every time.Duration) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	data, _ := json.Marshal(strings.Repeat("u", 1022))
	for w := 0; w < workers; w++ {
		cl := c.Client(nodes[w%len(nodes)])
		rng := rand.New(rand.NewPCG(uint64(w), 77))
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			var tick *time.Ticker
			if every > 0 {
				tick = time.NewTicker(every)
				defer tick.Stop()
			}
			for ctx.Err() == nil {
				if tick != nil {
					select {
					case <-tick.C:
					case <-ctx.Done():
						return
					}
				}
				rid := rids[rng.IntN(len(rids))]
				sent := time.Now()
				octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := cl.Do(octx, &command.Request{Op: command.OpUpdate, RID: rid, Data: data})
				ocancel()
				if ctx.Err() != nil {
					return
				}
				l.mu.Lock()
				if err != nil {
					l.res.failed++
				} else {
					l.res.ok++
					l.res.sent = append(l.res.sent, sent)
					l.res.lat = append(l.res.lat, time.Since(sent))
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) stop() loadResult {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res
}

// timedPhase is a progress phase and when it first came, from the request.
type timedPhase struct {
	phase string
	at    time.Duration
}

// registerTimed runs registerSibling over a WebSocket and returns each run of one phase
// with the time it began, and the time until the reply.
func registerTimed(t *testing.T, addr string, server, node int64) ([]timedPhase, time.Duration, error) {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	start := time.Now()
	req := fmt.Sprintf(`{"id":"reg","op":"registerSibling","server":%d,"node":%d}`, server, node)
	if err := ws.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
		t.Fatal(err)
	}
	var phases []timedPhase
	for {
		ws.SetReadDeadline(time.Now().Add(60 * time.Second))
		var f struct {
			ID    *string        `json:"id"`
			OK    bool           `json:"ok"`
			Error *command.Error `json:"error"`
			Sub   string         `json:"sub"`
			Event string         `json:"event"`
			Phase string         `json:"phase"`
		}
		if err := ws.ReadJSON(&f); err != nil {
			t.Fatalf("reading registerSibling frames: %v", err)
		}
		switch {
		case f.Event == "progress" && f.Sub == "reg":
			if len(phases) == 0 || phases[len(phases)-1].phase != f.Phase {
				phases = append(phases, timedPhase{f.Phase, time.Since(start)})
			}
		case f.ID != nil && *f.ID == "reg":
			if !f.OK {
				if f.Error == nil {
					f.Error = command.Errorf(command.CodeInternal, "refused without an error")
				}
				return phases, time.Since(start), f.Error
			}
			return phases, time.Since(start), nil
		}
	}
}
