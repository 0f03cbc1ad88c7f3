package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sibylhq/sibyl/command"
)

// Feeds: a node serves subscriptions of a group it holds no copy of from one feed per
// group, /v1/internal/feed, opened to a node that holds a copy. The holder serves it as a
// subscription of its own (filterFeed: every entry, internal ones too, so that positions
// are the same on both sides), from its own log only, never from a feed of its own. A
// follower that loses its feed reconnects from the last position it delivered, to the
// same or another holder; the holder checks that position like any resume token.

// feedHeartbeat is how often an idle feed says where the holder is; the follower gives
// up on a feed silent for three of them.
const feedHeartbeat = time.Second

// feedFrame is one frame of a feed, holder to follower.
type feedFrame struct {
	// At: in the first frame, the position the feed continues after; later, in heartbeats,
	// the holder's position.
	At *position `json:"at,omitempty"`
	// Entries are committed entries in commit order.
	Entries []feedEntry `json:"entries,omitempty"`
	// Resync: the holder cannot continue from the position asked for (compacted, or its
	// entry there has another epoch). The feed ends.
	Resync bool `json:"resync,omitempty"`
}

// feedEntry is one entry of a feed: a position, and for resource entries what the
// fan-out needs (K is an eventKind; 0 is an internal entry).
type feedEntry struct {
	E   uint64          `json:"e"`
	S   uint64          `json:"s"`
	K   eventKind       `json:"k,omitempty"`
	RID string          `json:"rid,omitempty"`
	T   string          `json:"t,omitempty"`
	V   uint64          `json:"v,omitempty"`
	Res json.RawMessage `json:"res,omitempty"`
	// Tk is a ticket event's live ticket (absent: released or expired).
	Tk *command.TicketInfo `json:"tk,omitempty"`
}

func (e *feedEntry) view() entryView {
	return entryView{pos: position{Epoch: e.E, Seq: e.S}, kind: e.K, rid: e.RID, typ: e.T, version: e.V, resJSON: e.Res,
		ticket: e.Tk}
}

// serveFeed is the holder's side of a feed: ?group=G and either &current=1 (start at this
// copy's position) or &epoch=E&seq=S (continue after that entry).
func (n *Node) serveFeed(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	g, gerr := command.ParseServerID(q.Get("group"))
	if gerr != nil {
		http.Error(w, "bad group: "+gerr.Error(), http.StatusBadRequest)
		return
	}
	var err error
	var from position
	current := q.Get("current") == "1"
	if !current {
		from.Epoch, err = strconv.ParseUint(q.Get("epoch"), 10, 64)
		if err == nil {
			from.Seq, err = strconv.ParseUint(q.Get("seq"), 10, 64)
		}
		if err != nil {
			http.Error(w, fmt.Sprintf("bad position epoch=%q seq=%q", q.Get("epoch"), q.Get("seq")), http.StatusBadRequest)
			return
		}
	}
	if n.localGroup(g) == nil {
		http.Error(w, fmt.Sprintf("node %d holds no copy of group %d", n.cfg.ID, g), http.StatusNotFound)
		return
	}
	h := n.subs.hubFor(g)
	if h.modeNow() != hubLocal {
		http.Error(w, fmt.Sprintf("node %d does not serve group %d from a copy", n.cfg.ID, g), http.StatusConflict)
		return
	}
	conn, release, ok := n.acceptInternal(w, r, 0)
	if !ok {
		return
	}
	defer release()

	wake := make(wakeChan, 1)
	ss := newSubSession(n.subs, wake)
	defer ss.close()
	s := newSubscription(ss, "feed", filter{kind: filterFeed, group: g}, feedBuffer)
	s.held = false
	if ss.add(s) != nil {
		return
	}
	sg := s.addGroup(g, from)
	start := from
	if current {
		p, ok := h.attachCurrent(sg)
		if !ok {
			return
		}
		start = p
	} else {
		h.mu.Lock()
		h.startWorkerLocked(sg)
		h.mu.Unlock()
	}
	conn.SetWriteDeadline(time.Now().Add(2 * feedHeartbeat))
	if err := conn.WriteJSON(feedFrame{At: &start}); err != nil {
		return
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	beat := time.NewTicker(feedHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-wake:
		case <-beat.C:
			h.mu.Lock()
			at := h.pos
			h.mu.Unlock()
			conn.SetWriteDeadline(time.Now().Add(2 * feedHeartbeat))
			if conn.WriteJSON(feedFrame{At: &at}) != nil {
				return
			}
			continue
		case <-readerDone:
			return
		case <-n.ctx.Done():
			return
		}
		for {
			var f feedFrame
			end := false
			got := ss.pull(512, func(_ *subscription, it *qitem) {
				switch it.ctl {
				case ctlNone:
					f.Entries = append(f.Entries, feedEntryOf(it.ev))
				case ctlFeedResync:
					f.Resync, end = true, true
				default: // lagged: the follower was too slow; it reconnects from its position
					end = true
				}
			})
			if got == 0 {
				break
			}
			if len(f.Entries) > 0 || f.Resync {
				conn.SetWriteDeadline(time.Now().Add(2 * feedHeartbeat))
				if conn.WriteJSON(&f) != nil {
					return
				}
			}
			if end {
				return
			}
		}
	}
}

func feedEntryOf(ev *event) feedEntry {
	e := feedEntry{E: ev.pos.Epoch, S: ev.pos.Seq, K: ev.kind, RID: ev.rid, T: ev.typ, V: ev.version, Tk: ev.ticket}
	if ev.kind == evCreated || ev.kind == evUpdated {
		e.Res = ev.resourceJSON()
	}
	return e
}

