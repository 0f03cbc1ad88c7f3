package node

import (
	"context"
	"slices"
	"sync"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// subManager is a node's subscription machinery: one hub per group anyone subscribed to
// (fed by this node's copy, or by a feed from a holder), the groups the directory names
// (a `type` subscription covers them all, including ones that appear later), and the event
// side of every client connection.
type subManager struct {
	n *Node

	mu     sync.RWMutex
	hubs   map[command.ServerID]*hub
	groups map[command.ServerID]bool
	types  map[*subscription]struct{}

	sessions sync.Map // session id -> *subSession
}

func newSubManager(n *Node) *subManager {
	return &subManager{n: n, hubs: map[command.ServerID]*hub{}, groups: map[command.ServerID]bool{},
		types: map[*subscription]struct{}{}}
}

// count is the number of subscriptions open on the node's connections.
func (m *subManager) count() int {
	n := 0
	m.sessions.Range(func(_, v any) bool {
		ss := v.(*subSession)
		ss.mu.Lock()
		n += len(ss.subs)
		ss.mu.Unlock()
		return true
	})
	return n
}

// publish hands entries of group g, just applied to this node's copy, to its hub. It is
// called with the group's lock held and never blocks (see Node.publish).
func (m *subManager) publish(g command.ServerID, applied []store.AppliedEffect) {
	m.mu.RLock()
	h := m.hubs[g]
	m.mu.RUnlock()
	if h != nil {
		h.deliverLocal(applied)
	}
}

// holds reports whether the directory names this node a holder of group g (before the
// first directory, a copy on disk counts).
func (m *subManager) holds(g command.ServerID) bool {
	d := m.n.directory()
	if d == nil {
		return true
	}
	gi := d.Group(uint16(g))
	if gi == nil {
		return false
	}
	self := uint16(m.n.cfg.ID)
	if gi.Main == self {
		return true
	}
	for _, s := range gi.Siblings {
		if s.Node == self {
			return true
		}
	}
	return false
}

// hubFor returns group g's hub, making it: fed by this node's copy when it holds one,
// else by a feed from a holder.
func (m *subManager) hubFor(g command.ServerID) *hub {
	m.mu.RLock()
	h := m.hubs[g]
	m.mu.RUnlock()
	if h != nil {
		m.refresh(h)
		return h
	}
	if lg := m.n.localGroup(g); lg != nil && m.holds(g) {
		if h := m.newLocalHub(lg); h != nil {
			return h
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if h := m.hubs[g]; h != nil {
		return h
	}
	h = newHub(m, g, hubUpstream, position{}, false)
	m.hubs[g] = h
	return h
}

// newLocalHub makes the hub of a held group at its copy's applied position. The group's
// lock is held from reading that position until the hub is in the map, so publish
// delivers it exactly the entries after it.
func (m *subManager) newLocalHub(lg *group) *hub {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	pos, err := lg.appliedPosition()
	if err != nil {
		m.n.log.Error().Err(err).Uint16("group", uint16(lg.id)).Msg("cannot read the copy's position for subscriptions")
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if h := m.hubs[lg.id]; h != nil {
		return h
	}
	h := newHub(m, lg.id, hubLocal, pos, true)
	m.hubs[lg.id] = h
	return h
}

// appliedPosition is the entry the copy's committed layer is at. Call with g.mu held.
func (g *group) appliedPosition() (position, error) {
	if g.applied == 0 {
		return position{}, nil
	}
	meta, err := g.gs.Meta()
	if err != nil {
		return position{}, err
	}
	return position{Epoch: meta.EpochAt(g.applied), Seq: g.applied}, nil
}

// refresh turns an idle upstream hub of a group this node now holds back to its copy:
// with no member, there is no position to continue.
func (m *subManager) refresh(h *hub) {
	h.mu.Lock()
	idle := h.mode == hubUpstream && h.members == 0
	h.mu.Unlock()
	if !idle {
		return
	}
	lg := m.n.localGroup(h.g)
	if lg == nil || !m.holds(h.g) {
		return
	}
	lg.mu.Lock()
	defer lg.mu.Unlock()
	pos, err := lg.appliedPosition()
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mode != hubUpstream || h.members != 0 {
		return
	}
	h.stopUpstreamLocked()
	if h.idle != nil {
		h.idle.Stop()
		h.idle = nil
	}
	h.mode = hubLocal
	h.setKnownLocked(pos)
}

// directoryChanged follows a new directory: groups new to it join every `type`
// subscription (from their first entry, or the position the subscription's token gave),
// and a hub whose copy this node no longer holds continues from a holder's feed.
func (m *subManager) directoryChanged() {
	d := m.n.directory()
	if d == nil {
		return
	}
	m.mu.Lock()
	var added []command.ServerID
	for _, gi := range d.Groups {
		if g := command.ServerID(gi.Server); !m.groups[g] {
			m.groups[g] = true
			added = append(added, g)
		}
	}
	var types []*subscription
	if len(added) > 0 {
		for s := range m.types {
			types = append(types, s)
		}
	}
	hubs := make([]*hub, 0, len(m.hubs))
	for _, h := range m.hubs {
		hubs = append(hubs, h)
	}
	m.mu.Unlock()
	for _, s := range types {
		for _, g := range added {
			if sg := s.addGroup(g, s.from.posOf(g)); sg != nil {
				sg.hub.mu.Lock()
				sg.hub.startWorkerLocked(sg)
				sg.hub.mu.Unlock()
			}
		}
	}
	for _, h := range hubs {
		if h.modeNow() == hubLocal && (m.n.localGroup(h.g) == nil || !m.holds(h.g)) {
			h.switchToUpstream()
		}
	}
}

func (m *subManager) forgetType(s *subscription) {
	m.mu.Lock()
	delete(m.types, s)
	m.mu.Unlock()
}

// addGroup adds group g to s at position from and joins its hub; nil when s has the
// group already or ended.
func (s *subscription) addGroup(g command.ServerID, from position) *subGroup {
	h := s.ss.m.hubFor(g)
	sg := &subGroup{sub: s, g: g, hub: h, last: from, idx: -1}
	s.mu.Lock()
	i, found := slices.BinarySearchFunc(s.groups, g, func(x *subGroup, g command.ServerID) int { return int(x.g) - int(g) })
	if s.ended || found {
		s.mu.Unlock()
		return nil
	}
	s.groups = slices.Insert(s.groups, i, sg)
	s.mu.Unlock()
	h.join(sg)
	return sg
}

// open starts s in every group it covers: from the token's positions (catching up), or at
// each hub's position now. A hub fed from a holder may not know its position yet; open
// waits for all of them before attaching any, so the reply token names a position in
// every group. It returns that token.
func (m *subManager) open(ctx context.Context, s *subscription, from *token) (string, error) {
	var groups []command.ServerID
	if s.f.kind == filterType {
		m.directoryChanged()
		m.mu.Lock()
		m.types[s] = struct{}{}
		for g := range m.groups {
			groups = append(groups, g)
		}
		m.mu.Unlock()
		if from != nil {
			// Groups of the token this node's directory does not name yet keep their
			// positions rather than starting over when they appear.
			for _, gp := range from.Groups {
				groups = append(groups, gp.Group)
			}
		}
		slices.Sort(groups)
		groups = slices.Compact(groups)
	} else {
		groups = []command.ServerID{s.f.group}
	}
	var sgs []*subGroup
	for _, g := range groups {
		if sg := s.addGroup(g, s.from.posOf(g)); sg != nil {
			sgs = append(sgs, sg)
		}
	}
	if from == nil {
		for _, sg := range sgs {
			if err := sg.hub.waitKnown(ctx, s.done); err != nil {
				return "", err
			}
		}
	}
	t := token{Kind: s.f.kind, Hash: s.hash}
	for _, sg := range sgs {
		p := sg.lastPos()
		if from == nil {
			for {
				pos, ok := sg.hub.attachCurrent(sg)
				if ok {
					p = pos
					break
				}
				if err := sg.hub.waitKnown(ctx, s.done); err != nil {
					return "", err
				}
			}
		} else {
			sg.hub.mu.Lock()
			sg.hub.startWorkerLocked(sg)
			sg.hub.mu.Unlock()
		}
		if s.f.kind != filterType || p != (position{}) {
			t.Groups = append(t.Groups, groupPos{Group: sg.g, Pos: p})
		}
	}
	tok := encodeToken(t)
	s.mu.Lock()
	s.lastTok = tok
	s.mu.Unlock()
	return tok, nil
}
