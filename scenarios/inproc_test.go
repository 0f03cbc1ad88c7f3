package scenarios

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/wal"
	"github.com/sibylhq/sibyl/scenarios/memnet"
)

// The in-process fault schedules run the real controllers and nodes (the same code the
// sibyl binary runs, with bbolt and raft-boltdb files) on memnet, inside a
// testing/synctest bubble: every timer runs on virtual time, so a schedule of many
// seconds of faults takes a fraction of a second. A seed fixes the schedule (faults,
// their timing, link latencies, client choices); goroutine interleavings are the Go
// scheduler's, so a replay repeats the schedule, not necessarily the exact history.
var (
	inprocSeed  = flag.Uint64("inproc.seed", 0, "run only this seed of TestInProcFaults")
	inprocRuns  = flag.Int("inproc.runs", 0, "schedules of TestInProcFaults (default 20, or SIBYL_INPROC_RUNS)")
	inprocFresh = flag.Int("inproc.fresh", -1, "fresh random seeds of TestInProcFaults beside seeds 1..runs (default 2, or SIBYL_INPROC_FRESH)")
)

const (
	inprocNodes   = 4
	inprocWriters = 6
	// inprocWAN ± inprocWANJitter is the one-way delay added between two locations.
	inprocWAN       = 10 * time.Millisecond
	inprocWANJitter = 5 * time.Millisecond
)

// inprocFault is one fault of a schedule: what it does, and how it ends.
type inprocFault struct {
	name string
	heal func()
}

// inprocResult is what one schedule produced, for the checks run outside the bubble.
type inprocResult struct {
	seed    uint64
	faults  []string
	h       *History
	writers []*writer
	ew      *eventWriters
	reads   atomic.Int64 // linearizable reads answered during the schedule
	// siblingReads answered; backwards: how many of them were older than an earlier one.
	siblingReads, backwards atomic.Int64
	events                  [][]client.Event
	lost                    int
	promoted                uint64 // epochs the group went through
	virtual                 time.Duration
	tailOnErr               string
}

// TestInProcFaults runs seeded fault schedules against a location of 3 controllers and
// 4 nodes. Group 1 (main node 1, two voting siblings) takes keyed writes from 6 clients
// connected to different nodes and event writes from 2 more, with 2 subscribers. A
// schedule injects 3 to 6 faults, each held for a while: kill -9 of the main or of a
// sibling (restarted later, sometimes with its disk lost), partitions of the main (both
// ways, one way, from the controllers only), kill of the controller leader, a planned
// promote, a full disk under the main or a sibling (its writes fail with ENOSPC). Then everything heals, and the run is checked: the history with porcupine,
// no acknowledged write lost, every acknowledged event write delivered to each
// subscriber once and in order.
//
// Seeds 1..runs are the same in every run (regressions); a few fresh seeds, drawn from the
// clock, explore new schedules each run. The fresh seeds are printed before they run, and
// a failing seed prints the command that replays it.
func TestInProcFaults(t *testing.T) {
	seeds, fresh := inprocSeeds()
	if len(fresh) > 0 {
		msg := fmt.Sprintf("TestInProcFaults: fresh seeds this run %v; replay one with: go test -race ./scenarios -run 'TestInProcFaults$' -inproc.seed=N -v", fresh)
		fmt.Println(msg) // also on stdout, in case the run dies before the test's log is shown
		t.Log(msg)
	}
	var ops, acked, reads, sibReads, lost, promotions int
	var virtual time.Duration
	start := time.Now()
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := runInProc(t, seed)
			if r.h == nil {
				return // failed before the workload started
			}
			t.Logf("seed %d: %s; %d ops (%s), %d acked, %d reads, %d sibling reads, %d epochs, %v virtual", seed, strings.Join(r.faults, ", "),
				r.h.Len(), r.h.CountsString(), ackedOf(r), r.reads.Load(), r.siblingReads.Load(), r.promoted, r.virtual.Round(time.Millisecond))
			checkInProc(t, r)
			ops += r.h.Len()
			acked += ackedOf(r)
			reads += int(r.reads.Load())
			sibReads += int(r.siblingReads.Load())
			lost += r.lost
			promotions += int(r.promoted)
			virtual += r.virtual
			if t.Failed() {
				t.Logf("replay: go test -race ./scenarios -run 'TestInProcFaults$' -inproc.seed=%d -v\n%s", seed, r.tailOnErr)
			}
		})
	}
	t.Logf("%d schedules in %v (%v virtual): %d operations, %d acknowledged writes, %d linearizable reads, %d sibling reads, %d lost, %d epochs past the first",
		len(seeds), time.Since(start).Round(time.Millisecond), virtual.Round(time.Second), ops, acked, reads, sibReads, lost, promotions)
}

