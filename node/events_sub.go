package node

import (
	"encoding/json"
	"strconv"
	"sync"

	"github.com/sibylhq/sibyl/command"
)

// Outbox is the connection a session's events leave on. api.Outbox has the same method,
// so the API server's connection is one; node does not import api.
type Outbox interface {
	// Wake says frames are ready: the connection's writer will call Session.Events. It
	// never blocks, because the fan-out calls it with a group's lock held.
	Wake()
}

// wakeChan is an Outbox for this package's own writers (feeds, tests, benchmarks).
type wakeChan chan struct{}

func (w wakeChan) Wake() {
	select {
	case w <- struct{}{}:
	default:
	}
}

// Limits of one connection's subscriptions.
const (
	// maxSubsPerSession is the default of Config.MaxSubs: more get rate_limited
	// (docs/design.md "Security").
	maxSubsPerSession = 1000
	// subBuffer is how many frames a subscription may have waiting for its connection
	// before it gets lagged and ends.
	subBuffer = 1024
	// feedBuffer is the same for a node-to-node feed, which carries every entry.
	feedBuffer = 16384
)

// subSession is the event side of one connection: its subscriptions by id and, in order,
// the ones with frames ready. The connection's writer pulls frames (pull), so no goroutine
// runs per subscription, and a slow connection slows only its own subscriptions.
type subSession struct {
	m   *subManager
	out Outbox

	mu     sync.Mutex
	subs   map[string]*subscription
	ready  []*subscription
	closed bool
	// plain holds frames that belong to no subscription (an admin call's progress),
	// sent ahead of subscription events; each closes its taken channel once pulled.
	plain []plainFrame
}

type plainFrame struct {
	frame json.RawMessage
	taken chan struct{}
}

// push queues a frame outside any subscription and returns a channel closed once the
// connection's writer has taken it.
func (ss *subSession) push(frame json.RawMessage) <-chan struct{} {
	taken := make(chan struct{})
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		close(taken)
		return taken
	}
	ss.plain = append(ss.plain, plainFrame{frame: frame, taken: taken})
	ss.mu.Unlock()
	ss.out.Wake()
	return taken
}

// maxSubs is the node's limit of subscriptions per connection.
func (m *subManager) maxSubs() int {
	if m.n.cfg.MaxSubs > 0 {
		return m.n.cfg.MaxSubs
	}
	return maxSubsPerSession
}

func newSubSession(m *subManager, out Outbox) *subSession {
	return &subSession{m: m, out: out, subs: map[string]*subscription{}}
}

// add registers s under its id.
func (ss *subSession) add(s *subscription) *command.Error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	switch {
	case ss.closed:
		return command.Errorf(command.CodeUnavailable, "the connection is closing")
	case ss.subs[s.id] != nil:
		return command.Errorf(command.CodeBadRequest, "subscription %q is already open on this connection", s.id)
	case len(ss.subs) >= ss.m.maxSubs():
		e := command.Errorf(command.CodeRateLimited, "more than %d subscriptions on this connection", ss.m.maxSubs())
		e.RetryAfterMs = 1000
		return e
	}
	ss.subs[s.id] = s
	return nil
}

func (ss *subSession) get(id string) *subscription {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.subs[id]
}

func (ss *subSession) remove(s *subscription) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.subs[s.id] == s {
		delete(ss.subs, s.id)
	}
}

// close ends every subscription of the connection.
func (ss *subSession) close() {
	ss.mu.Lock()
	ss.closed = true
	for _, f := range ss.plain {
		close(f.taken)
	}
	ss.plain = nil
	subs := make([]*subscription, 0, len(ss.subs))
	for _, s := range ss.subs {
		subs = append(subs, s)
	}
	ss.mu.Unlock()
	for _, s := range subs {
		s.end()
	}
}

