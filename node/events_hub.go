package node

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// hubMode is where a hub's entries come from.
type hubMode uint8

const (
	// hubLocal: this node holds a copy; publish feeds the hub in commit order.
	hubLocal hubMode = iota + 1
	// hubUpstream: no copy here; one feed from a node that holds one feeds it.
	hubUpstream
)

// upstreamLinger is how long an upstream hub keeps its feed after its last subscriber
// left, so that a client reconnecting does not make the node reconnect too.
const upstreamLinger = 10 * time.Second

// hub is one group's fan-out on this node: the position of the last entry it delivered,
// the subscriptions attached to it (live), indexed by what they select, and those waiting
// for it to reach their position (pending). Every entry goes through deliverLocked once,
// in commit order, whatever the source.
type hub struct {
	m *subManager
	g command.ServerID
	// safe is the position up to which every matching entry has been queued to every live
	// subscription; read without the lock to compute other groups' tokens.
	safe atomic.Pointer[position]

	mu      sync.Mutex
	mode    hubMode
	pos     position
	known   bool          // pos is meaningful (an upstream hub learns it from its feed)
	knownCh chan struct{} // closed when known becomes true
	up      *upstream     // the feed of an upstream hub, while it has members
	idle    *time.Timer
	members int // subGroups joined (live, pending or catching up)
	rids    map[string][]*subGroup
	types   map[string][]*subGroup
	server  []*subGroup
	feeds   []*subGroup
	pending []*subGroup
}

func newHub(m *subManager, g command.ServerID, mode hubMode, pos position, known bool) *hub {
	h := &hub{m: m, g: g, mode: mode, pos: pos, known: known, knownCh: make(chan struct{}),
		rids: map[string][]*subGroup{}, types: map[string][]*subGroup{}}
	if known {
		close(h.knownCh)
		p := pos
		h.safe.Store(&p)
	}
	return h
}

// indexLocked adds a live sg to the fan-out lists. Call with h.mu held.
func (h *hub) indexLocked(sg *subGroup) {
	f := &sg.sub.f
	switch f.kind {
	case filterRID:
		sg.idx = len(h.rids[f.rid])
		h.rids[f.rid] = append(h.rids[f.rid], sg)
	case filterType:
		sg.idx = len(h.types[f.typ])
		h.types[f.typ] = append(h.types[f.typ], sg)
	case filterFeed:
		sg.idx = len(h.feeds)
		h.feeds = append(h.feeds, sg)
	default:
		sg.idx = len(h.server)
		h.server = append(h.server, sg)
	}
}

// unindexLocked removes sg from its fan-out list (swap with the last: order among
// subscriptions does not matter, removal stays O(1)). Call with h.mu held.
func (h *hub) unindexLocked(sg *subGroup) {
	if sg.idx < 0 {
		return
	}
	f := &sg.sub.f
	var l []*subGroup
	switch f.kind {
	case filterRID:
		l = h.rids[f.rid]
	case filterType:
		l = h.types[f.typ]
	case filterFeed:
		l = h.feeds
	default:
		l = h.server
	}
	i, last := sg.idx, len(l)-1
	l[i] = l[last]
	l[i].idx = i
	l[last] = nil
	l = l[:last]
	sg.idx = -1
	switch f.kind {
	case filterRID:
		if len(l) == 0 {
			delete(h.rids, f.rid)
		} else {
			h.rids[f.rid] = l
		}
	case filterType:
		if len(l) == 0 {
			delete(h.types, f.typ)
		} else {
			h.types[f.typ] = l
		}
	case filterFeed:
		h.feeds = l
	default:
		h.server = l
	}
}

// join counts sg as a member; an upstream hub starts its feed for it.
func (h *hub) join(sg *subGroup) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sg.sub.isEnded() {
		return // it will not leave: it never counts
	}
	sg.joined = true
	h.members++
	if h.idle != nil {
		h.idle.Stop()
		h.idle = nil
	}
	if h.mode == hubUpstream {
		h.startUpstreamLocked()
	}
}