// inprocSeeds returns the seeds to run: -inproc.seed alone, or 1..runs and then the fresh
// ones (also returned apart).
func inprocSeeds() (seeds, fresh []uint64) {
	if *inprocSeed != 0 {
		return []uint64{*inprocSeed}, nil
	}
	n := 20
	if v, err := strconv.Atoi(os.Getenv("SIBYL_INPROC_RUNS")); err == nil && v > 0 {
		n = v
	}
	if *inprocRuns > 0 {
		n = *inprocRuns
	}
	seeds = make([]uint64, n)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	k := 2
	if v, err := strconv.Atoi(os.Getenv("SIBYL_INPROC_FRESH")); err == nil && v >= 0 {
		k = v
	}
	if *inprocFresh >= 0 {
		k = *inprocFresh
	}
	fresh = freshSeeds(k)
	return append(seeds, fresh...), fresh
}

// freshSeeds draws k seeds from the clock, above the range of the regression seeds, so
// that each run tries schedules no run tried before.
func freshSeeds(k int) []uint64 {
	x := uint64(time.Now().UnixNano())
	out := make([]uint64, 0, k)
	for range k {
		// splitmix64: consecutive clock readings give unrelated seeds
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		out = append(out, 1_000_000+z%1_000_000_000_000)
	}
	return out
}

func ackedOf(r *inprocResult) int {
	n := int(r.ew.acked.Load())
	for _, w := range r.writers {
		n += int(w.ok.Load())
	}
	return n
}

// runInProc runs schedule seed in a bubble and returns what it recorded.
func runInProc(t *testing.T, seed uint64) *inprocResult { return runInProcAt(t, seed, 1) }

