package client

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Filter selects a subscription's events; set exactly one field.
type Filter struct {
	RID    string
	Server command.ServerID
	Type   string
}

// Event is one event frame of a subscription (docs/protocol.md §2): created, updated, deleted
// (with Version, the tombstone's, as an extra), ticket (Ticket nil: released or expired),
// or resync (Resources of Server's group, Final on the last page). Raw is the frame as
// received.
type Event struct {
	Sub       string              `json:"sub"`
	Kind      string              `json:"event"`
	RID       string              `json:"rid,omitempty"`
	Resource  *command.Resource   `json:"resource,omitempty"`
	Version   uint64              `json:"version,omitempty"`
	Ticket    *command.TicketInfo `json:"ticket,omitempty"`
	Epoch     uint64              `json:"epoch,omitempty"`
	Seq       uint64              `json:"seq,omitempty"`
	Token     string              `json:"token,omitempty"`
	Resources []command.Resource  `json:"resources,omitempty"`
	Final     bool                `json:"final,omitempty"`
	Server    uint16              `json:"server,omitempty"`
	Raw       json.RawMessage     `json:"-"`
}

// maxPendingEvents bounds the events a subscription holds between the connection and
// its consumer. Beyond it the client drops its server-side subscription and opens it
// again from the last event it holds once the consumer caught up: a slow consumer costs
// a resubscribe, never a gap and never the connection's other replies.
const maxPendingEvents = 4096

// Subscription delivers the events of one filter on Events, in order, each once. It
// resumes by itself from the last event it received when its connection drops (on
// another node, through the client's addresses), when the server ends it with lagged, or
// when its consumer falls behind; the consumer sees no gap and no repeat. Events closes
// when the subscription ends: Close, or a failure that retrying cannot mend (Err).
type Subscription struct {
	c        *Client
	f        Filter
	events   chan Event
	done     chan struct{} // closed by Close
	finished chan struct{} // closed when run returns
	closeMu  sync.Once

	mu       sync.Mutex
	q        []Event
	signal   chan struct{} // (capacity 1) an event or a stream state change
	accepted string        // token of the last event taken into q: where a resume starts
	err      error
	cur      *stream
}

// stream is one server-side subscription, on one connection.
type stream struct {
	cn    *conn
	id    string
	ended bool // lagged, or dropped by the client for a slow consumer
}

// Subscribe opens a subscription of f at the position from (a token of an earlier event
// of the same filter), or at the current position when from is "". It fails when the
// first subscribe fails in a way retrying within ctx cannot mend (bad filter or token,
// unknown group).
func (c *Client) Subscribe(ctx context.Context, f Filter, from string) (*Subscription, error) {
	s := &Subscription{c: c, f: f, events: make(chan Event, 16), done: make(chan struct{}),
		finished: make(chan struct{}), signal: make(chan struct{}, 1), accepted: from}
	for attempt := 0; ; attempt++ {
		err := s.open(ctx)
		if err == nil {
			break
		}
		if !retryable(err) || ctx.Err() != nil {
			return nil, err
		}
		if err := sleepCtx(ctx, c.backoff(attempt)); err != nil {
			return nil, err
		}
	}
	go s.run()
	return s, nil
}

// Events is the channel of events; it closes when the subscription ends.
func (s *Subscription) Events() <-chan Event { return s.events }

// Token is the resume token of the last event received: Subscribe with it continues
// right after that event.
func (s *Subscription) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Err says why the subscription ended (nil after Close).
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the subscription; Events closes.
func (s *Subscription) Close() error {
	s.closeMu.Do(func() { close(s.done) })
	<-s.finished
	return nil
}

func (s *Subscription) request() *command.Request {
	r := &command.Request{Op: command.OpSubscribe, RID: s.f.RID, Type: s.f.Type}
	if s.f.Server != 0 {
		v := int64(s.f.Server)
		r.Server = &v
	}
	s.mu.Lock()
	if s.accepted != "" {
		r.From, _ = json.Marshal(s.accepted)
	}
	s.mu.Unlock()
	return r
}