// leave takes sg out of the hub for good (its subscription ended).
func (h *hub) leave(sg *subGroup) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !sg.joined {
		return
	}
	sg.joined = false
	h.unindexLocked(sg)
	h.unpendLocked(sg)
	h.members--
	if h.members == 0 && h.mode == hubUpstream && h.up != nil {
		u := h.up
		h.idle = time.AfterFunc(upstreamLinger, func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.members == 0 && h.up == u {
				h.stopUpstreamLocked()
			}
		})
	}
}

func (h *hub) unpendLocked(sg *subGroup) {
	if !sg.pending {
		return
	}
	sg.pending = false
	for i, p := range h.pending {
		if p == sg {
			h.pending = append(h.pending[:i], h.pending[i+1:]...)
			return
		}
	}
}

// setKnownLocked makes pos the hub's position. Call with h.mu held.
func (h *hub) setKnownLocked(pos position) {
	h.pos = pos
	p := pos
	h.safe.Store(&p)
	if !h.known {
		h.known = true
		close(h.knownCh)
	}
}

// forgetPosLocked: the hub no longer knows where it is (an upstream stopped or must
// restart elsewhere). Call with h.mu held.
func (h *hub) forgetPosLocked() {
	if h.known {
		h.known = false
		h.knownCh = make(chan struct{})
	}
}

// waitKnown waits until the hub knows its position.
func (h *hub) waitKnown(ctx context.Context, done <-chan struct{}) error {
	for {
		h.mu.Lock()
		known, ch := h.known, h.knownCh
		h.mu.Unlock()
		if known {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return command.Errorf(command.CodeUnavailable, "group %d: no copy reachable to start the subscription at", h.g)
		case <-done:
			return command.Errorf(command.CodeUnavailable, "subscription ended while it started")
		}
	}
}

// attachCurrent makes sg live from the hub's position now, which it returns; false when
// the hub lost its position meanwhile (the caller waits again).
func (h *hub) attachCurrent(sg *subGroup) (position, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.known {
		return position{}, false
	}
	sg.sub.mu.Lock()
	sg.last = h.pos
	sg.sub.mu.Unlock()
	h.attachLocked(sg)
	return h.pos, true
}

// attachLocked makes sg live at the hub's position (its last must be that position).
// Call with h.mu held.
func (h *hub) attachLocked(sg *subGroup) {
	if !sg.joined || sg.idx >= 0 {
		return
	}
	s := sg.sub
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	sg.live = true
	s.mu.Unlock()
	h.indexLocked(sg)
}

// startWorkerLocked starts sg's catch-up unless one runs already (it will see resync).
// Call with h.mu held.
func (h *hub) startWorkerLocked(sg *subGroup) {
	if sg.working || !sg.joined {
		return
	}
	sg.working = true
	go sg.catchUp()
}

// tryAttachLocked ends a catch-up that reached the hub: attached when sg is at the hub's
// position, pending when ahead of it (the hub attaches it on arrival). It reports whether
// the catch-up is over, and sets sg.resync when sg's entry at the hub's seq has another
// epoch. Call with h.mu held.
func (h *hub) tryAttachLocked(sg *subGroup, last position) bool {
	if sg.live || sg.pending {
		sg.working = false
		return true // attached (or queued to be) by an earlier look
	}
	if !sg.joined || sg.resync || !h.known {
		return !sg.joined
	}
	switch {
	case last.Seq == h.pos.Seq && last.Epoch != h.pos.Epoch:
		sg.resync = true
		return false
	case last == h.pos:
		sg.working = false
		h.attachLocked(sg)
		return true
	case last.after(h.pos):
		sg.working = false
		sg.pending, sg.pendingAt = true, last
		h.pending = append(h.pending, sg)
		return true
	}
	return false
}

// deliverLocal is publish's way in. Call with the group's lock held: it never blocks.
func (h *hub) deliverLocal(applied []store.AppliedEffect) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mode != hubLocal {
		return
	}
	now := time.Now()
	for i := range applied {
		v := viewOf(&applied[i])
		h.deliverLocked(&v, now)
	}
}