// runInProcAt runs schedule seed over locs locations: with one, 3 controllers and
// inprocNodes nodes; with several, 3 controllers in each and 2 nodes per location, every
// connection between two locations delayed by inprocWAN more, and location faults among
// the schedule's (inprocLocationFault).
func runInProcAt(t *testing.T, seed uint64, locs int) *inprocResult {
	r := &inprocResult{seed: seed, h: nil, ew: &eventWriters{pace: 50 * time.Millisecond}}
	nodes := inprocNodes
	if locs > 1 {
		nodes = 2 * locs
	}
	hostLoc := map[string]int{} // the cluster's hosts by location index (clients have none)
	for i := 1; i <= 3*locs; i++ {
		hostLoc[fmt.Sprintf("10.0.1.%d", i)] = (i - 1) / 3
	}
	for i := 1; i <= nodes; i++ {
		hostLoc[fmt.Sprintf("10.0.0.%d", i)] = (i - 1) % locs
	}
	synctest.Test(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		var rngMu sync.Mutex
		intn := func(n int) int { rngMu.Lock(); defer rngMu.Unlock(); return rng.IntN(n) }
		dur := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(intn(int(hi-lo))) }

		net := memnet.New()
		// Latencies draw from their own source: how many draws the network makes depends
		// on the interleaving, and must not shift the schedule's.
		netRng := rand.New(rand.NewPCG(seed, 0x1a7e))
		base := map[[2]string]time.Duration{}
		net.Latency = func(from, to string) time.Duration { // called under the network's lock
			k := [2]string{from, to}
			if _, ok := base[k]; !ok {
				base[k] = 100*time.Microsecond + time.Duration(netRng.IntN(int(1500*time.Microsecond)))
			}
			wan := time.Duration(0)
			if a, ok := hostLoc[from]; ok {
				if b, ok := hostLoc[to]; ok && a != b {
					wan = inprocWAN - inprocWANJitter + time.Duration(netRng.IntN(int(2*inprocWANJitter)))
				}
			}
			return base[k] + wan + time.Duration(netRng.IntN(int(200*time.Microsecond)))
		}
		began := time.Now()
		m := startMemLocations(t, net, locs, 3, nodes, os.Getenv("SIBYL_INPROC_STORE") == "bolt")
		defer m.stop()
		m.waitFor(60*time.Second, "group 1 with 2 voting siblings", func() bool {
			g := m.group(1)
			return g != nil && g.Main != 0 && voting(g) >= 2
		})
		r.h = NewHistory()

		// Clients, each on its own host, preferring different nodes.
		var clients []*client.Client
		newClient := func(i int) *client.Client {
			first := 1 + i%nodes
			order := []int{first}
			for id := 1; id <= nodes; id++ {
				if id != first {
					order = append(order, id)
				}
			}
			cl := m.client(fmt.Sprintf("10.0.9.%d", i+1), seed*100+uint64(i), order...)
			clients = append(clients, cl)
			return cl
		}
		subs := make([]*eventLog, 2)
		subDone := make([]chan struct{}, 2)
		var subscriptions []*client.Subscription
		for i := range subs {
			subs[i] = &eventLog{}
			subDone[i] = make(chan struct{})
			sub, err := newClient(inprocWriters+i).Subscribe(context.Background(), client.Filter{Server: 1}, "")
			if err != nil {
				t.Fatalf("subscribe: %v", err)
			}
			subscriptions = append(subscriptions, sub)
			go subs[i].consume(sub, subDone[i])
		}
		for i := 0; i < inprocWriters; i++ {
			w := newWriter(t, i, newClient(i), 1, r.h)
			w.keyed, w.opTimeout, w.pace = true, 10*time.Second, dur(20*time.Millisecond, 80*time.Millisecond)
			w.mix = true
			w.seed(seed*100 + uint64(i))
			r.writers = append(r.writers, w)
		}
		pairPeers(r.writers)
		ctx, stopWriters := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, w := range r.writers {
			wg.Go(func() { w.run(ctx) })
		}
		for i := 0; i < 2; i++ {
			cl := newClient(inprocWriters + 2 + i)
			wg.Go(func() { r.ew.run(ctx, i, cl, 1, 1<<30) })
		}
		// Two readers read the writers' resources linearizably, each through its own node:
		// a read that misses an acknowledged write fails the porcupine check.
		for i := 0; i < 2; i++ {
			cl := newClient(inprocWriters + 4 + i)
			wg.Go(func() { r.reads.Add(readLoop(ctx, 100+i, cl, r.h, r.writers)) })
		}
		// A third reads at siblings: possibly stale, but never older than what this client
		// saw before (docs/replication.md invariant 10), across reconnects to other nodes.
		// Every tenth read it is cut off from its node, so it reads on at the next one.
		sibCl := newClient(inprocWriters + 6)
		moveOn := func() {
			if u, err := url.Parse(sibCl.Addr()); err == nil && u.Hostname() != "" {
				net.Sever(fmt.Sprintf("10.0.9.%d", inprocWriters+7), u.Hostname())
			}
		}
		wg.Go(func() { siblingReadLoop(ctx, sibCl, r, moveOn) })

		// The schedule.
		time.Sleep(dur(200*time.Millisecond, time.Second))
		nFaults := 3 + intn(4)
		for i := 0; i < nFaults; i++ {
			var f inprocFault
			if locs > 1 && intn(3) == 0 {
				f = inprocLocationFault(m, intn)
			} else {
				f = inprocInject(m, intn, dur)
			}
			m.note("fault: " + f.name)
			hold := dur(300*time.Millisecond, 3*time.Second)
			time.Sleep(hold)
			if f.heal != nil {
				f.heal()
				m.note("healed: " + f.name)
				f.name += " for " + hold.Round(10*time.Millisecond).String()
			}
			if g := m.group(1); g != nil {
				f.name += fmt.Sprintf(" (main %d, epoch %d)", g.Main, g.Epoch)
			}
			r.faults = append(r.faults, f.name)
			time.Sleep(dur(100*time.Millisecond, 2*time.Second))
		}
		// Heal everything; the group must come back and take writes again.
		net.HealAll()
		for _, n := range m.nodes {
			if n.n == nil {
				m.startNode(n)
			}
		}
		for _, c := range m.ctrls {
			if c.c == nil {
				m.startCtrl(c)
			}
		}
		healed := acked(r.writers)
		m.waitFor(30*time.Second, "writes acknowledged after healing", func() bool {
			return acked(r.writers) >= healed+int64(3*inprocWriters)
		})
		stopWriters()
		wg.Wait()

		// Lost writes, read linearizably through a fresh client.
		rc := newClient(20)
		for _, w := range r.writers {
			r.lost += w.lostWrites(t, rc)
		}
		r.lost += doubledCreates(t, rc, 1)
		// Subscribers catch up to the last acknowledged event write, then stop.
		var last uint64
		for _, w := range r.ew.writes {
			last = max(last, w.seq)
		}
		for i, l := range subs {
			m.waitFor(30*time.Second, fmt.Sprintf("subscriber %d at seq %d", i, last), func() bool {
				s, _ := l.maxSeq()
				return s >= last
			})
		}
		for i, sub := range subscriptions {
			sub.Close()
			<-subDone[i]
			r.events = append(r.events, subs[i].events)
		}
		if g := m.group(1); g != nil {
			// Epochs past the first of the home generation's band (docs/locations.md).
			r.promoted = g.Epoch - max(command.EpochBand(command.HomeGenOfEpoch(g.Epoch)), 1)
		}
		for _, cl := range clients {
			cl.Close()
		}
		r.virtual = time.Since(began)
		if t.Failed() {
			r.tailOnErr = m.logTail(80)
		}
	})
	return r
}

