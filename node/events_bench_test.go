package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// BenchmarkEventsFanout: many subscribers on one node while writes commit at a fixed rate.
// It reports commit-to-delivery latency (from the entry's publish, right after it is
// applied, to its frame being built by the connection's writer: what a WebSocket write
// follows), and the heap per idle subscriber (its session included).
//
// The mix, per 1,000 writes/s spread over 1,000 resources of one group: subscribers by rid,
// ten per resource, and ten `server` subscribers that see every write (20,000 deliveries/s
// in all), plus one `server` subscriber that never reads and must be lagged without
// moving the others' p99. Connection writers are a pool of goroutines woken through the
// Outbox, as many connections' writers would be.
//
// It runs twice, without and with the subscriber that never reads, so that the two p99s
// can be compared.
//
// Knobs: SIBYL_BENCH_SUBS (10000), SIBYL_BENCH_RATE (writes/s, 1000), SIBYL_BENCH_SECONDS (5),
// SIBYL_BENCH_MEMSTORE (set: in-memory store instead of bbolt).
// Run: go test -run XXX -bench EventsFanout -benchtime 1x ./node/
func BenchmarkEventsFanout(b *testing.B) {
	b.Run("no-slow-consumer", func(b *testing.B) { benchFanout(b, false) })
	b.Run("one-slow-consumer", func(b *testing.B) { benchFanout(b, true) })
}

func benchFanout(b *testing.B, withSlow bool) {
	subs, rate, seconds := envInt("SIBYL_BENCH_SUBS", 10000), envInt("SIBYL_BENCH_RATE", 1000), envInt("SIBYL_BENCH_SECONDS", 5)
	n := startBenchNode(b)
	s := n.NewSession()
	defer s.Close()
	const resources = 1000
	rids := make([]string, resources)
	for i := range rids {
		r, err := s.Start(context.Background(), &command.Request{Op: command.OpCreate, Type: "job",
			Data: json.RawMessage(`{"n":0}`), Server: i64(1)}, true)()
		if err != nil {
			b.Fatalf("create %d: %v", i, err)
		}
		rids[i] = r.Resource.ID
	}

	d := newBenchDelivery()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	conns := make([]*benchConn, subs)
	perResource := make([]int64, resources) // rid subscribers of each resource
	for i := range conns {
		c := &benchConn{d: d}
		c.s = n.NewEventSession(c)
		req := command.Request{Op: command.OpSubscribe, Sub: "s"}
		if i < 10 {
			req.Server = i64(1)
		} else {
			req.RID = rids[i%resources]
			perResource[i%resources]++
		}
		if _, err := c.s.Start(context.Background(), &req, false)(); err != nil {
			b.Fatalf("subscribe %d: %v", i, err)
		}
		c.s.Subscribed("s")
		conns[i] = c
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	perSub := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(subs)

	// The consumer that never reads: its writer is never woken.
	slow := n.NewEventSession(wakeChan(make(chan struct{}, 1)))
	if withSlow {
		if _, err := slow.Start(context.Background(), &command.Request{Op: command.OpSubscribe, Sub: "slow", Server: i64(1)}, false)(); err != nil {
			b.Fatal(err)
		}
		slow.Subscribed("slow")
	}

	d.start(4)
	b.ResetTimer()
	writes := benchWrites(b, n, rids, rate, time.Duration(seconds)*time.Second)
	var want int64
	for i := 0; i < writes; i++ {
		want += min(10, int64(subs)) + perResource[i%resources]
	}
	deadline := time.Now().Add(30 * time.Second)
	for d.delivered.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the benchmark's end condition, not a handshake
	}
	b.StopTimer()
	d.stop()
	lat := d.latencies()
	if len(lat) == 0 {
		b.Fatal("no event delivered")
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	lagged := false
	if ss := slow.events(); ss != nil && ss.get("slow") != nil {
		lagged = ss.get("slow").isEnded()
	}
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(perSub, "B/idle-sub")
	b.ReportMetric(float64(len(lat))/float64(seconds), "deliveries/s")
	b.Logf("%d subscribers, %d writes in %ds: %d of %d deliveries, p50 %v, p99 %v, max %v; %.0f B heap per idle subscriber; "+
		"a subscriber that never reads: %v, lagged: %v", subs, writes, seconds, len(lat), want, p50, p99, lat[len(lat)-1], perSub,
		withSlow, lagged)
	if withSlow && !lagged {
		b.Error("the subscriber that never reads was not lagged")
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// benchWrites updates the resources round robin at rate writes/s for d, pipelined on
// one session as many clients would (each write is waited for on its own, so the rate
// does not depend on the fsync time), and returns how many were acknowledged.
func benchWrites(b *testing.B, n *Node, rids []string, rate int, d time.Duration) int {
	var wg sync.WaitGroup
	var done atomic.Int64
	s := n.NewSession()
	defer s.Close()
	start := time.Now()
	tick := time.NewTicker(time.Millisecond) // pacing, not synchronisation
	defer tick.Stop()
	// Each tick issues the writes due by then, so a late tick does not lower the rate.
	i := 0
	for now := start; now.Sub(start) < d; now = <-tick.C {
		for due := int(now.Sub(start) * time.Duration(rate) / time.Second); i < due; i++ {
			req := command.Request{Op: command.OpUpdate, RID: rids[i%len(rids)], Data: json.RawMessage(strconv.Itoa(i))}
			wait := s.Start(context.Background(), &req, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := wait(); err != nil {
					b.Errorf("write %d: %v", i, err)
					return
				}
				done.Add(1)
			}()
		}
	}
	wg.Wait()
	if int(done.Load()) != i {
		b.Fatalf("%d of %d writes acknowledged", done.Load(), i)
	}
	return i
}

// benchConn is one connection: Wake queues it for the writer pool once.
type benchConn struct {
	d      *benchDelivery
	s      *Session
	queued atomic.Bool
}

func (c *benchConn) Wake() {
	if c.queued.CompareAndSwap(false, true) {
		c.d.ready <- c
	}
}

// benchDelivery is the pool of connection writers: it pulls each woken connection's frames,
// builds them as the API server would, and records each event's latency since publish.
type benchDelivery struct {
	ready     chan *benchConn
	quit      chan struct{}
	wg        sync.WaitGroup
	delivered atomic.Int64
	mu        sync.Mutex
	lat       []time.Duration
}

func newBenchDelivery() *benchDelivery {
	return &benchDelivery{ready: make(chan *benchConn, 1<<20), quit: make(chan struct{})}
}

func (d *benchDelivery) start(workers int) {
	for range workers {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			var lat []time.Duration
			buf := make([]byte, 0, 1024)
			flush := func() {
				d.mu.Lock()
				d.lat = append(d.lat, lat...)
				d.mu.Unlock()
				lat = lat[:0]
			}
			defer flush()
			for {
				select {
				case c := <-d.ready:
					c.queued.Store(false)
					ss := c.s.events()
					got := ss.pull(64, func(s *subscription, it *qitem) {
						buf = s.appendFrame(buf[:0], it)
						if it.ev != nil {
							lat = append(lat, time.Since(it.ev.at))
						}
					})
					d.delivered.Add(int64(got))
					if got == 64 {
						c.Wake()
					}
					if len(lat) > 4096 {
						flush()
					}
				case <-d.quit:
					return
				}
			}
		}()
	}
}

func (d *benchDelivery) stop() {
	close(d.quit)
	d.wg.Wait()
}

func (d *benchDelivery) latencies() []time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Duration(nil), d.lat...)
}

