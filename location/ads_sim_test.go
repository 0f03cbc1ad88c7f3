package location

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// A seeded, in-memory network of locations whose controllers run the real adBook (ads.go)
// with the controller's timing (gossip.go): every controller advertises every adEvery, every
// node heartbeats its location's leader every 250 ms (the leader takes it through hear, as
// the controller does), waiting batches go out every gossipTick, one at a time per target.
// A batch for a location reaches whichever controller leads there when it arrives (the
// real sender follows a follower's 421 hint to it). The network delays (WAN delay between
// locations, jitter), duplicates and drops messages, and partitions pairs of locations.
// Every message and every decision is checked as it happens:
//
//   - once: no controller accepts one (origin, incarnation, generation) twice, and none
//     sends one version to one target twice;
//   - never back: no ad goes to its origin's location, nor to a location that has a
//     controller on its path that the sender has heard of (the sender of the ad always),
//     nor to the sender itself;
//   - paths: every held ad's path is simple (no instance twice), ends with its holder and,
//     for a node of another location, starts in the node's location.
//
// It also records, for every version an origin put out, when each location first held it
// (or a newer one), which gives the convergence times.

type simAdNet struct {
	t    *testing.T
	rng  *rand.Rand
	now  time.Time
	seq  uint64
	evq  simEvents
	locs []*simAdLoc
	byIn map[string]*simAdCtl // instance -> controller (every life)

	wan, jitter     time.Duration
	dupP, dropP     float64
	slow            map[[2]string]time.Duration                                              // extra delay on the messages from one location to another
	cut             map[[2]string]bool                                                       // partitioned location pairs (both ways)
	cutIntra        map[string]bool                                                          // controller instances cut off from their location
	relay           func(n *simAdNet, at *simAdCtl, from command.AdSender, ads []command.Ad) // a naive peer, when set
	relayLoc        string
	stopOriginating bool

	// Checks and measures.
	accepts   map[string]int // instance|version -> accepted count
	sends     map[string]int // instance|version|target -> sent count
	crossSent map[string]int // version -> cross-location sends
	messages  int            // batches delivered
	lastMsgAt time.Time
	origins   []*simOrigin
	pending   map[string][]*simOrigin // key -> origin events not yet everywhere
	failures  []string
}

type simAdLoc struct {
	name   string
	ctls   []*simAdCtl
	leader int // index into ctls; -1: none
	nodes  []*simAdNode
}

type simAdCtl struct {
	loc      *simAdLoc
	id       string
	book     *adBook
	up       bool
	inc      uint64
	lastAd   time.Time
	wasLead  bool
	busy     map[adTarget]bool
	instance string
}

type simAdNode struct {
	loc           *simAdLoc
	id            string
	instance      string
	inc, gen      uint64
	up            bool
	lastHeartbeat time.Time
}

// simOrigin is one version an origin put out, and when each location first held it.
type simOrigin struct {
	key     adKey
	inc     uint64
	gen     uint64
	at      time.Time
	reached map[string]time.Time
}

type simEvent struct {
	at  time.Time
	seq uint64
	fn  func()
}

type simEvents []simEvent

func (q simEvents) Len() int { return len(q) }
func (q simEvents) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q simEvents) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simEvents) Push(x any)   { *q = append(*q, x.(simEvent)) }
func (q *simEvents) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

const (
	simTTL       = 10 * time.Second
	simBeatEvery = 250 * time.Millisecond
)

