package client

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api"
	"github.com/sibylhq/sibyl/api/internal/fake"
	"github.com/sibylhq/sibyl/command"
)

// next reads one event or fails after a deadline.
func next(t *testing.T, s *Subscription) Event {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		if !ok {
			t.Fatalf("subscription ended: %v", s.Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}
	return Event{}
}

// creates makes n resources through c and returns their seqs.
func creates(t *testing.T, c *Client, n int) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := 0; i < n; i++ {
		rep, err := c.Create(testCtx(t), "doc", json.RawMessage(strconv.Itoa(i)), WithServer(fake.Group))
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		seqs = append(seqs, rep.Seq)
	}
	return seqs
}

func TestSubscribeDeliversInOrder(t *testing.T) {
	n := startNode(t, fake.New(), api.Options{})
	c := dial(t, Options{Addrs: []string{n.addr()}})
	sub, err := c.Subscribe(testCtx(t), Filter{Type: "doc"}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if sub.Token() == "" {
		t.Fatal("no token after subscribe")
	}
	seqs := creates(t, c, 10)
	for i, want := range seqs {
		ev := next(t, sub)
		if ev.Kind != "created" || ev.Seq != want || ev.Resource == nil || ev.Token == "" || len(ev.Raw) == 0 {
			t.Fatalf("event %d: %+v, want created at seq %d", i, ev, want)
		}
	}
	if _, err := c.Subscribe(testCtx(t), Filter{Type: "doc"}, "not a token"); command.CodeOf(err) != command.CodeBadRequest {
		t.Fatalf("subscribe from a bad token: %v, want bad_request", err)
	}
}

// When the node goes away, the subscription resumes on the next address from the last
// event it received: the consumer sees every event once, in order.
func TestSubscribeResumesOnAnotherNode(t *testing.T) {
	fb := fake.New()
	first, second := startNode(t, fb, api.Options{}), startNode(t, fb, api.Options{})
	c := dial(t, Options{Addrs: []string{first.addr(), second.addr()}, Seed: 7})
	writer := dial(t, Options{Addrs: []string{second.addr()}})
	sub, err := c.Subscribe(testCtx(t), Filter{Type: "doc"}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	seqs := creates(t, writer, 5)
	for _, want := range seqs[:3] {
		if ev := next(t, sub); ev.Seq != want {
			t.Fatalf("event at seq %d, want %d", ev.Seq, want)
		}
	}
	first.stop()
	seqs = append(seqs, creates(t, writer, 5)...)
	for _, want := range seqs[3:] {
		if ev := next(t, sub); ev.Seq != want {
			t.Fatalf("after the node stopped: event at seq %d, want %d", ev.Seq, want)
		}
	}
	if want := "ws://" + second.addr() + "/v1/ws"; c.Addr() != want {
		t.Fatalf("client is on %q, want %q", c.Addr(), want)
	}
}

// A consumer that stops reading costs a resubscribe, not a gap: the client drops its
// server-side subscription when it holds too many events, and opens it again from the
// last one it holds once the consumer caught up.
func TestSubscribeSlowConsumerLosesNothing(t *testing.T) {
	fb := fake.New()
	n := startNode(t, fb, api.Options{})
	c := dial(t, Options{Addrs: []string{n.addr()}})
	writer := dial(t, Options{Addrs: []string{n.addr()}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, Filter{Type: "doc"}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	total := maxPendingEvents + 1000
	var last uint64
	for i := 0; i < total; i++ {
		rep, err := writer.Do(ctx, &command.Request{Op: command.OpCreate, Type: "doc", Data: json.RawMessage(`1`)})
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		last = rep.Seq
	}
	want := last - uint64(total) + 1
	for i := 0; i < total; i++ {
		ev := next(t, sub)
		if ev.Seq != want {
			t.Fatalf("event %d at seq %d, want %d", i, ev.Seq, want)
		}
		want++
	}
}

// Token names the last event handed to the consumer (into Events), not the last one
// received: an event the client still held when the subscription was closed (Events was
// full) comes again when the subscription is resumed from Token, so a consumer moving its
// subscription to another node loses nothing.
func TestSubscribeTokenCountsOnlyHandedOverEvents(t *testing.T) {
	fb := fake.New()
	n := startNode(t, fb, api.Options{})
	c := dial(t, Options{Addrs: []string{n.addr()}})
	sub, err := c.Subscribe(testCtx(t), Filter{Type: "doc"}, "")
	if err != nil {
		t.Fatal(err)
	}
	const total = 40 // more than Events holds, so the client holds some when closed
	seqs := creates(t, c, total)
	deadline := time.Now().Add(10 * time.Second)
	for {
		sub.mu.Lock()
		held := len(sub.q)
		sub.mu.Unlock()
		if held > 0 && len(sub.Events()) == cap(sub.Events()) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	sub.Close()
	var got []uint64
	for ev := range sub.Events() { // a consumer drains what was handed over
		got = append(got, ev.Seq)
	}
	resumed, err := c.Subscribe(testCtx(t), Filter{Type: "doc"}, sub.Token())
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	for len(got) < total {
		got = append(got, next(t, resumed).Seq)
	}
	for i, want := range seqs {
		if got[i] != want {
			t.Fatalf("event %d at seq %d, want %d: closing and resuming from Token skipped or repeated events", i, got[i], want)
		}
	}
}