// readLoop reads the writers' resources in turn, linearizably, recording each answer in h
// (a resource, or not_found), until ctx ends; it returns how many reads were answered. A
// failed read changes nothing and is not recorded.
func readLoop(ctx context.Context, id int, cl *client.Client, h *History, ws []*writer) int64 {
	var n int64
	for i := 0; ctx.Err() == nil; i++ {
		if rid := ws[i%len(ws)].currentRID(); rid != "" {
			call := h.Now()
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			rep, err := cl.Get(rctx, rid, command.Linearizable)
			cancel()
			switch {
			case err == nil:
				h.Record(id, Op{Op: command.OpGet, RID: rid}, call, Result{Data: canonData(rep.Resource.Data), Version: rep.Resource.Version})
				n++
			case command.CodeOf(err) == command.CodeNotFound:
				h.Record(id, Op{Op: command.OpGet, RID: rid}, call, Result{Code: command.CodeNotFound})
				n++
			}
		}
		time.Sleep(30 * time.Millisecond) // think time; not synchronisation
	}
	return n
}

// siblingReadLoop reads the writers' resources at siblings until ctx ends, counting the
// answers and those older than one this client had already seen; moveOn, called every
// tenth read, drops the client's connection so that it continues at another node.
func siblingReadLoop(ctx context.Context, cl *client.Client, r *inprocResult, moveOn func()) {
	seen := map[string]uint64{}
	for i := 0; ctx.Err() == nil; i++ {
		if i%10 == 9 {
			moveOn()
		}
		rid := r.writers[i%len(r.writers)].currentRID()
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		rep, err := cl.Get(rctx, rid, command.SiblingRead)
		cancel()
		if err == nil {
			r.siblingReads.Add(1)
			if v := rep.Resource.Version; v < seen[rid] {
				r.backwards.Add(1)
			} else {
				seen[rid] = v
			}
		}
		time.Sleep(30 * time.Millisecond) // think time; not synchronisation
	}
}