// newSimAdNet makes nLoc locations loc1..locN of ctlsPer controllers and nodesPer nodes;
// every controller is configured with every other location as a seed.
func newSimAdNet(t *testing.T, seed uint64, nLoc, ctlsPer, nodesPer int) *simAdNet {
	t.Logf("seed %d (%d locations x %d controllers, %d nodes each)", seed, nLoc, ctlsPer, nodesPer)
	n := &simAdNet{
		t: t, rng: rand.New(rand.NewPCG(seed, 0xad5)), now: time.Unix(1_700_000_000, 0),
		byIn: map[string]*simAdCtl{}, wan: 10 * time.Millisecond, jitter: 5 * time.Millisecond,
		slow: map[[2]string]time.Duration{}, cut: map[[2]string]bool{}, cutIntra: map[string]bool{},
		accepts: map[string]int{}, sends: map[string]int{}, crossSent: map[string]int{}, pending: map[string][]*simOrigin{},
	}
	seeds := map[string][]string{}
	for l := 1; l <= nLoc; l++ {
		loc := &simAdLoc{name: "loc" + strconv.Itoa(l)}
		n.locs = append(n.locs, loc)
		for c := 1; c <= ctlsPer; c++ {
			id := "c" + strconv.Itoa((l-1)*ctlsPer+c)
			loc.ctls = append(loc.ctls, &simAdCtl{loc: loc, id: id})
			seeds[loc.name] = append(seeds[loc.name], id+".addr")
		}
		for i := 1; i <= nodesPer; i++ {
			loc.nodes = append(loc.nodes, &simAdNode{loc: loc, id: strconv.Itoa((l-1)*nodesPer + i)})
		}
	}
	for _, loc := range n.locs {
		for _, c := range loc.ctls {
			n.startCtl(c, seeds)
		}
		loc.leader = 0
		for _, nd := range loc.nodes {
			n.startNode(nd)
		}
	}
	return n
}

func (n *simAdNet) at(d time.Duration, fn func()) {
	n.seq++
	heap.Push(&n.evq, simEvent{at: n.now.Add(d), seq: n.seq, fn: fn})
}