// holders lists the addresses of the nodes holding a copy of group g, the main first.
func (m *subManager) holders(g command.ServerID) []string {
	gi := m.n.directoryGroup(g)
	if gi == nil {
		return nil
	}
	self := uint16(m.n.cfg.ID)
	var ids []uint16
	if gi.Main != 0 && gi.Main != self {
		ids = append(ids, gi.Main)
	}
	for _, s := range gi.Siblings {
		// A stale copy serves nothing; it may not even hold the group any more.
		if s.Node != self && s.Node != gi.Main && s.State != command.SiblingStale {
			ids = append(ids, s.Node)
		}
	}
	var addrs []string
	for _, id := range ids {
		if a := m.n.nodeAddr(id); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// dialFeed opens a feed of group g from the attempt-th holder (in turn), continuing after
// from, or at the holder's position when current. It returns the connection and the
// position the holder starts after.
func (m *subManager) dialFeed(g command.ServerID, from position, current bool, attempt int) (*websocket.Conn, position, error) {
	addrs := m.holders(g)
	if len(addrs) == 0 {
		return nil, position{}, fmt.Errorf("group %d: no other node holds a copy", g)
	}
	addr := addrs[attempt%len(addrs)]
	u := m.n.peerURL("ws", addr, fmt.Sprintf("/v1/internal/feed?group=%d&epoch=%d&seq=%d", g, from.Epoch, from.Seq))
	if current {
		u += "&current=1"
	}
	d := m.n.wsDialer(2 * feedHeartbeat)
	conn, resp, err := d.Dial(u, m.n.internalHeader())
	if err != nil {
		if resp != nil {
			return nil, position{}, fmt.Errorf("feed of group %d from %s: HTTP %s", g, addr, resp.Status)
		}
		return nil, position{}, fmt.Errorf("feed of group %d from %s: %w", g, addr, err)
	}
	conn.SetReadLimit(64 << 20)
	conn.SetReadDeadline(time.Now().Add(3 * feedHeartbeat))
	var hello feedFrame
	if err := conn.ReadJSON(&hello); err != nil || hello.At == nil {
		conn.Close()
		return nil, position{}, fmt.Errorf("feed of group %d from %s: no opening frame (%v)", g, addr, err)
	}
	return conn, *hello.At, nil
}

// readFeed reads one frame of a feed, giving up when the holder stays silent for three
// heartbeats.
func readFeed(conn *websocket.Conn) (*feedFrame, error) {
	conn.SetReadDeadline(time.Now().Add(3 * feedHeartbeat))
	var f feedFrame
	if err := conn.ReadJSON(&f); err != nil {
		return nil, err
	}
	return &f, nil
}

// upstream is the one feed of an upstream hub.
type upstream struct {
	h    *hub
	stop chan struct{}
}

// startUpstreamLocked starts the hub's feed unless it runs. Call with h.mu held.
func (h *hub) startUpstreamLocked() {
	if h.up != nil {
		return
	}
	u := &upstream{h: h, stop: make(chan struct{})}
	h.up = u
	go u.run()
}

// stopUpstreamLocked stops the feed; the hub's position goes stale, so it is forgotten and
// the next subscriber starts at a holder's position. Call with h.mu held.
func (h *hub) stopUpstreamLocked() {
	if h.up == nil {
		return
	}
	close(h.up.stop)
	h.up = nil
	h.forgetPosLocked()
}

// run keeps the feed open, reconnecting from the hub's position (to the holders in turn)
// until stopped.
func (u *upstream) run() {
	h := u.h
	n := h.m.n
	attempt, backoff := 0, 20*time.Millisecond
	for {
		h.mu.Lock()
		if h.up != u || n.ctx.Err() != nil {
			h.mu.Unlock()
			return
		}
		from, known := h.pos, h.known
		h.mu.Unlock()
		conn, at, err := h.m.dialFeed(h.g, from, !known, attempt)
		if err == nil {
			if u.stream(conn, at) {
				attempt, backoff = 0, 20*time.Millisecond
			}
			conn.Close()
			err = fmt.Errorf("feed ended")
		}
		attempt++
		n.log.Debug().Err(err).Uint16("group", uint16(h.g)).Msg("upstream feed down; reconnecting")
		t := time.NewTimer(backoff)
		select {
		case <-u.stop:
			t.Stop()
			return
		case <-n.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, time.Second)
	}
}

// stream delivers one feed connection's entries to the hub; it reports whether the
// connection delivered anything (then the next reconnect is immediate).
func (u *upstream) stream(conn *websocket.Conn, at position) bool {
	h := u.h
	progressed := false
	h.mu.Lock()
	if h.up == u && !h.known {
		h.setKnownLocked(at)
	}
	h.mu.Unlock()
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-u.stop:
			conn.Close()
		case <-stopped:
		}
	}()
	for {
		f, err := readFeed(conn)
		if err != nil {
			return progressed
		}
		h.mu.Lock()
		if h.up != u {
			h.mu.Unlock()
			return progressed
		}
		if f.Resync {
			h.m.n.log.Warn().Uint16("group", uint16(h.g)).Str("at", h.pos.String()).
				Msg("holder cannot continue the group's feed from this position; subscriptions resync")
			h.resetLocked()
			h.forgetPosLocked()
			h.mu.Unlock()
			return true
		}
		now := time.Now()
		for i := range f.Entries {
			v := f.Entries[i].view()
			h.deliverLocked(&v, now)
			progressed = true
		}
		h.mu.Unlock()
	}
}