// inprocInject starts one fault on m, chosen by rand, and returns how to end it.
func inprocInject(m *memCluster, rand func(int) int, dur func(lo, hi time.Duration) time.Duration) inprocFault {
	g := m.group(1)
	var mainNode *memNode
	var sibs []*memNode
	if g != nil {
		if g.Main != 0 {
			mainNode = m.nodes[g.Main-1]
		}
		for _, s := range g.Siblings {
			if s.State == command.SiblingVoting {
				sibs = append(sibs, m.nodes[s.Node-1])
			}
		}
	}
	up := func(n *memNode) bool { return n != nil && n.n != nil }
	restart := func(n *memNode) func() {
		return func() {
			if n.n == nil {
				m.startNode(n)
			}
		}
	}
	switch k := rand(10); {
	case k == 0 && up(mainNode):
		m.crashNode(mainNode)
		return inprocFault{name: fmt.Sprintf("kill main %d", mainNode.id), heal: restart(mainNode)}
	case k == 1 && len(sibs) > 0 && up(sibs[0]):
		s := sibs[rand(len(sibs))]
		if !up(s) {
			break
		}
		m.crashNode(s)
		if rand(2) == 0 {
			m.wipeNode(s)
			return inprocFault{name: fmt.Sprintf("kill sibling %d, disk lost", s.id), heal: restart(s)}
		}
		return inprocFault{name: fmt.Sprintf("kill sibling %d", s.id), heal: restart(s)}
	case k == 2 && up(mainNode):
		m.net.Isolate(mainNode.host)
		return inprocFault{name: fmt.Sprintf("isolate main %d", mainNode.id), heal: m.net.HealAll}
	case k == 3 && up(mainNode) && len(sibs) > 0:
		for _, s := range sibs {
			m.net.Cut(mainNode.host, s.host)
		}
		return inprocFault{name: fmt.Sprintf("cut main %d -> siblings", mainNode.id), heal: m.net.HealAll}
	case k == 4 && up(mainNode) && len(sibs) > 0:
		for _, s := range sibs {
			m.net.Cut(s.host, mainNode.host)
		}
		return inprocFault{name: fmt.Sprintf("cut siblings -> main %d", mainNode.id), heal: m.net.HealAll}
	case k == 5 && up(mainNode):
		for _, c := range m.ctrls {
			m.net.Cut(mainNode.host, c.host)
			m.net.Cut(c.host, mainNode.host)
		}
		return inprocFault{name: fmt.Sprintf("cut main %d from the controllers", mainNode.id), heal: m.net.HealAll}
	case k == 6:
		if l := m.leader(); l != nil {
			m.crashCtrl(l)
			return inprocFault{name: "kill controller leader " + l.id, heal: func() {
				if l.c == nil {
					m.startCtrl(l)
				}
			}}
		}
	case k == 7 && up(mainNode) && len(sibs) > 0:
		target := sibs[rand(len(sibs))]
		via := m.client("10.0.9.99", 99, target.id)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		srv, nd := int64(1), int64(target.id)
		_, err := via.Do(ctx, &command.Request{Op: command.OpPromote, Server: &srv, Node: &nd})
		cancel()
		via.Close()
		return inprocFault{name: fmt.Sprintf("promote %d (%s)", target.id, errName(err))}
	case k == 9 && (up(mainNode) || len(sibs) > 0):
		// A disk fills up under the main or a voting sibling: the node is degraded until
		// the fault ends, and then comes back by itself.
		n := mainNode
		if !up(n) || (len(sibs) > 0 && rand(2) == 0) {
			n = sibs[rand(len(sibs))]
		}
		if !up(n) {
			break
		}
		role := "sibling"
		if n == mainNode {
			role = "main"
		}
		n.disk.Set(wal.FaultWrite, wal.ErrNoSpace)
		return inprocFault{name: fmt.Sprintf("disk of %s %d full", role, n.id), heal: n.disk.Heal}
	case k == 8:
		// A node that serves only clients goes away and comes back: its clients move on.
		var others []*memNode
		for _, n := range m.nodes {
			if n != mainNode && !slices.Contains(sibs, n) && up(n) {
				others = append(others, n)
			}
		}
		if len(others) > 0 {
			n := others[rand(len(others))]
			m.crashNode(n)
			return inprocFault{name: fmt.Sprintf("kill node %d", n.id), heal: restart(n)}
		}
	}
	d := dur(100*time.Millisecond, 500*time.Millisecond)
	return inprocFault{name: "pause " + d.Round(time.Millisecond).String()}
}