func (n *simAdNet) fail(format string, args ...any) {
	if len(n.failures) < 20 {
		n.failures = append(n.failures, n.now.Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
	}
}

// startCtl starts (or restarts, with a new instance and the next incarnation and an empty
// book) controller c, and its tick loop.
func (n *simAdNet) startCtl(c *simAdCtl, seeds map[string][]string) {
	c.inc++
	c.instance = fmt.Sprintf("I-%s-%d", c.id, c.inc)
	own := map[string][]string{}
	for k, v := range seeds {
		own[k] = v
	}
	c.book = newAdBook(command.Ad{Kind: command.AdController, ID: c.id, Location: c.loc.name, Addr: c.id + ".addr",
		Instance: c.instance, Incarnation: c.inc}, adBookConfig{TTL: simTTL, Refresh: defaultAdEvery, ReachWithin: 3 * defaultAdEvery, Seeds: own})
	c.up, c.busy, c.lastAd, c.wasLead = true, map[adTarget]bool{}, time.Time{}, false
	n.byIn[c.instance] = c
	inst := c.instance
	n.at(time.Duration(n.rng.IntN(100))*time.Millisecond, func() { n.tickCtl(c, inst) })
}

func (n *simAdNet) startNode(nd *simAdNode) {
	nd.inc++
	nd.gen = 0
	nd.instance = fmt.Sprintf("N-%s-%d", nd.id, nd.inc)
	nd.up = true
	inst := nd.instance
	n.at(time.Duration(n.rng.IntN(250))*time.Millisecond, func() { n.beat(nd, inst) })
}

func (c *simAdCtl) isLeader() bool { return c.up && c.loc.leader >= 0 && c.loc.ctls[c.loc.leader] == c }

// tickCtl is the controller's gossip loop: advertise, expire, send.
func (n *simAdNet) tickCtl(c *simAdCtl, inst string) {
	if !c.up || c.instance != inst {
		return
	}
	leader := c.isLeader()
	if !n.stopOriginating && (n.now.Sub(c.lastAd) >= defaultAdEvery || leader != c.wasLead) {
		ad := c.book.originate(n.now, leader)
		c.lastAd, c.wasLead = n.now, leader
		n.originated(ad)
	}
	c.book.expire(n.now)
	n.checkPaths(c)
	for _, m := range c.book.drain(n.now, func(t adTarget) bool { return c.busy[t] }) {
		n.send(c, m)
	}
	n.at(gossipTick, func() { n.tickCtl(c, inst) })
}

// beat is a node's heartbeat: it reaches its location's leader after a short delay.
func (n *simAdNet) beat(nd *simAdNode, inst string) {
	if !nd.up || nd.instance != inst {
		return
	}
	if !n.stopOriginating {
		nd.gen++
		ad := command.Ad{Kind: command.AdNode, ID: nd.id, Location: nd.loc.name, Addr: "n" + nd.id + ".addr",
			Instance: nd.instance, Incarnation: nd.inc, Generation: nd.gen}
		n.at(time.Duration(1+n.rng.IntN(3))*time.Millisecond, func() {
			if nd.loc.leader < 0 {
				return
			}
			l := nd.loc.ctls[nd.loc.leader]
			if !l.up || n.cutIntra[l.instance] {
				return
			}
			d, taken := l.book.hear(n.now, ad, true)
			if taken {
				n.decided(l, command.AdSender{}, ad, d)
				if d.Accepted {
					n.originated(ad)
					n.reach(l.loc.name, keyOf(&ad), ad.Incarnation, ad.Generation)
				}
			}
			n.kick(l)
		})
	}
	n.at(simBeatEvery, func() { n.beat(nd, inst) })
}

// kick lets a controller send at once what it just queued (the controller's wake).
func (n *simAdNet) kick(c *simAdCtl) {
	inst := c.instance
	n.at(0, func() {
		if !c.up || c.instance != inst {
			return
		}
		for _, m := range c.book.drain(n.now, func(t adTarget) bool { return c.busy[t] }) {
			n.send(c, m)
		}
	})
}

func (n *simAdNet) delay(from, to string) time.Duration {
	d := time.Duration(1+n.rng.IntN(2)) * time.Millisecond
	if from != to {
		d += n.wan + time.Duration(n.rng.Int64N(int64(n.jitter)+1))
	}
	return d + n.slow[[2]string{from, to}]
}

// send checks and delivers one batch from c.
func (n *simAdNet) send(c *simAdCtl, m adMessage) {
	cross := m.To.Location != c.loc.name
	for _, ad := range m.Ads {
		v := verOf(&ad)
		t := m.To.Location + "/" + m.To.Instance
		n.sends[c.instance+"|"+v+"|"+t]++
		if n.sends[c.instance+"|"+v+"|"+t] > 1 {
			n.fail("%s (%s) sent %s to %s twice", c.id, c.loc.name, v, t)
		}
		if m.To.Instance == c.instance {
			n.fail("%s sent %s to itself", c.id, v)
		}
		if cross {
			n.crossSent[v]++
			if ad.Location == m.To.Location {
				n.fail("%s sent %s back to its origin's location %s", c.id, v, m.To.Location)
			}
			// A controller it has not heard of yet cannot be placed in its location; the
			// ones it has heard of (every sender among them) must be.
			for _, p := range ad.Path {
				if loc, known := c.book.inst[p]; known && loc == m.To.Location {
					n.fail("%s sent %s (path %v) to %s, whose controller %s is on its path", c.id, v, ad.Path, m.To.Location, p)
				}
			}
		}
	}
	c.busy[m.To] = true
	inst := c.instance
	from := command.AdSender{ID: c.id, Location: c.loc.name, Addr: c.id + ".addr", Instance: c.instance}
	copies := 1
	if n.rng.Float64() < n.dupP {
		copies = 2
	}
	for i := 0; i < copies; i++ {
		first := i == 0
		toLoc := m.To.Location
		dropped := n.cut[[2]string{c.loc.name, toLoc}] || n.cutIntra[c.instance] || n.rng.Float64() < n.dropP
		n.at(n.delay(c.loc.name, toLoc), func() {
			ok := false
			var rcpt *simAdCtl
			if !dropped {
				rcpt = n.resolve(m.To)
			}
			if rcpt != nil && !n.cutIntra[rcpt.instance] && (!cross || rcpt.isLeader()) {
				ok = true
				n.deliver(rcpt, from, m.Ads)
			}
			if first && c.up && c.instance == inst {
				addr := ""
				if ok {
					addr = rcpt.id + ".addr"
				}
				c.book.sent(n.now, m, addr, ok)
				delete(c.busy, m.To)
				if c.book.pending() {
					n.kick(c)
				}
			}
		})
	}
}

// resolve finds the controller a batch for t reaches now.
func (n *simAdNet) resolve(t adTarget) *simAdCtl {
	for _, loc := range n.locs {
		if loc.name != t.Location {
			continue
		}
		if t.Instance == "" {
			if loc.leader < 0 || !loc.ctls[loc.leader].up {
				return nil
			}
			return loc.ctls[loc.leader]
		}
		for _, c := range loc.ctls {
			if c.up && c.instance == t.Instance {
				return c
			}
		}
	}
	return nil
}

// deliver hands a batch to rcpt (or to the naive relay of its location).
func (n *simAdNet) deliver(rcpt *simAdCtl, from command.AdSender, ads []command.Ad) {
	n.messages++
	n.lastMsgAt = n.now
	if n.relay != nil && rcpt.loc.name == n.relayLoc {
		n.relay(n, rcpt, from, ads)
		return
	}
	leader := rcpt.isLeader()
	rcpt.book.heard(n.now, from)
	for _, ad := range ads {
		d := rcpt.book.receive(n.now, from, cloneAd(ad), leader)
		n.decided(rcpt, from, ad, d)
		if d.Accepted {
			n.reach(rcpt.loc.name, keyOf(&ad), ad.Incarnation, ad.Generation)
		}
	}
	n.checkPaths(rcpt)
	n.kick(rcpt)
}

func verOf(a *command.Ad) string {
	return fmt.Sprintf("%s/%s/%s@%d.%d", a.Kind, a.Location, a.ID, a.Incarnation, a.Generation)
}

// decided checks one decision: a version is accepted at most once by one controller life.
func (n *simAdNet) decided(c *simAdCtl, from command.AdSender, ad command.Ad, d adDecision) {
	if !d.Accepted {
		return
	}
	k := c.instance + "|" + verOf(&ad)
	n.accepts[k]++
	if n.accepts[k] > 1 {
		n.fail("%s accepted %s twice (from %s, path %v)", c.id, verOf(&ad), from.ID, ad.Path)
	}
}

// checkPaths checks every ad c holds: a simple path ending with c (its own ad: empty), that
// starts in the origin's location when the origin is elsewhere.
func (n *simAdNet) checkPaths(c *simAdCtl) {
	for _, ad := range c.book.list(n.now) {
		if ad.Instance == c.instance {
			if len(ad.Path) != 0 {
				n.fail("%s holds its own ad with path %v", c.id, ad.Path)
			}
			continue
		}
		seen := map[string]bool{}
		for _, p := range ad.Path {
			if seen[p] {
				n.fail("%s holds %s with a path that passes %s twice: %v", c.id, verOf(&ad), p, ad.Path)
			}
			seen[p] = true
		}
		if len(ad.Path) == 0 || ad.Path[len(ad.Path)-1] != c.instance {
			n.fail("%s holds %s with path %v, which does not end with it", c.id, verOf(&ad), ad.Path)
			continue
		}
		// A node's ad is first heard by its location's leader; a controller's by its leader or,
		// when it leads, by the other locations' leaders it sends to.
		if n.relay == nil && ad.Kind == command.AdNode && ad.Location != c.loc.name {
			if first := n.byIn[ad.Path[0]]; first == nil || first.loc.name != ad.Location {
				n.fail("%s holds %s with path %v, which does not start in %s", c.id, verOf(&ad), ad.Path, ad.Location)
			}
		}
	}
}

// originated records a version an origin put out (a controller's own ad, or a node's
// heartbeat its leader took).
func (n *simAdNet) originated(ad command.Ad) {
	o := &simOrigin{key: keyOf(&ad), inc: ad.Incarnation, gen: ad.Generation, at: n.now, reached: map[string]time.Time{ad.Location: n.now}}
	n.origins = append(n.origins, o)
	k := fmt.Sprint(o.key)
	n.pending[k] = append(n.pending[k], o)
}

// reach records that a controller of loc now holds version (inc, gen) of key.
func (n *simAdNet) reach(loc string, key adKey, inc, gen uint64) {
	k := fmt.Sprint(key)
	rest := n.pending[k][:0]
	for _, o := range n.pending[k] {
		if _, done := o.reached[loc]; !done && (inc > o.inc || inc == o.inc && gen >= o.gen) {
			o.reached[loc] = n.now
		}
		if len(o.reached) < len(n.locs) {
			rest = append(rest, o)
		}
	}
	n.pending[k] = rest
}

// run processes events until the virtual clock passes d from now.
func (n *simAdNet) run(d time.Duration) {
	end := n.now.Add(d)
	for n.evq.Len() > 0 && !n.evq[0].at.After(end) {
		e := heap.Pop(&n.evq).(simEvent)
		n.now = e.at
		e.fn()
	}
	n.now = end
}

func (n *simAdNet) check() {
	n.t.Helper()
	if len(n.failures) > 0 {
		n.t.Fatalf("%d violations, first ones:\n  %s", len(n.failures), joinLines(n.failures))
	}
}

func joinLines(s []string) string {
	out := ""
	for i, l := range s {
		if i > 0 {
			out += "\n  "
		}
		out += l
	}
	return out
}

// convergence returns the time every location took to hold each version put out between
// from and until (sorted), and the versions that did not reach every location.
func (n *simAdNet) convergence(from, until time.Time) (times []time.Duration, missing []string) {
	for _, o := range n.origins {
		if o.at.Before(from) || o.at.After(until) {
			continue
		}
		if len(o.reached) < len(n.locs) {
			var lacking []string
			for _, l := range n.locs {
				if _, ok := o.reached[l.name]; !ok {
					lacking = append(lacking, l.name)
				}
			}
			missing = append(missing, fmt.Sprintf("%v@%d.%d (put out %s) not in %v", o.key, o.inc, o.gen, o.at.Format("15:04:05.000"), lacking))
			continue
		}
		var worst time.Duration
		for _, t := range o.reached {
			worst = max(worst, t.Sub(o.at))
		}
		times = append(times, worst)
	}
	slices.Sort(times)
	return times, missing
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// liveProcesses returns every running controller's and node's key and current instance.
func (n *simAdNet) liveProcesses() map[adKey]string {
	out := map[adKey]string{}
	for _, loc := range n.locs {
		for _, c := range loc.ctls {
			if c.up {
				out[adKey{command.AdController, loc.name, c.id}] = c.instance
			}
		}
		for _, nd := range loc.nodes {
			if nd.up {
				out[adKey{command.AdNode, loc.name, nd.id}] = nd.instance
			}
		}
	}
	return out
}

// everyoneHoldsCurrent reports the first running controller that lacks, or holds another
// life of, a running process ("" when none).
func (n *simAdNet) everyoneHoldsCurrent() string {
	live := n.liveProcesses()
	keys := make([]adKey, 0, len(live))
	for k := range live {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return cmpKey(keys[i], keys[j]) < 0 })
	for _, loc := range n.locs {
		for _, c := range loc.ctls {
			if !c.up {
				continue
			}
			held := map[adKey]string{}
			for _, ad := range c.book.list(n.now) {
				held[keyOf(&ad)] = ad.Instance
			}
			for _, k := range keys {
				if held[k] != live[k] {
					return fmt.Sprintf("%s (%s) holds %v as %q, want %q", c.id, loc.name, k, held[k], live[k])
				}
			}
		}
	}
	return ""
}

// changeLeader makes another running controller of loc its leader.
func (n *simAdNet) changeLeader(loc *simAdLoc) {
	var cands []int
	for i, c := range loc.ctls {
		if c.up && i != loc.leader {
			cands = append(cands, i)
		}
	}
	if len(cands) > 0 {
		loc.leader = cands[n.rng.IntN(len(cands))]
	}
}

// TestPelicanForwardingLoop: Pelican's first failure mode, ads forwarded round and round
// between controller clusters. On full meshes of 3 and 5 locations with WAN delay, jitter
// and duplicated messages, every version every process puts out reaches every location
// (within 5 s), no controller accepts or forwards one (origin, incarnation, generation)
// twice, nothing goes back to its sender, its origin's location or a location on its path,
// and the cross-location sends of one version stay within (L-1)^2, the bound of forwarding
// each version once per location. On a ring (each location reaching only its two
// neighbours) every version still reaches every location.
func TestPelicanForwardingLoop(t *testing.T) {
	for _, tc := range []struct {
		name string
		locs int
		ring bool
		seed uint64
	}{
		{"mesh3", 3, false, 101}, {"mesh5", 5, false, 202}, {"ring5", 5, true, 303},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newSimAdNet(t, tc.seed, tc.locs, 3, 2)
			n.dupP = 0.05
			if tc.ring {
				for i := range n.locs {
					for j := range n.locs {
						d := (i - j + tc.locs) % tc.locs
						if d != 0 && d != 1 && d != tc.locs-1 {
							n.cut[[2]string{n.locs[i].name, n.locs[j].name}] = true
						}
					}
				}
			}
			n.run(30 * time.Second)
			n.check()
			times, missing := n.convergence(n.now.Add(-28*time.Second), n.now.Add(-6*time.Second))
			if len(missing) > 0 {
				t.Fatalf("%d versions did not reach every location, e.g. %s", len(missing), missing[0])
			}
			if len(times) < 100 {
				t.Fatalf("only %d versions measured", len(times))
			}
			t.Logf("%d versions: convergence p50 %v p99 %v max %v; %d batches delivered",
				len(times), pct(times, 0.5), pct(times, 0.99), times[len(times)-1], n.messages)
			if worst := times[len(times)-1]; worst > 5*time.Second {
				t.Fatalf("a version took %v to reach every location, want at most 5s", worst)
			}
			if !tc.ring {
				bound := (tc.locs - 1) * (tc.locs - 1)
				for v, c := range n.crossSent {
					if c > bound {
						t.Fatalf("version %s was sent across locations %d times, more than (L-1)^2 = %d", v, c, bound)
					}
				}
			}
			if s := n.everyoneHoldsCurrent(); s != "" {
				t.Fatal(s)
			}
		})
	}
}