// pull hands up to max queued frames to fn: each subscription's in order, subscriptions in
// turn. It runs on the connection's writer, without any lock held while fn runs.
func (ss *subSession) pull(max int, fn func(s *subscription, it *qitem)) int {
	var batch [64]qitem
	n := 0
	for n < max {
		ss.mu.Lock()
		if len(ss.ready) == 0 {
			ss.ready = nil
			ss.mu.Unlock()
			break
		}
		s := ss.ready[0]
		ss.ready[0] = nil
		ss.ready = ss.ready[1:]
		ss.mu.Unlock()

		s.mu.Lock()
		k := copy(batch[:min(len(batch), max-n)], s.queue)
		clear(s.queue[:k])
		s.queue = s.queue[k:]
		if len(s.queue) == 0 {
			s.queue, s.inReady = nil, false // an idle subscription holds no buffer
		} else {
			ss.mu.Lock()
			ss.ready = append(ss.ready, s)
			ss.mu.Unlock()
		}
		if s.space != nil && len(s.queue) <= s.max/2 {
			close(s.space)
			s.space = nil
		}
		terminal := false
		if k > 0 {
			last := &batch[k-1]
			s.lastTok = s.itemToken(last)
			terminal = last.ctl == ctlLagged || last.ctl == ctlFeedResync
		}
		s.mu.Unlock()
		for i := 0; i < k; i++ {
			fn(s, &batch[i])
			batch[i] = qitem{}
		}
		n += k
		if terminal {
			s.detach()
		}
	}
	return n
}

// subscription is one subscribe request: its filter, its position in every group it
// covers, and the frames waiting for its connection. Memory when idle: this struct, one
// subGroup per group and the index entries (a few hundred bytes for a rid or server
// subscription); the buffer exists only while frames wait.
type subscription struct {
	ss     *subSession
	id     string
	idJSON []byte
	f      filter
	hash   uint32
	max    int
	done   chan struct{} // closed when the subscription ends
	from   *token        // the token it resumed from, if any
	// scope restricts the events to the resource types its caller may subscribe to
	// (command.TypeAllowed; nil: every type). Set before the subscription opens.
	scope []string

	mu      sync.Mutex
	queue   []qitem
	groups  []*subGroup // ascending by group
	held    bool        // until the subscribe reply is written (Subscribed)
	ended   bool
	inReady bool
	space   chan struct{} // made when a catch-up waits for room, closed when there is
	lastTok string        // the token of the last frame pulled (or of the reply)
}

func newSubscription(ss *subSession, id string, f filter, max int) *subscription {
	return &subscription{ss: ss, id: id, idJSON: appendJSONString(nil, id), f: f, hash: f.hash(), max: max,
		done: make(chan struct{}), held: true}
}

// subGroup is a subscription's state in one group.
type subGroup struct {
	sub *subscription
	g   command.ServerID
	hub *hub
	// last: every matching entry at or before it is queued or sent, none after it.
	// Guarded by sub.mu.
	last position
	// Guarded by hub.mu; live is also guarded by sub.mu (both are held to change it).
	live      bool
	joined    bool // counted in hub.members
	idx       int  // position in the hub's index list, -1 when not indexed
	pending   bool // waits in hub.pending for the hub to reach pendingAt
	pendingAt position
	working   bool // a catch-up goroutine runs for it
	resync    bool // its catch-up must start with a resync
	// attempts counts failed reads from holders, to try them in turn (catch-up goroutine).
	attempts int
}

// posLocked is the position the subscription has passed in sg's group. A live one has
// passed everything the hub finished delivering (safe) even without a match: entries up to
// safe that matched are queued already, later ones are not (see hub.deliverLocked). Call
// with sub.mu held.
func (sg *subGroup) posLocked() position {
	if sg.live {
		if p := sg.hub.safe.Load(); p != nil {
			return laterOf(sg.last, *p)
		}
	}
	return sg.last
}

func (sg *subGroup) lastPos() position {
	sg.sub.mu.Lock()
	defer sg.sub.mu.Unlock()
	return sg.last
}

// tokenLocked is the subscription's token now. Call with s.mu held.
func (s *subscription) tokenLocked() string {
	t := token{Kind: s.f.kind, Hash: s.hash}
	for _, sg := range s.groups {
		p := sg.posLocked()
		if s.f.kind == filterType && p == (position{}) {
			continue // absent: from the first entry, the same thing
		}
		t.Groups = append(t.Groups, groupPos{Group: sg.g, Pos: p})
	}
	return encodeToken(t)
}

// itemToken is the token a frame carries.
func (s *subscription) itemToken(it *qitem) string {
	if it.tok != "" || it.ev == nil {
		return it.tok
	}
	return encodeToken(token{Kind: s.f.kind, Hash: s.hash, Groups: []groupPos{{Group: it.ev.group, Pos: it.ev.pos}}})
}

// readyLocked puts the subscription on its connection's ready list. Call with s.mu held.
func (s *subscription) readyLocked() {
	if s.held || s.inReady || len(s.queue) == 0 {
		return
	}
	s.inReady = true
	s.ss.mu.Lock()
	s.ss.ready = append(s.ss.ready, s)
	s.ss.mu.Unlock()
	if s.ss.out != nil {
		s.ss.out.Wake()
	}
}