// open subscribes on the client's connection (dialling one if needed) from the last
// accepted token.
func (s *Subscription) open(ctx context.Context) error {
	cn, err := s.c.connect(ctx)
	if err != nil {
		return err
	}
	st := &stream{cn: cn}
	rep, id, err := cn.subscribe(ctx, s.request(), s.c.opts.RequestTimeout, s.c.opts.MaxFrameBytes,
		func(frame []byte) { s.onFrame(st, frame) })
	if err != nil {
		return err
	}
	s.mu.Lock()
	st.id = id
	s.cur = st
	if s.accepted == "" {
		s.accepted = rep.Token
	}
	s.mu.Unlock()
	return nil
}

// onFrame takes one event of stream st from the connection's read loop; it never blocks.
func (s *Subscription) onFrame(st *stream, frame []byte) {
	var ev Event
	if json.Unmarshal(frame, &ev) != nil {
		return
	}
	ev.Raw = frame
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.ended {
		return
	}
	switch {
	case ev.Kind == "lagged":
		// The server ended it; its token is the last event it sent, which is queued here
		// and moves the token when the consumer takes it.
		st.ended = true
	case len(s.q) >= maxPendingEvents:
		st.ended = true // dropped; resubscribed from accepted once the consumer caught up
		go st.cn.roundTrip(context.Background(), &command.Request{Op: command.OpUnsubscribe, Sub: st.id},
			s.c.opts.RequestTimeout, s.c.opts.MaxFrameBytes)
	default:
		// The token moves only when the consumer takes the event (run): an event received
		// but not handed over when the subscription is closed must not be skipped by a
		// resume from Token().
		s.q = append(s.q, ev)
	}
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// run hands events to the consumer and reopens the subscription when its stream ends,
// once the events already received are handed over.
func (s *Subscription) run() {
	defer close(s.finished)
	defer close(s.events)
	defer s.stop()
	for attempt := 0; ; {
		s.mu.Lock()
		if len(s.q) > 0 {
			ev := s.q[0]
			s.q[0] = Event{}
			s.q = s.q[1:]
			if len(s.q) == 0 {
				s.q = nil
			}
			s.mu.Unlock()
			select {
			case s.events <- ev:
				if ev.Token != "" {
					s.mu.Lock()
					s.accepted = ev.Token
					s.mu.Unlock()
				}
				continue
			case <-s.done:
				return
			}
		}
		st := s.cur
		s.mu.Unlock()
		if st != nil && !st.ended && st.cn.alive() {
			select {
			case <-s.signal:
			case <-st.cn.dead:
			case <-s.done:
				return
			}
			continue
		}
		if st != nil {
			st.cn.dropSub(st.id)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-s.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := s.open(ctx)
		cancel()
		if err == nil {
			attempt = 0
			continue
		}
		if !retryable(err) && !errors.Is(err, context.Canceled) {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
		if sleepCtxDone(s.done, s.c.backoff(attempt)) != nil {
			return
		}
		attempt++
	}
}

// stop unsubscribes the current stream, best effort (the connection may be gone).
func (s *Subscription) stop() {
	s.mu.Lock()
	st := s.cur
	s.cur = nil
	s.mu.Unlock()
	if st == nil {
		return
	}
	st.cn.dropSub(st.id)
	if !st.ended && st.cn.alive() {
		go st.cn.roundTrip(context.Background(), &command.Request{Op: command.OpUnsubscribe, Sub: st.id},
			s.c.opts.RequestTimeout, s.c.opts.MaxFrameBytes)
	}
}

// sleepCtx waits d (a retry's backoff) or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sleepCtxDone waits d or until done closes (then it returns an error).
func sleepCtxDone(done <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-done:
		return ErrClosed
	}
}