// TestPelicanForwardingLoopUnderFaults: the same checks while leaders change, messages
// are dropped and duplicated, and one pair of locations is partitioned for a while; once
// the network heals, every controller holds every running process's current life.
func TestPelicanForwardingLoopUnderFaults(t *testing.T) {
	for _, seed := range []uint64{11, 12, 13, 14} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			n := newSimAdNet(t, seed, 5, 3, 2)
			n.dupP, n.dropP = 0.1, 0.05
			for step := 0; step < 40; step++ {
				if n.rng.IntN(4) == 0 {
					n.changeLeader(n.locs[n.rng.IntN(len(n.locs))])
				}
				if step == 10 {
					a, b := n.locs[n.rng.IntN(5)].name, n.locs[n.rng.IntN(5)].name
					n.cut[[2]string{a, b}], n.cut[[2]string{b, a}] = true, true
				}
				if step == 25 {
					n.cut = map[[2]string]bool{}
				}
				n.run(500 * time.Millisecond)
			}
			n.dropP = 0
			n.run(5 * time.Second)
			n.check()
			if s := n.everyoneHoldsCurrent(); s != "" {
				t.Fatal(s)
			}
		})
	}
}

// TestPelicanRestartedProcessGenerationWentBack: Pelican's second failure mode. A node and
// two controllers (a follower, and a leader) restart: each new life has a new instance and
// the next incarnation, and its generation starts again at 1, far below the old life's.
// Within 5 s every controller of every location holds the new life, and no old-life ad
// delivered late (replayed after the restart, with a higher generation) ever displaces it.
func TestPelicanRestartedProcessGenerationWentBack(t *testing.T) {
	for _, locs := range []int{3, 5} {
		t.Run(fmt.Sprintf("%dlocations", locs), func(t *testing.T) {
			n := newSimAdNet(t, 400+uint64(locs), locs, 3, 2)
			n.dupP = 0.05
			n.run(20 * time.Second)
			n.check()
			nd := n.locs[1].nodes[0]
			follower := n.locs[2].ctls[1]
			leaderLoc := n.locs[0]
			leader := leaderLoc.ctls[leaderLoc.leader]
			oldNode := command.Ad{Kind: command.AdNode, ID: nd.id, Location: nd.loc.name, Addr: "n" + nd.id + ".addr",
				Instance: nd.instance, Incarnation: nd.inc, Generation: nd.gen + 50}
			if nd.gen < 40 || follower.book.self.Generation < 15 {
				t.Fatalf("the old lives are too young to test a generation going back: node gen %d, controller gen %d",
					nd.gen, follower.book.self.Generation)
			}
			seeds := follower.book.cfg.Seeds
			// Crash and restart: the books start empty, the counters from 1.
			nd.up, follower.up, leader.up = false, false, false
			n.changeLeader(leaderLoc)
			n.run(300 * time.Millisecond)
			restartAt := n.now
			n.startNode(nd)
			n.startCtl(follower, seeds)
			n.startCtl(leader, seeds)
			// An old-life ad of the node, with a higher generation than the new life will
			// reach for minutes, arrives late at every other location's leader.
			for _, loc := range n.locs[2:] {
				rcpt := loc.ctls[loc.leader]
				relayer := n.locs[1].ctls[n.locs[1].leader]
				from := command.AdSender{ID: relayer.id, Location: relayer.loc.name, Instance: relayer.instance}
				late := cloneAd(oldNode)
				late.Path = []string{relayer.instance}
				n.at(2*time.Second, func() { n.deliver(rcpt, from, []command.Ad{late}) })
			}
			var within time.Duration
			for within = 0; within <= 5*time.Second; within += 100 * time.Millisecond {
				if n.everyoneHoldsCurrent() == "" {
					break
				}
				n.run(100 * time.Millisecond)
			}
			if s := n.everyoneHoldsCurrent(); s != "" {
				t.Fatalf("5 s after the restarts: %s", s)
			}
			t.Logf("every controller held the new lives %v after the restarts", n.now.Sub(restartAt))
			// And keeps them, the late old-life ads notwithstanding.
			for i := 0; i < 50; i++ {
				n.run(100 * time.Millisecond)
				if s := n.everyoneHoldsCurrent(); s != "" {
					t.Fatalf("%v after the restarts: %s", n.now.Sub(restartAt), s)
				}
			}
			n.check()
		})
	}
}

