package node

import (
	"context"
	"encoding/json"

	"github.com/sibylhq/sibyl/command"
)

// The subscription side of a client Session (docs/protocol.md §2 subscribe/unsubscribe). Its
// state lives in the subManager, keyed by session id, so that Session itself stays the
// request router it was.

// NewEventSession starts a client connection's session that can subscribe: its events are
// announced to out (Wake) and pulled with Events. NewSession's sessions cannot subscribe
// (REST calls, tests).
func (n *Node) NewEventSession(out Outbox) *Session {
	s := n.newSession(false)
	if out != nil {
		n.subs.sessions.Store(s.id, newSubSession(n.subs, out))
	}
	return s
}

func (s *Session) events() *subSession {
	if v, ok := s.n.subs.sessions.Load(s.id); ok {
		return v.(*subSession)
	}
	return nil
}

// Events appends to dst up to max event frames ready to send (api.Session). The
// connection's writer calls it after a Wake, so frames leave at the pace the client reads.
func (s *Session) Events(dst []json.RawMessage, max int) []json.RawMessage {
	if ss := s.events(); ss != nil {
		return ss.frames(dst, max)
	}
	return dst
}

// Subscribed is called once the successful reply to subscribe request id was written: the
// subscription's events, held until then, may go (so none precedes the reply).
func (s *Session) Subscribed(id string) {
	if ss := s.events(); ss != nil {
		if sub := ss.get(id); sub != nil {
			sub.release()
		}
	}
}

// closeEvents ends the session's subscriptions (the connection closed).
func (s *Session) closeEvents() {
	if v, ok := s.n.subs.sessions.LoadAndDelete(s.id); ok {
		v.(*subSession).close()
	}
}

// subscriptionOp starts subscribe or unsubscribe.
func (s *Session) subscriptionOp(ctx context.Context, req *command.Request) func() (*command.Reply, error) {
	ss := s.events()
	if ss == nil {
		return failed(command.Errorf(command.CodeBadRequest, "%s needs a WebSocket connection", req.Op))
	}
	if req.Op == command.OpUnsubscribe {
		return s.unsubscribe(ss, req)
	}
	return s.subscribe(ctx, ss, req)
}

// subscribe checks the request now (filter, token, limits) and starts the subscription in
// the returned function, which may wait for a holder's position (write timeout). req.Sub
// is the subscription's name: the API server sets it to the request's id.
func (s *Session) subscribe(ctx context.Context, ss *subSession, req *command.Request) func() (*command.Reply, error) {
	m := s.n.subs
	if req.Sub == "" {
		return failed(command.Errorf(command.CodeBadRequest, "subscribe needs an id to name its events"))
	}
	f, err := m.filterOf(req)
	if err != nil {
		return failed(err)
	}
	var from *token
	if len(req.From) > 0 && string(req.From) != "null" {
		var str string
		if err := json.Unmarshal(req.From, &str); err != nil {
			return failed(command.Errorf(command.CodeBadRequest, "from must be a token string, got %.64s", req.From))
		}
		t, err := decodeToken(str)
		if err == nil {
			err = t.check(f)
		}
		if err != nil {
			return failed(command.Errorf(command.CodeBadRequest, "from %.64q: %v", str, err))
		}
		from = &t
	}
	sub := newSubscription(ss, req.Sub, f, subBuffer)
	sub.from = from
	sub.scope = req.Scope
	if err := ss.add(sub); err != nil {
		return failed(err)
	}
	return func() (*command.Reply, error) {
		octx, cancel := context.WithTimeout(ctx, s.n.cfg.WriteTimeout)
		defer cancel()
		tok, err := m.open(octx, sub, from)
		if err != nil {
			sub.end()
			return nil, err
		}
		return &command.Reply{Token: tok}, nil
	}
}

// filterOf reads a subscribe request's filter (validated already: exactly one of rid,
// server, type) and checks its group exists.
func (m *subManager) filterOf(req *command.Request) (filter, *command.Error) {
	if m.n.directory() == nil {
		return filter{}, command.Errorf(command.CodeUnavailable, "node %d has not joined its location controller yet", m.n.cfg.ID)
	}
	var f filter
	switch {
	case req.RID != "":
		g, err := command.GroupOf(req.RID)
		if err != nil {
			return f, command.AsError(err)
		}
		f = filter{kind: filterRID, group: g, rid: req.RID}
	case req.Server != nil:
		f = filter{kind: filterServer, group: command.ServerID(*req.Server)}
	default:
		return filter{kind: filterType, typ: req.Type}, nil
	}
	if m.n.directoryGroup(f.group) == nil {
		return f, command.Errorf(command.CodeNotFound, "no group %d", f.group)
	}
	return f, nil
}

// unsubscribe ends a subscription at once; its reply carries the token of the last frame
// handed to the connection (an extra field), from which a later subscribe continues.
func (s *Session) unsubscribe(ss *subSession, req *command.Request) func() (*command.Reply, error) {
	sub := ss.get(req.Sub)
	if sub == nil {
		return failed(command.Errorf(command.CodeNotFound, "no subscription %q on this connection", req.Sub))
	}
	sub.mu.Lock()
	tok := sub.lastTok
	if !sub.ended {
		sub.ended = true
		close(sub.done)
	}
	sub.queue = nil
	sub.mu.Unlock()
	sub.detach()
	return func() (*command.Reply, error) { return &command.Reply{Token: tok}, nil }
}
