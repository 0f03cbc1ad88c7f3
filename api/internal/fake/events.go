package fake

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/sibylhq/sibyl/command"
)

// Subscriptions in the fake: every committed change is kept in memory (b.events), and a
// subscription is an index into that log, so a resume token is just a seq ("f<seq>") and
// a subscription never lags. Enough for the API server's and the client's tests, which
// check framing, ordering after the reply, and resuming across connections.

// Outbox is api.Outbox (this package cannot import api, whose tests import it).
type Outbox interface{ Wake() }

// logged is one committed change.
type logged struct {
	seq     uint64
	kind    string
	rid     string
	typ     string
	version uint64
	res     *command.Resource
}

// fakeSub is one subscription: its filter and the index of the next change to look at.
type fakeSub struct {
	id     string
	idJSON []byte
	rid    string
	typ    string
	next   int
	held   bool
}

// eventFrame is an event as docs/protocol.md §2 sends it.
type eventFrame struct {
	Sub      json.RawMessage   `json:"sub"`
	Event    string            `json:"event"`
	RID      string            `json:"rid"`
	Resource *command.Resource `json:"resource,omitempty"`
	Version  uint64            `json:"version,omitempty"`
	Epoch    uint64            `json:"epoch"`
	Seq      uint64            `json:"seq"`
	Token    string            `json:"token"`
}

// recordLocked logs a change and wakes every connection. Call with b.mu held.
func (b *Backend) recordLocked(kind, rid, typ string, version uint64, res *command.Resource) {
	b.events = append(b.events, logged{seq: b.seq, kind: kind, rid: rid, typ: typ, version: version, res: res})
	for _, out := range b.listeners {
		out.Wake()
	}
}

// subscription answers subscribe and unsubscribe. Locks: b.mu before s.mu, as Events
// takes them (the connection's writer calls Events while requests start).
func (s *Session) subscription(req *command.Request) func() (*command.Reply, error) {
	b := s.b
	fail := func(err error) func() (*command.Reply, error) {
		return func() (*command.Reply, error) { return nil, err }
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, listening := b.listeners[s]; !listening {
		return fail(command.Errorf(command.CodeBadRequest, "%s needs a WebSocket connection", req.Op))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Op == command.OpUnsubscribe {
		sub := s.subs[req.Sub]
		if sub == nil {
			return fail(command.Errorf(command.CodeNotFound, "no subscription %q", req.Sub))
		}
		delete(s.subs, req.Sub)
		for i, o := range s.open {
			if o == sub {
				s.open = append(s.open[:i], s.open[i+1:]...)
				break
			}
		}
		return func() (*command.Reply, error) { return &command.Reply{}, nil }
	}
	if err := command.ValidateRequest(req); err != nil {
		return fail(err)
	}
	if s.subs[req.Sub] != nil {
		return fail(command.Errorf(command.CodeBadRequest, "subscription %q is open already", req.Sub))
	}
	id, _ := json.Marshal(req.Sub)
	sub := &fakeSub{id: req.Sub, idJSON: id, rid: req.RID, typ: req.Type, held: true, next: len(b.events)}
	at := b.seq
	if len(req.From) > 0 {
		var tok string
		if json.Unmarshal(req.From, &tok) != nil || !strings.HasPrefix(tok, "f") {
			return fail(command.Errorf(command.CodeBadRequest, "from %s is not a token", req.From))
		}
		seq, err := strconv.ParseUint(tok[1:], 10, 64)
		if err != nil {
			return fail(command.Errorf(command.CodeBadRequest, "from %s is not a token", req.From))
		}
		at = seq
		sub.next = 0
		for sub.next < len(b.events) && b.events[sub.next].seq <= seq {
			sub.next++
		}
	}
	s.subs[req.Sub] = sub
	s.open = append(s.open, sub)
	return func() (*command.Reply, error) { return &command.Reply{Token: token(at)}, nil }
}

func token(seq uint64) string { return "f" + strconv.FormatUint(seq, 10) }

// Subscribed lets the subscription's events go (its reply was written).
func (s *Session) Subscribed(id string) {
	s.mu.Lock()
	if sub := s.subs[id]; sub != nil {
		sub.held = false
	}
	s.mu.Unlock()
	s.b.mu.Lock()
	out := s.b.listeners[s]
	s.b.mu.Unlock()
	if out != nil {
		out.Wake()
	}
}

// Events appends up to max frames of the session's subscriptions.
func (s *Session) Events(dst []json.RawMessage, max int) []json.RawMessage {
	b := s.b
	b.mu.Lock()
	defer b.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sub := range s.open {
		for !sub.held && sub.next < len(b.events) && len(dst) < max {
			e := b.events[sub.next]
			sub.next++
			if (sub.rid != "" && e.rid != sub.rid) || (sub.typ != "" && e.typ != sub.typ) {
				continue
			}
			f := eventFrame{Sub: sub.idJSON, Event: e.kind, RID: e.rid, Resource: e.res, Epoch: 1, Seq: e.seq, Token: token(e.seq)}
			if e.res == nil {
				f.Version = e.version
			}
			frame, _ := json.Marshal(f)
			dst = append(dst, frame)
		}
	}
	return dst
}