// TestPelicanAdWithoutProvenance: Pelican's third failure mode, ads passed on without a
// provenance path. Location loc4 runs a naive relay: it passes every ad it gets to every
// other location, the sender included, raising the generation each time (as if passing an
// ad on were advertising) and dropping the path (variant "strip") or passing it unchanged
// without itself (variant "keep"). Its links to loc1 and loc3 are slow, so its copies
// reach them through loc2 first, from a sender that is not the relay. The correct controllers keep the path they can vouch for (the relay
// appended as the sender), so none of them passes a relayed ad back to the relay, and they
// recognise their own instance in a path that comes back: the traffic stops once the
// origins stop, every held path is simple, and no controller accepts a version twice.
func TestPelicanAdWithoutProvenance(t *testing.T) {
	for _, variant := range []string{"strip", "keep"} {
		t.Run(variant, func(t *testing.T) {
			n := newSimAdNet(t, 500+uint64(len(variant)), 4, 3, 2)
			n.relayLoc = "loc4"
			n.slow[[2]string{"loc4", "loc1"}] = 60 * time.Millisecond
			n.slow[[2]string{"loc4", "loc3"}] = 60 * time.Millisecond
			relayed := 0
			n.relay = func(n *simAdNet, at *simAdCtl, from command.AdSender, ads []command.Ad) {
				me := command.AdSender{ID: at.id, Location: at.loc.name, Addr: at.id + ".addr", Instance: at.instance}
				var out []command.Ad
				for _, ad := range ads {
					ad = cloneAd(ad)
					if ad.Location == at.loc.name {
						continue
					}
					ad.Generation += 1000
					if variant == "strip" {
						ad.Path = nil
					}
					out = append(out, ad)
				}
				if len(out) == 0 {
					return
				}
				for _, loc := range n.locs {
					if loc.name == at.loc.name || loc.leader < 0 {
						continue
					}
					rcpt := loc.ctls[loc.leader]
					batch := out
					relayed += len(batch)
					n.at(n.delay(at.loc.name, loc.name), func() {
						if rcpt.up {
							n.deliver(rcpt, me, batch)
						}
					})
				}
			}
			n.run(15 * time.Second)
			n.stopOriginating = true
			stoppedAt, relayedAtStop := n.now, relayed
			n.run(10 * time.Second)
			n.check()
			if quiet := n.now.Sub(n.lastMsgAt); quiet < 5*time.Second {
				t.Fatalf("ads still circulate %v after every origin stopped (last batch %v ago; the relay passed on %d ads since)",
					n.now.Sub(stoppedAt), quiet, relayed-relayedAtStop)
			}
			if relayed == 0 {
				t.Fatal("the relay passed nothing on: the test tested nothing")
			}
			loops := uint64(0)
			for _, loc := range n.locs[:3] {
				for _, c := range loc.ctls {
					loops += c.book.counters().Dropped[dropLoop]
				}
			}
			t.Logf("relay passed on %d ads; the correct controllers dropped %d as loops", relayed, loops)
			if variant == "keep" && loops == 0 {
				t.Fatal("no controller recognised its own instance in a path that came back")
			}
		})
	}
}

