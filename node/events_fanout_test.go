package node

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// newFanoutManager is a subscription manager on a node with no store and no controller:
// group 1's hub is fed by hand through publish.
func newFanoutManager(t testing.TB) (*subManager, *hub) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	n := &Node{log: zerolog.Nop(), ctx: ctx, cancel: cancel, cfg: Config{ID: 1, WriteTimeout: time.Second}}
	n.subs = newSubManager(n)
	h := newHub(n.subs, 1, hubLocal, position{}, true)
	n.subs.hubs[1] = h
	return n.subs, h
}

// openSub subscribes on ss as the Session would, and releases its events (reply written).
func openSub(t testing.TB, m *subManager, ss *subSession, id string, f filter, from *token) (*subscription, string) {
	t.Helper()
	s := newSubscription(ss, id, f, subBuffer)
	s.from = from
	if err := ss.add(s); err != nil {
		t.Fatalf("add subscription %s: %v", id, err)
	}
	tok, err := m.open(context.Background(), s, from)
	if err != nil {
		t.Fatalf("open subscription %s: %v", id, err)
	}
	s.release()
	return s, tok
}

// puts makes applied effects of group 1 at seqs from..to of epoch 1: one resource per
// seq, of type "even" or "odd".
func puts(from, to uint64) []store.AppliedEffect {
	var out []store.AppliedEffect
	for s := from; s <= to; s++ {
		rid := fmt.Sprintf("1-01JDQ8T5Z8K3N2M4P6R8S%05d", s)
		typ := "odd"
		if s%2 == 0 {
			typ = "even"
		}
		res := &command.Resource{ID: rid, Type: typ, Version: 1, Data: json.RawMessage(`{"n":1}`)}
		out = append(out, store.AppliedEffect{Epoch: 1, Seq: s, Effect: command.Effect{Kind: command.EffectPut, RID: rid, Resource: res}})
	}
	return out
}

// frame is the part of an event frame the tests look at.
type frame struct {
	Sub      string              `json:"sub"`
	Event    string              `json:"event"`
	RID      string              `json:"rid"`
	Epoch    uint64              `json:"epoch"`
	Seq      uint64              `json:"seq"`
	Token    string              `json:"token"`
	Version  uint64              `json:"version"`
	Resource *command.Resource   `json:"resource"`
	Final    bool                `json:"final"`
	Ticket   *command.TicketInfo `json:"ticket"`
	Server   uint16              `json:"server"`
	Res      []json.RawMessage   `json:"resources"`
}

func decodeFrames(t testing.TB, raw []json.RawMessage) []frame {
	t.Helper()
	out := make([]frame, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			t.Fatalf("frame %s: %v", r, err)
		}
	}
	return out
}

// A consumer that never reads gets lagged after a buffer's worth of events, with the
// token of the last event it was sent; publishing never waits for it, and a consumer that
// keeps up on another connection gets every event.
func TestFanoutSlowConsumerLagsAlone(t *testing.T) {
	m, h := newFanoutManager(t)
	fastWake, slowWake := make(wakeChan, 1), make(wakeChan, 1)
	fast, slow := newSubSession(m, fastWake), newSubSession(m, slowWake)
	all := filter{kind: filterServer, group: 1}
	openSub(t, m, fast, "f", all, nil)
	openSub(t, m, slow, "s", all, nil)

	const total = 3 * subBuffer
	var mu sync.Mutex
	var got []json.RawMessage
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // the fast connection's writer
		defer close(done)
		for {
			select {
			case <-fastWake:
			case <-stop:
				return
			}
			for {
				mu.Lock()
				n := len(got)
				got = fast.frames(got, 64)
				more := len(got)-n == 64
				mu.Unlock()
				if !more {
					break
				}
			}
		}
	}()
	for s := uint64(1); s <= total; s += 16 {
		start := time.Now()
		m.publish(1, puts(s, s+15))
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("publish of 16 entries took %v with a stalled consumer", d)
		}
		// The fast consumer keeps up: it stays within half a buffer of the writes.
		waitUntil(t, 10*time.Second, "the fast consumer to keep up", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return uint64(len(got))+subBuffer/2 >= s+15
		})
	}
	waitUntil(t, 10*time.Second, "the fast consumer to get every event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == total
	})
	close(stop)
	<-done
	for i, f := range decodeFrames(t, got) {
		if f.Seq != uint64(i+1) || f.Event != "created" || f.Sub != "f" {
			t.Fatalf("fast frame %d: %+v", i, f)
		}
	}
	slowFrames := decodeFrames(t, slow.frames(nil, 10*subBuffer))
	if len(slowFrames) != subBuffer+1 {
		t.Fatalf("slow consumer has %d frames, want %d events and lagged", len(slowFrames), subBuffer)
	}
	last, lag := slowFrames[subBuffer-1], slowFrames[subBuffer]
	if lag.Event != "lagged" || lag.Token != last.Token {
		t.Fatalf("slow consumer's last frames: %+v then %+v; want lagged with the last event's token", last, lag)
	}
	h.mu.Lock()
	live := len(h.server)
	h.mu.Unlock()
	if live != 1 {
		t.Fatalf("%d subscriptions left in the hub, want the fast one", live)
	}
	if slow.get("s") != nil {
		t.Fatal("the lagged subscription is still open after its lagged frame was sent")
	}
}