func voting(g *command.GroupInfo) int {
	k := 0
	for _, s := range g.Siblings {
		if s.State == command.SiblingVoting {
			k++
		}
	}
	return k
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	return string(command.CodeOf(err))
}

// checkInProc checks one schedule's records: lost writes, linearizability, events.
func checkInProc(t *testing.T, r *inprocResult) {
	if r.lost > 0 {
		t.Errorf("seed %d: %d acknowledged writes lost", r.seed, r.lost)
	}
	if b := r.backwards.Load(); b > 0 {
		t.Errorf("seed %d: %d of %d sibling reads went back behind a version this client had read", r.seed, b, r.siblingReads.Load())
	}
	if err := r.h.Check(60 * time.Second); err != nil {
		t.Errorf("seed %d: %v", r.seed, err)
	}
	for i, evs := range r.events {
		missing, duplicated, reordered, _ := checkEvents(t, evs, r.ew.writes)
		if missing+duplicated+reordered > 0 {
			t.Errorf("seed %d subscriber %d: %d acknowledged writes without an event, %d events twice, %d out of order",
				r.seed, i, missing, duplicated, reordered)
		}
	}
}

// TestInProcControllerCutAfterDiskLoss: docs/replication.md case 7 says a controller cut off from
// a healthy main must not cause a promotion, because siblings that hear the main refuse an
// automatic seal. A sibling that came back with an empty disk hears the main too, even
// when the main's replication connection reached it before it held a copy of the group
// (which happens in some rounds, depending on when the main's link redials).
func TestInProcControllerCutAfterDiskLoss(t *testing.T) {
	const rounds = 5
	synctest.Test(t, func(t *testing.T) {
		m := startMemCluster(t, memnet.New(), 3, inprocNodes)
		defer m.stop()
		for round := 0; round < rounds && !t.Failed(); round++ {
			m.waitFor(60*time.Second, "group 1 with 2 voting siblings", func() bool {
				g := m.group(1)
				return g != nil && g.Main != 0 && voting(g) >= 2 && g.Pending == nil
			})
			g := m.group(1)
			main := m.nodes[g.Main-1]
			wiped := m.nodes[g.Active.Voters[round%len(g.Active.Voters)]-1]
			m.crashNode(wiped)
			m.wipeNode(wiped)
			m.startNode(wiped)
			m.waitFor(60*time.Second, fmt.Sprintf("node %d voting again in group 1", wiped.id), func() bool {
				g := m.group(1)
				return g != nil && slices.Contains(g.Active.Voters, uint16(wiped.id)) && g.Pending == nil && voting(g) >= 2
			})
			time.Sleep(2 * time.Second) // every link reconnects within its 1 s backoff; not synchronisation
			before := m.group(1)

			h := NewHistory()
			w := newWriter(t, round, m.client(fmt.Sprintf("10.0.9.%d", round+1), uint64(round), main.id), 1, h)
			w.keyed, w.opTimeout, w.pace = true, 10*time.Second, 20*time.Millisecond
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { w.run(ctx); close(done) }()
			for _, c := range m.ctrls {
				m.net.Cut(main.host, c.host)
				m.net.Cut(c.host, main.host)
			}
			start := w.ok.Load()
			time.Sleep(3 * time.Second) // the cut lasts three down-afters; not synchronisation
			during := w.ok.Load() - start
			m.net.HealAll()
			stop()
			<-done
			w.cl.Close()

			after := m.group(1)
			if after.Main != before.Main || after.Epoch != before.Epoch {
				t.Errorf("round %d (node %d wiped): cutting the controllers off from main %d moved group 1 from main %d epoch %d to main %d epoch %d",
					round, wiped.id, main.id, before.Main, before.Epoch, after.Main, after.Epoch)
			}
			if during == 0 {
				t.Errorf("round %d: no write was acknowledged while only the controllers were cut off from the main", round)
			}
			t.Logf("round %d (node %d wiped): %d writes acknowledged during the 3 s cut", round, wiped.id, during)
		}
	})
}
