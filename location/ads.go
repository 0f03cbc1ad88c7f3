package location

import (
	"slices"
	"strconv"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// adBook is one controller's advertisements (docs/design.md "Ads and gossip",
// docs/locations.md): the newest ad of every process it has heard of, what it still has to
// pass on and to whom, and what it knows of the links to other locations. It is a pure
// state machine: no sockets, no clock (every call takes now), no goroutines. The
// controller drives it from HTTP handlers and one loop (gossip.go); the seeded simulation
// (ads_sim_test.go) drives several of them over an in-memory network.
//
// The rules, each guarded by a named test (ads_test.go, ads_sim_test.go):
//
//   - Order: an ad replaces the held one of its process only when it is newer: a higher
//     incarnation (a restart, whose generation starts again at 1), else a higher
//     generation. Instance IDs never order ads.
//   - Once: an ad is passed on only when it is accepted, and a version is accepted at most
//     once (the book remembers the highest version of every process for 2×TTL after the ad
//     itself expired), so no controller forwards one (origin, incarnation, generation)
//     twice, whatever the topology, delays, duplicates or loops of the network.
//   - Never back: an ad is not passed to the origin's location (which heard it first
//     hand), to a location one of whose controllers is on its path (the sender is always
//     on it), to a controller on its path, nor to this controller itself. The path is
//     checked when the batch goes out, so a controller learnt of meanwhile counts.
//   - Provenance: every accepted ad keeps the path it came with, the sender appended when
//     the sender left itself out (a peer that keeps no provenance), then this controller.
//     An ad whose path holds this controller's instance already passed here and is dropped
//     ("loop"), newer or not; so is this controller's own ad, and an ad that comes back
//     from another location when it is of this location (this location's processes report
//     here first hand) or its path holds another controller of this location.
//   - Expiry: an ad not refreshed for TTL (its age summed over the hops) is dropped, except
//     the ads of this controller's own location, whose live view never expires because
//     another location is unreachable. Configured seed addresses are never forgotten.
//   - Only a leader passes ads on: to the other locations (whichever controller leads
//     there) and to the other controllers of its own location. A follower sends only its
//     own ad, to its leader.
type adBook struct {
	self  command.Ad // this controller's own ad; Generation counts the ads it made
	cfg   adBookConfig
	held  map[adKey]*heldAd
	marks map[adKey]adMark  // highest version accepted per process, kept past expiry
	inst  map[string]string // controller instance -> its location, from senders and controller ads
	links map[string]*adLink
	out   map[adTarget]map[adKey]heldAd
	stats adStats
}

// The controller's timing of ads (gossip.go drives the book with it).
const (
	defaultAdEvery = time.Second
	defaultAdTTL   = 10 * time.Second
	// gossipTick is how often waiting batches go out; an accepted batch also sends at once.
	gossipTick = 100 * time.Millisecond
)

// adBookConfig tunes an adBook.
type adBookConfig struct {
	// TTL: an ad of another location older than this is dropped.
	TTL time.Duration
	// Refresh: an ad heard first hand that changes nothing (same life, same address) is
	// taken again and passed on at most this often (a node heartbeats 4 times per
	// down-after; the other locations need not hear every beat).
	Refresh time.Duration
	// ReachWithin: a location counts as reachable when this controller delivered to it (or,
	// as a follower, heard of it) this recently.
	ReachWithin time.Duration
	// Seeds: the configured other locations and their controllers' addresses.
	Seeds map[string][]string
}

// adKey names a process: its kind, location and ID.
type adKey struct{ Kind, Location, ID string }

func keyOf(a *command.Ad) adKey { return adKey{a.Kind, a.Location, a.ID} }

// heldAd is an ad as held: its path ends with this controller (except its own ad), and its
// age is base at arrival plus the time since.
type heldAd struct {
	ad   command.Ad
	base time.Duration
	at   time.Time
}

func (h *heldAd) age(now time.Time) time.Duration { return h.base + now.Sub(h.at) }

// adMark is the highest version of a process this book accepted; until is when it may be
// forgotten (zero while the ad is held).
type adMark struct {
	incarnation, generation uint64
	until                   time.Time
}

// adTarget is where an ad goes: a location's leader (Instance empty), or one controller of
// this location.
type adTarget struct {
	Location string
	Instance string
}

// adLink is what this controller knows of the link to another location.
type adLink struct {
	leaderInstance, leaderAddr string
	heard, ok, fail            time.Time
}

// adStats are the counters of docs/protocol.md §6.
type adStats struct {
	Received  uint64
	Forwarded uint64
	Dropped   map[string]uint64
}

// Drop reasons (sibyl_controller_ads_dropped_total{reason}).
const (
	dropOwn       = "own"       // this controller's own ad came back
	dropLoop      = "loop"      // its path holds this controller, or an ad of this location came back
	dropDuplicate = "duplicate" // the version held already
	dropOlder     = "older"     // an older version than the one held
	dropExpired   = "expired"   // its age reached the TTL (arriving, or while held)
	dropInvalid   = "invalid"   // a field missing
	dropUnsent    = "unsent"    // the batch carrying it could not be delivered
)

// adDecision is what receive did with one ad.
type adDecision struct {
	Accepted bool
	Drop     string     // the reason, when not accepted
	Held     command.Ad // the ad as held, when accepted
	To       []adTarget // where it will be passed on
	// NewLife: the accepted ad replaced one of another instance of its process (a restart).
	NewLife bool
}

// adMessage is one batch to send.
type adMessage struct {
	To  adTarget
	Ads []command.Ad
}

func newAdBook(self command.Ad, cfg adBookConfig) *adBook {
	self.Kind, self.Path = command.AdController, nil
	b := &adBook{
		self: self, cfg: cfg,
		held: map[adKey]*heldAd{}, marks: map[adKey]adMark{}, inst: map[string]string{self.Instance: self.Location},
		links: map[string]*adLink{}, out: map[adTarget]map[adKey]heldAd{},
		stats: adStats{Dropped: map[string]uint64{}},
	}
	for loc := range cfg.Seeds {
		if loc != self.Location {
			b.links[loc] = &adLink{}
		}
	}
	return b
}

// originate makes this controller's next ad (generation + 1) and queues it: a leader to
// every other location it knows and to its location's other controllers, a follower to its
// leader.
func (b *adBook) originate(now time.Time, leader bool) command.Ad {
	b.self.Generation++
	k := keyOf(&b.self)
	h := heldAd{ad: b.self, at: now}
	b.held[k] = &h
	b.marks[k] = adMark{incarnation: b.self.Incarnation, generation: b.self.Generation}
	var to []adTarget
	if leader {
		to = b.targets(&b.self)
	} else {
		to = []adTarget{{Location: b.self.Location}}
	}
	b.queue(k, h, to)
	return b.self
}

// hear takes an ad first hand from its origin (a node's join or heartbeat at the leader).
// An ad that changes nothing but the generation is taken at most once per Refresh; taken
// reports whether it was.
func (b *adBook) hear(now time.Time, ad command.Ad, leader bool) (d adDecision, taken bool) {
	if h := b.held[keyOf(&ad)]; h != nil && h.ad.Instance == ad.Instance && h.ad.Incarnation == ad.Incarnation &&
		h.ad.Addr == ad.Addr && now.Sub(h.at) < b.cfg.Refresh {
		return adDecision{}, false
	}
	return b.receive(now, command.AdSender{}, ad, leader), true
}

// receive decides what to do with one ad handed over by from (the zero sender: the origin
// itself), and queues it where it must go. A follower passes nothing on.
func (b *adBook) receive(now time.Time, from command.AdSender, ad command.Ad, leader bool) adDecision {
	b.stats.Received++
	drop := func(reason string) adDecision {
		b.stats.Dropped[reason]++
		return adDecision{Drop: reason}
	}
	if ad.Kind != command.AdNode && ad.Kind != command.AdController || ad.ID == "" || ad.Location == "" ||
		ad.Instance == "" || ad.Incarnation == 0 {
		return drop(dropInvalid)
	}
	k := keyOf(&ad)
	if ad.Instance == b.self.Instance || k == keyOf(&b.self) {
		return drop(dropOwn)
	}
	if slices.Contains(ad.Path, b.self.Instance) {
		return drop(dropLoop)
	}
	firstHand := from.Instance == "" || from.Instance == ad.Instance
	if !firstHand && from.Location != b.self.Location {
		// From another location: an ad of this location, or one that passed a controller
		// of this location, comes back round.
		if ad.Location == b.self.Location {
			return drop(dropLoop)
		}
		for _, p := range ad.Path {
			if b.inst[p] == b.self.Location {
				return drop(dropLoop)
			}
		}
	}
	var base time.Duration
	if !firstHand {
		base = time.Duration(ad.AgeMs) * time.Millisecond
		if base < 0 {
			base = 0
		}
		if base >= b.cfg.TTL {
			return drop(dropExpired)
		}
	}
	if m, ok := b.marks[k]; ok {
		held := command.Ad{Incarnation: m.incarnation, Generation: m.generation}
		if !ad.Newer(&held) {
			if held.Newer(&ad) {
				return drop(dropOlder)
			}
			return drop(dropDuplicate)
		}
	}
	prev, had := b.held[k]
	newLife := had && prev.ad.Instance != ad.Instance
	path := slices.Clone(ad.Path)
	if !firstHand && (len(path) == 0 || path[len(path)-1] != from.Instance) {
		path = append(path, from.Instance)
	}
	ad.Path = append(path, b.self.Instance)
	ad.AgeMs = 0
	h := heldAd{ad: ad, base: base, at: now}
	b.held[k] = &h
	b.marks[k] = adMark{incarnation: ad.Incarnation, generation: ad.Generation}
	if from.Instance != "" {
		b.inst[from.Instance] = from.Location
	}
	if ad.Kind == command.AdController {
		b.inst[ad.Instance] = ad.Location
	}
	if ad.Location != b.self.Location && b.links[ad.Location] == nil {
		b.links[ad.Location] = &adLink{}
	}
	var to []adTarget
	if leader {
		to = b.targets(&ad)
	}
	b.queue(k, h, to)
	return adDecision{Accepted: true, Held: cloneAd(ad), To: to, NewLife: newLife}
}

// targets lists where an accepted ad goes from a leader: every other location except the
// origin's, and every other controller of this location except the origin. drain leaves
// out the targets the ad's path went through (its sender among them).
func (b *adBook) targets(ad *command.Ad) []adTarget {
	var to []adTarget
	for _, loc := range b.knownLocations() {
		if loc != ad.Location {
			to = append(to, adTarget{Location: loc})
		}
	}
	for _, k := range b.sortedKeys() {
		c := b.held[k].ad
		if k.Kind == command.AdController && k.Location == b.self.Location && c.Instance != b.self.Instance && c.Instance != ad.Instance {
			to = append(to, adTarget{Location: b.self.Location, Instance: c.Instance})
		}
	}
	return to
}

// knownLocations lists the other locations: configured ones and those of the ads held.
func (b *adBook) knownLocations() []string {
	out := make([]string, 0, len(b.links))
	for loc := range b.links {
		out = append(out, loc)
	}
	slices.Sort(out)
	return out
}

// queue replaces whatever version of k is waiting to go out with h, to the targets to.
func (b *adBook) queue(k adKey, h heldAd, to []adTarget) {
	for _, q := range b.out {
		delete(q, k)
	}
	for _, t := range to {
		q := b.out[t]
		if q == nil {
			q = map[adKey]heldAd{}
			b.out[t] = q
		}
		q[k] = h
	}
}

// drain takes every waiting batch whose target busy does not refuse (nil: none does), in
// a stable order, with each ad's age as of now, leaving out an ad whose path went through
// the target after all. The ads taken count as forwarded.
func (b *adBook) drain(now time.Time, busy func(adTarget) bool) []adMessage {
	targets := make([]adTarget, 0, len(b.out))
	for t, q := range b.out {
		if len(q) > 0 && (busy == nil || !busy(t)) {
			targets = append(targets, t)
		}
	}
	slices.SortFunc(targets, func(x, y adTarget) int {
		if x.Location != y.Location {
			return cmpString(x.Location, y.Location)
		}
		return cmpString(x.Instance, y.Instance)
	})
	var msgs []adMessage
	for _, t := range targets {
		q := b.out[t]
		keys := make([]adKey, 0, len(q))
		for k := range q {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, cmpKey)
		m := adMessage{To: t}
		for _, k := range keys {
			h := q[k]
			if b.passed(h.ad.Path, t) {
				continue
			}
			ad := cloneAd(h.ad)
			ad.AgeMs = h.age(now).Milliseconds()
			m.Ads = append(m.Ads, ad)
		}
		delete(b.out, t)
		if len(m.Ads) == 0 {
			continue
		}
		b.stats.Forwarded += uint64(len(m.Ads))
		msgs = append(msgs, m)
	}
	return msgs
}

// passed reports whether path went through target t: through that controller, or through
// a controller of that location. It is asked when the ad goes out, so a controller learnt of
// since the ad was queued counts too. The sender of an ad is on its path, so nothing goes
// back to it.
func (b *adBook) passed(path []string, t adTarget) bool {
	for _, p := range path {
		if p == t.Instance || t.Instance == "" && b.inst[p] == t.Location {
			return true
		}
	}
	return false
}

// pending reports whether anything waits to go out.
func (b *adBook) pending() bool {
	for _, q := range b.out {
		if len(q) > 0 {
			return true
		}
	}
	return false
}

// sent records the outcome of delivering m: to addr when ok (the controller that took it,
// which leads there when m went to another location), else every ad in it counts as
// dropped unsent.
func (b *adBook) sent(now time.Time, m adMessage, addr string, ok bool) {
	l := b.links[m.To.Location]
	if !ok {
		b.stats.Dropped[dropUnsent] += uint64(len(m.Ads))
		if l != nil && m.To.Instance == "" {
			l.fail = now
		}
		return
	}
	if l != nil && m.To.Instance == "" {
		l.ok = now
		if addr != "" && addr != l.leaderAddr {
			l.leaderAddr, l.leaderInstance = addr, ""
		}
	}
}

// heard records a batch from another location's controller (its leader: only leaders send
// across locations).
func (b *adBook) heard(now time.Time, from command.AdSender) {
	if from.Location == "" || from.Location == b.self.Location {
		return
	}
	l := b.links[from.Location]
	if l == nil {
		l = &adLink{}
		b.links[from.Location] = l
	}
	l.heard = now
	l.leaderInstance, l.leaderAddr = from.Instance, from.Addr
	if from.Instance != "" {
		b.inst[from.Instance] = from.Location
	}
}

// expire drops the ads of other locations whose age reached the TTL and forgets the
// versions of processes expired for 2×TTL. Ads of this location never expire.
func (b *adBook) expire(now time.Time) {
	for k, h := range b.held {
		if k.Location == b.self.Location || h.age(now) < b.cfg.TTL {
			continue
		}
		delete(b.held, k)
		for _, q := range b.out {
			delete(q, k)
		}
		m := b.marks[k]
		m.until = now.Add(2 * b.cfg.TTL)
		b.marks[k] = m
		b.stats.Dropped[dropExpired]++
	}
	for k, m := range b.marks {
		if !m.until.IsZero() && !now.Before(m.until) {
			if _, held := b.held[k]; !held {
				delete(b.marks, k)
			}
		}
	}
	for loc, l := range b.links {
		if _, seed := b.cfg.Seeds[loc]; seed || b.hasAdsOf(loc) || (!l.heard.IsZero() && now.Sub(l.heard) < b.cfg.TTL) {
			continue
		}
		delete(b.links, loc)
	}
}

func (b *adBook) hasAdsOf(loc string) bool {
	for k := range b.held {
		if k.Location == loc {
			return true
		}
	}
	return false
}

// list returns every ad held, own ad included (with an empty path), ordered by kind,
// location and ID, with its age as of now.
func (b *adBook) list(now time.Time) []command.Ad {
	out := make([]command.Ad, 0, len(b.held))
	for _, k := range b.sortedKeys() {
		h := b.held[k]
		ad := cloneAd(h.ad)
		ad.AgeMs = h.age(now).Milliseconds()
		out = append(out, ad)
	}
	return out
}

// locationView is one other location as this book knows it.
type locationView struct {
	Name        string
	Seeds       []string
	Controllers []command.Ad // held controller ads, by ID
	Nodes       []command.Ad // held node ads, by ID
	LeaderAddr  string       // "" when unknown
	LeaderID    string       // "" when unknown
	Reachable   bool
	Heard       time.Time // zero: never
}

// locations describes every other location known: configured or heard of.
func (b *adBook) locations(now time.Time) []locationView {
	var out []locationView
	for _, loc := range b.knownLocations() {
		l := b.links[loc]
		v := locationView{Name: loc, Seeds: slices.Clone(b.cfg.Seeds[loc]), Heard: l.heard}
		freshest := time.Duration(-1)
		for _, k := range b.sortedKeys() {
			if k.Location != loc {
				continue
			}
			h := b.held[k]
			ad := cloneAd(h.ad)
			ad.AgeMs = h.age(now).Milliseconds()
			if k.Kind == command.AdController {
				v.Controllers = append(v.Controllers, ad)
			} else {
				v.Nodes = append(v.Nodes, ad)
			}
			if a := h.age(now); freshest < 0 || a < freshest {
				freshest = a
			}
		}
		if freshest >= 0 {
			if t := now.Add(-freshest); t.After(v.Heard) {
				v.Heard = t
			}
		}
		for _, c := range v.Controllers {
			if (l.leaderInstance != "" && c.Instance == l.leaderInstance) || (l.leaderInstance == "" && c.Addr == l.leaderAddr) {
				v.LeaderID, v.LeaderAddr = c.ID, c.Addr
			}
		}
		if v.LeaderAddr == "" {
			v.LeaderAddr = l.leaderAddr
		}
		if l.ok.IsZero() && l.fail.IsZero() {
			// Never sent there (a follower): reachable while fresh ads of it arrive.
			v.Reachable = !v.Heard.IsZero() && now.Sub(v.Heard) < b.cfg.ReachWithin
		} else {
			v.Reachable = !l.ok.IsZero() && !l.ok.Before(l.fail) && now.Sub(l.ok) < b.cfg.ReachWithin
		}
		out = append(out, v)
	}
	return out
}

// ownControllers returns the held ads of this location's controllers, this one included.
func (b *adBook) ownControllers() []command.Ad {
	var out []command.Ad
	for _, k := range b.sortedKeys() {
		if k.Kind == command.AdController && k.Location == b.self.Location {
			out = append(out, cloneAd(b.held[k].ad))
		}
	}
	return out
}

// controllerAddr returns the address of the controller of this location with instance
// inst, from its ad.
func (b *adBook) controllerAddr(inst string) string {
	for k, h := range b.held {
		if k.Kind == command.AdController && h.ad.Instance == inst {
			return h.ad.Addr
		}
	}
	return ""
}

// addrsOf lists where to reach location loc: the leader last seen there, then its
// configured seeds, then its controllers' advertised addresses, each once.
func (b *adBook) addrsOf(loc string) []string {
	var out []string
	add := func(a string) {
		if a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if l := b.links[loc]; l != nil {
		add(l.leaderAddr)
	}
	for _, a := range b.cfg.Seeds[loc] {
		add(a)
	}
	for _, k := range b.sortedKeys() {
		if k.Kind == command.AdController && k.Location == loc {
			add(b.held[k].ad.Addr)
		}
	}
	return out
}

// counters returns a copy of the ad counters.
func (b *adBook) counters() adStats {
	s := b.stats
	s.Dropped = make(map[string]uint64, len(b.stats.Dropped))
	for k, v := range b.stats.Dropped {
		s.Dropped[k] = v
	}
	return s
}

func (b *adBook) sortedKeys() []adKey {
	keys := make([]adKey, 0, len(b.held))
	for k := range b.held {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmpKey)
	return keys
}

// cmpKey orders kinds, then locations, then IDs (node IDs numerically).
func cmpKey(x, y adKey) int {
	if x.Kind != y.Kind {
		return cmpString(x.Kind, y.Kind)
	}
	if x.Location != y.Location {
		return cmpString(x.Location, y.Location)
	}
	if x.Kind == command.AdNode {
		a, _ := strconv.Atoi(x.ID)
		b, _ := strconv.Atoi(y.ID)
		if a != b {
			return a - b
		}
	}
	return cmpString(x.ID, y.ID)
}

func cloneAd(a command.Ad) command.Ad {
	a.Path = slices.Clone(a.Path)
	return a
}