// Events of a subscription are held until its reply is written; rid and type filters
// select; an idle subscription keeps no buffer.
func TestFanoutFiltersAndHold(t *testing.T) {
	m, _ := newFanoutManager(t)
	m.groups[1] = true
	wake := make(wakeChan, 1)
	ss := newSubSession(m, wake)
	rid := puts(3, 3)[0].Effect.RID
	s := newSubscription(ss, "r", filter{kind: filterRID, group: 1, rid: rid}, subBuffer)
	if err := ss.add(s); err != nil {
		t.Fatal(err)
	}
	if _, err := m.open(context.Background(), s, nil); err != nil {
		t.Fatal(err)
	}
	openSub(t, m, ss, "e", filter{kind: filterType, typ: "even"}, nil)
	m.publish(1, puts(1, 6))
	fs := decodeFrames(t, ss.frames(nil, 100))
	if len(fs) != 3 || fs[0].Sub != "e" || fs[0].Seq != 2 || fs[2].Seq != 6 {
		t.Fatalf("before the rid subscription's reply: %+v; want the type events at seqs 2, 4, 6", fs)
	}
	s.release()
	fs = decodeFrames(t, ss.frames(nil, 100))
	if len(fs) != 1 || fs[0].Sub != "r" || fs[0].RID != rid || fs[0].Resource == nil {
		t.Fatalf("after the reply: %+v, want the rid's one event", fs)
	}
	s.mu.Lock()
	buf := s.queue
	s.mu.Unlock()
	if buf != nil {
		t.Fatalf("an idle subscription keeps a buffer of %d", cap(buf))
	}
	// A delete reaches the type subscription through the effect's type.
	m.publish(1, []store.AppliedEffect{{Epoch: 1, Seq: 7, Effect: command.Effect{Kind: command.EffectDelete, RID: rid, Version: 2, Type: "odd"}},
		{Epoch: 1, Seq: 8, Effect: command.Effect{Kind: command.EffectDelete, RID: puts(2, 2)[0].Effect.RID, Version: 2, Type: "even"}}})
	fs = decodeFrames(t, ss.frames(nil, 100))
	if len(fs) != 2 || fs[0].Event != "deleted" || fs[0].Sub != "r" || fs[1].Sub != "e" || fs[1].Version != 2 {
		t.Fatalf("deletes: %+v", fs)
	}
	// Ticket changes are events too: the live ticket, then null once released.
	even := puts(4, 4)[0].Effect.RID
	m.publish(1, []store.AppliedEffect{
		{Epoch: 1, Seq: 9, Effect: command.Effect{Kind: command.EffectTicket, RID: even, Type: "even",
			Ticket: &command.TicketState{Fence: 3, Live: true, TTLMs: 500}}},
		{Epoch: 1, Seq: 10, Effect: command.Effect{Kind: command.EffectTicket, RID: even, Type: "even",
			Ticket: &command.TicketState{Fence: 3}}}})
	raw := ss.frames(nil, 100)
	fs = decodeFrames(t, raw)
	if len(fs) != 2 || fs[0].Event != "ticket" || fs[0].Ticket == nil || fs[0].Ticket.Fence != 3 || fs[1].Ticket != nil ||
		!strings.Contains(string(raw[1]), `"ticket":null`) {
		t.Fatalf("ticket events: %s", raw)
	}
}