// TestAdsOwnLocationNeverExpires: a location cut off from every other location, and a
// follower cut off from its own leader, for several TTLs: the ads of the other locations
// expire, those of the own location (even of a node that stopped) do not, and the
// configured locations stay known; once the network heals, everything is back within 5 s.
func TestAdsOwnLocationNeverExpires(t *testing.T) {
	n := newSimAdNet(t, 600, 3, 3, 2)
	n.run(10 * time.Second)
	n.check()
	iso := n.locs[0]
	follower := iso.ctls[(iso.leader+1)%3]
	stopped := iso.nodes[1]
	stopped.up = false
	for _, o := range n.locs[1:] {
		n.cut[[2]string{iso.name, o.name}], n.cut[[2]string{o.name, iso.name}] = true, true
	}
	n.cutIntra[follower.instance] = true
	n.run(3 * simTTL)
	for _, c := range iso.ctls {
		for _, ad := range c.book.list(n.now) {
			if ad.Location != iso.name {
				t.Fatalf("%s still holds %s of the unreachable %s after 3 TTLs", c.id, verOf(&ad), ad.Location)
			}
		}
		own := map[string]bool{}
		for _, ad := range c.book.list(n.now) {
			own[ad.Kind+ad.ID] = true
		}
		for _, x := range iso.ctls {
			if !own[command.AdController+x.id] {
				t.Fatalf("%s dropped the ad of its own location's controller %s", c.id, x.id)
			}
		}
		for _, nd := range iso.nodes {
			if !own[command.AdNode+nd.id] {
				t.Fatalf("%s dropped the ad of its own location's node %s (up: %v)", c.id, nd.id, nd.up)
			}
		}
		var names []string
		for _, v := range c.book.locations(n.now) {
			names = append(names, v.Name)
			if v.Reachable {
				t.Fatalf("%s reports %s reachable", c.id, v.Name)
			}
			if len(v.Seeds) != 3 {
				t.Fatalf("%s forgot the configured addresses of %s: %v", c.id, v.Name, v.Seeds)
			}
		}
		if !slices.Equal(names, []string{"loc2", "loc3"}) {
			t.Fatalf("%s knows locations %v, want the configured loc2, loc3", c.id, names)
		}
	}
	for _, o := range n.locs[1:] {
		for _, c := range o.ctls {
			for _, ad := range c.book.list(n.now) {
				if ad.Location == iso.name {
					t.Fatalf("%s still holds %s of the unreachable %s after 3 TTLs", c.id, verOf(&ad), iso.name)
				}
			}
		}
	}
	n.cut, n.cutIntra = map[[2]string]bool{}, map[string]bool{}
	n.startNode(stopped)
	healed := n.now
	for n.everyoneHoldsCurrent() != "" && n.now.Sub(healed) < 5*time.Second {
		n.run(100 * time.Millisecond)
	}
	if s := n.everyoneHoldsCurrent(); s != "" {
		t.Fatalf("5 s after the network healed: %s", s)
	}
	t.Logf("everything held again %v after the network healed", n.now.Sub(healed))
	n.check()
}

// TestAdConvergenceFigures measures how long a version takes to reach every location, with
// 10 ms WAN delay and 5 ms jitter, for 3 and 5 locations.
func TestAdConvergenceFigures(t *testing.T) {
	for _, locs := range []int{3, 5} {
		n := newSimAdNet(t, 700+uint64(locs), locs, 3, 2)
		n.run(40 * time.Second)
		n.check()
		times, missing := n.convergence(n.now.Add(-35*time.Second), n.now.Add(-6*time.Second))
		if len(missing) > 0 {
			t.Fatalf("%d locations: %d versions missing, e.g. %s", locs, len(missing), missing[0])
		}
		t.Logf("%d locations: %d versions, convergence p50 %v p99 %v max %v", locs, len(times), pct(times, 0.5), pct(times, 0.99), times[len(times)-1])
	}
}