// add queues it for sg and, when last is set, moves sg there. A live push (wait false)
// never blocks: a full buffer ends the subscription with lagged, whose token is the
// position before this entry, so a resume loses nothing. A catch-up push waits for room
// instead, so catching up never lags. It returns false once the subscription ended.
func (s *subscription) add(sg *subGroup, it qitem, last *position, wait bool, stop <-chan struct{}) bool {
	for {
		s.mu.Lock()
		if s.ended {
			s.mu.Unlock()
			return false
		}
		if len(s.queue) < s.max {
			if last != nil {
				sg.last = *last
			}
			if it.ctl != ctlNone || (it.ev != nil && s.f.kind == filterType) {
				it.tok = s.tokenLocked()
			}
			s.queue = append(s.queue, it)
			s.readyLocked()
			s.mu.Unlock()
			return true
		}
		if !wait {
			s.endLocked(ctlLagged)
			s.mu.Unlock()
			return false
		}
		if s.space == nil {
			s.space = make(chan struct{})
		}
		ch := s.space
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.done:
			return false
		case <-stop:
			return false
		}
	}
}

// advance moves sg to p after entries that matched nothing. Call without locks.
func (s *subscription) advance(sg *subGroup, p position) {
	s.mu.Lock()
	if p.after(sg.last) {
		sg.last = p
	}
	s.mu.Unlock()
}

// endLocked ends the subscription; a terminal frame (lagged, feed resync) is queued last
// (one past the buffer) with the token of everything before it. Call with s.mu held.
func (s *subscription) endLocked(ctl ctlKind) {
	if s.ended {
		return
	}
	if ctl != ctlNone {
		s.queue = append(s.queue, qitem{ctl: ctl, tok: s.tokenLocked()})
		s.readyLocked()
	}
	s.ended = true
	close(s.done)
}

// end stops the subscription at once (unsubscribe, connection closed): queued frames are
// dropped and it leaves its hubs.
func (s *subscription) end() {
	s.mu.Lock()
	if !s.ended {
		s.ended = true
		close(s.done)
	}
	s.queue = nil
	s.mu.Unlock()
	s.detach()
}

// detach takes an ended subscription out of its hubs and its session.
func (s *subscription) detach() {
	s.mu.Lock()
	groups := append([]*subGroup(nil), s.groups...)
	s.mu.Unlock()
	for _, sg := range groups {
		sg.hub.leave(sg)
	}
	s.ss.remove(s)
	if s.f.kind == filterType {
		s.ss.m.forgetType(s)
	}
}

// allows reports whether the subscription's caller may see an event of resource type typ.
func (s *subscription) allows(typ string) bool { return command.TypeAllowed(s.scope, typ) }

func (s *subscription) isEnded() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// release lets the subscription's frames go out: its reply was written.
func (s *subscription) release() {
	s.mu.Lock()
	s.held = false
	s.readyLocked()
	s.mu.Unlock()
}

// appendFrame appends it as a client event frame (docs/protocol.md §2).
func (s *subscription) appendFrame(b []byte, it *qitem) []byte {
	b = append(b, `{"sub":`...)
	b = append(b, s.idJSON...)
	switch it.ctl {
	case ctlNone:
		it.ev.encode()
		b = append(b, ',')
		b = append(b, it.ev.core...)
	case ctlResync:
		b = append(b, `,"event":"resync","server":`...)
		b = strconv.AppendUint(b, uint64(it.page.group), 10)
		b = append(b, `,"resources":[`...)
		for i, r := range it.page.resources {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, r...)
		}
		b = append(b, `],"final":`...)
		b = strconv.AppendBool(b, it.page.final)
	default:
		b = append(b, `,"event":"lagged"`...)
	}
	b = append(b, `,"token":`...)
	b = appendJSONString(b, s.itemToken(it))
	return append(b, '}')
}

// frames appends up to max client frames of ss to dst.
func (ss *subSession) frames(dst []json.RawMessage, max int) []json.RawMessage {
	ss.mu.Lock()
	for len(ss.plain) > 0 && max > 0 {
		f := ss.plain[0]
		ss.plain = ss.plain[1:]
		dst = append(dst, f.frame)
		close(f.taken)
		max--
	}
	ss.mu.Unlock()
	ss.pull(max, func(s *subscription, it *qitem) {
		dst = append(dst, s.appendFrame(make([]byte, 0, 256), it))
	})
	return dst
}