// A type subscription's token names every group it passed, and each event's token lets a
// resume continue right after that event in every group.
func TestFanoutTypeTokenAcrossGroups(t *testing.T) {
	m, _ := newFanoutManager(t)
	h2 := newHub(m, 2, hubLocal, position{Epoch: 4, Seq: 10}, true)
	m.hubs[2] = h2
	m.groups[1], m.groups[2] = true, true
	ss := newSubSession(m, make(wakeChan, 1))
	f := filter{kind: filterType, typ: "even"}
	_, replyTok := openSub(t, m, ss, "t", f, nil)
	rt, err := decodeToken(replyTok)
	if err != nil || len(rt.Groups) != 1 || rt.Groups[0] != (groupPos{Group: 2, Pos: position{Epoch: 4, Seq: 10}}) {
		t.Fatalf("reply token %+v (%v): want group 2 at (4,10) and group 1 absent (at its start)", rt, err)
	}
	m.publish(1, puts(1, 4))
	h2.deliverLocal([]store.AppliedEffect{{Epoch: 4, Seq: 11, Effect: command.Effect{Kind: command.EffectNoop}}})
	fs := decodeFrames(t, ss.frames(nil, 100))
	if len(fs) != 2 {
		t.Fatalf("%d events, want 2", len(fs))
	}
	tok, err := decodeToken(fs[1].Token)
	if err != nil {
		t.Fatal(err)
	}
	want := []groupPos{{Group: 1, Pos: position{Epoch: 1, Seq: 4}}, {Group: 2, Pos: position{Epoch: 4, Seq: 10}}}
	if len(tok.Groups) != 2 || tok.Groups[0] != want[0] || tok.Groups[1] != want[1] {
		t.Fatalf("token of the event at seq 4: %+v, want %+v", tok.Groups, want)
	}
	// The unsubscribe token includes what was passed without a match since (group 2 at 11).
	sub := ss.get("t")
	sub.mu.Lock()
	now := sub.tokenLocked()
	sub.mu.Unlock()
	nt, _ := decodeToken(now)
	if nt.posOf(2) != (position{Epoch: 4, Seq: 11}) {
		t.Fatalf("token now %+v: want group 2 at (4,11)", nt.Groups)
	}
}

// A connection has at most maxSubsPerSession subscriptions; one more gets rate_limited,
// and an id in use gets bad_request.
func TestFanoutSubscriptionLimit(t *testing.T) {
	m, _ := newFanoutManager(t)
	ss := newSubSession(m, make(wakeChan, 1))
	f := filter{kind: filterServer, group: 1}
	for i := 0; i < maxSubsPerSession; i++ {
		if err := ss.add(newSubscription(ss, fmt.Sprint(i), f, subBuffer)); err != nil {
			t.Fatalf("subscription %d: %v", i, err)
		}
	}
	if err := ss.add(newSubscription(ss, "one more", f, subBuffer)); err == nil || err.Code != command.CodeRateLimited {
		t.Fatalf("subscription %d: %v, want rate_limited", maxSubsPerSession+1, err)
	}
	ss.get("0").end()
	if err := ss.add(newSubscription(ss, "1", f, subBuffer)); err == nil || err.Code != command.CodeBadRequest {
		t.Fatalf("an id in use: %v, want bad_request", err)
	}
	if err := ss.add(newSubscription(ss, "one more", f, subBuffer)); err != nil {
		t.Fatalf("after an unsubscribe: %v", err)
	}
}