// startBenchNode starts node 1, main of group 1 without siblings, on a bbolt store, under
// a controller that serves a fixed directory.
func startBenchNode(b *testing.B) *Node {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	dir := command.Directory{Index: 1, Nodes: []command.NodeInfo{{ID: 1, Addr: addr, State: command.NodeUp}},
		Groups: []command.GroupInfo{{Server: 1, Epoch: 1, Main: 1, Active: command.Config{Version: 1}}}}
	body, _ := json.Marshal(dir)
	cln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctrl := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/internal/directory" && r.URL.Query().Get("after") == "1" {
			select { // a long poll that never sees a change
			case <-r.Context().Done():
			case <-time.After(time.Second):
			}
		}
		w.Write(body)
	})}
	go ctrl.Serve(cln)
	b.Cleanup(func() { ctrl.Close() })
	var st store.Store
	if os.Getenv("SIBYL_BENCH_MEMSTORE") != "" {
		st = store.NewMemStore()
	}
	n, err := New(Config{ID: 1, HTTPAddr: addr, DataDir: filepath.Join(b.TempDir(), "1"), Controllers: []string{cln.Addr().String()}, Store: st,
		Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: n.Handler()}
	go srv.Serve(ln)
	b.Cleanup(func() {
		srv.Close()
		n.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if g := n.localGroup(1); g != nil && g.isMain() {
			return n
		}
		if time.Now().After(deadline) {
			b.Fatal(fmt.Errorf("node 1 did not become main of group 1"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