// deliverLocked fans one entry out: an event to every live subscription it matches, then
// the hub moves to it (safe last, so that a token computed meanwhile in another group
// never claims an entry whose event is not queued yet), then pending subscriptions waiting
// for it attach. Call with h.mu held.
func (h *hub) deliverLocked(v *entryView, now time.Time) {
	if h.known {
		if !v.pos.after(h.pos) {
			return // delivered already: a new source overlaps the old one
		}
		if v.pos.Seq != h.pos.Seq+1 {
			h.m.n.log.Error().Uint16("group", uint16(h.g)).Str("at", h.pos.String()).Str("got", v.pos.String()).
				Msg("entries skip seqs; every subscription of the group catches up from its position")
			h.resetLocked()
		}
	}
	var ev *event
	fan := func(l []*subGroup) {
		for i := 0; i < len(l); {
			sg := l[i]
			if sg.sub.scope != nil && !sg.sub.allows(v.typ) {
				i++ // a type its caller may not see: the subscription passes it by
				continue
			}
			if ev == nil {
				ev = newEvent(h.g, v, now)
			}
			if sg.sub.add(sg, qitem{ev: ev}, &v.pos, false, nil) {
				i++
				continue
			}
			h.unindexLocked(sg) // ended (lagged): l[i] is now another subscription
			l = l[:len(l)-1]
		}
	}
	if v.kind != evInternal {
		fan(h.server)
		if l := h.rids[v.rid]; len(l) > 0 {
			fan(l)
		}
		if l := h.types[v.typ]; len(l) > 0 && v.typ != "" {
			fan(l)
		}
	}
	fan(h.feeds)
	h.setKnownLocked(v.pos)
	if len(h.pending) > 0 {
		h.arrivedLocked(v.pos)
	}
}

// arrivedLocked attaches pending subscriptions whose position the hub just reached; one
// whose entry there has another epoch resyncs (docs/replication.md case 11). Call with h.mu
// held.
func (h *hub) arrivedLocked(p position) {
	kept := h.pending[:0]
	for _, sg := range h.pending {
		switch {
		case sg.pendingAt.after(p):
			kept = append(kept, sg)
			continue
		case sg.pendingAt == p:
			sg.pending = false
			h.attachLocked(sg)
		default:
			sg.pending, sg.resync = false, true
			h.startWorkerLocked(sg)
		}
	}
	clear(h.pending[len(kept):])
	h.pending = kept
}

// resetLocked detaches every subscription: each catches up again from the position it
// passed, which resyncs it where that position can no longer be continued from. Feeds
// end (the follower reconnects and finds out). Call with h.mu held.
func (h *hub) resetLocked() {
	var all []*subGroup
	all = append(all, h.server...)
	for _, l := range h.rids {
		all = append(all, l...)
	}
	for _, l := range h.types {
		all = append(all, l...)
	}
	for _, sg := range append([]*subGroup(nil), h.feeds...) {
		s := sg.sub
		s.mu.Lock()
		s.endLocked(ctlFeedResync)
		s.mu.Unlock()
		h.unindexLocked(sg)
	}
	for _, sg := range all {
		h.unindexLocked(sg)
		s := sg.sub
		s.mu.Lock()
		sg.last = sg.posLocked()
		sg.live = false
		s.mu.Unlock()
		h.startWorkerLocked(sg)
	}
	for _, sg := range h.pending {
		sg.pending = false
		h.startWorkerLocked(sg)
	}
	h.pending = nil
}

// switchToUpstream: this node stopped holding the group. The hub continues from its
// position through a feed from a holder; feeds it served end (their followers reconnect
// to a holder).
func (h *hub) switchToUpstream() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mode == hubUpstream {
		return
	}
	h.mode = hubUpstream
	for _, sg := range append([]*subGroup(nil), h.feeds...) {
		s := sg.sub
		s.mu.Lock()
		s.endLocked(ctlFeedResync)
		s.mu.Unlock()
		h.unindexLocked(sg)
	}
	if h.members > 0 {
		h.startUpstreamLocked()
	} else {
		h.forgetPosLocked()
	}
	h.m.n.log.Info().Uint16("group", uint16(h.g)).Str("at", h.pos.String()).Msg("subscriptions of the group continue from a holder's feed")
}

func (h *hub) modeNow() hubMode {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mode
}
