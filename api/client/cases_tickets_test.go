package client

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api"
	"github.com/sibylhq/sibyl/api/internal/fake"
	"github.com/sibylhq/sibyl/command"
)

// slowTicketBackend moves the fake ticket clock on while an acquire is "in flight": the
// main executes it delay1 after it was sent, and its reply arrives delay2 after that.
type slowTicketBackend struct {
	*fake.Backend
	clk            *fakeClock
	delay1, delay2 time.Duration
}

type slowTicketSession struct {
	api.Session
	b slowTicketBackend
}

func (b slowTicketBackend) NewSession(out api.Outbox) api.Session {
	return slowTicketSession{Session: b.Backend.NewSession(out), b: b}
}

func (s slowTicketSession) Start(ctx context.Context, req *command.Request, admin bool) func() (*command.Reply, error) {
	if req.Op != command.OpAcquireTicket {
		return s.Session.Start(ctx, req, admin)
	}
	s.b.clk.advance(s.b.delay1)
	wait := s.Session.Start(ctx, req, admin)
	return func() (*command.Reply, error) {
		r, err := wait()
		s.b.clk.advance(s.b.delay2)
		return r, err
	}
}

// Case 8 scenario B (and 14 (b)): "The main's deadline is exec+10 s. The reply is sent at
// exec+1 s with expiresMs=9000 and takes 2 s to arrive. A client computing receive +
// expiresMs believes it holds the ticket until exec+12 s." The rule: the holder counts
// ttl·(1−ρ) from when it sent the request, never receive + expiresMs; so its lease ends
// before the main's exec + ttl·(1+ρ), whatever the delays.
func TestCase8B_HolderCountsFromSendTimeNotTheReply(t *testing.T) {
	clk := useFakeClock(t)
	fb := fake.New()
	b := slowTicketBackend{Backend: fb, clk: clk, delay1: 500 * time.Millisecond, delay2: 2 * time.Second}
	s := api.NewServer(b, api.Options{})
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { s.Close(); hs.Close() })
	c := dial(t, Options{Addrs: []string{hs.Listener.Addr().String()}, Seed: 1})
	ctx := testCtx(t)
	r, err := c.Create(ctx, "job", json.RawMessage(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 10 * time.Second
	sent := clk.read()
	tk, err := c.AcquireTicket(ctx, r.Resource.ID, ttl)
	if err != nil {
		t.Fatal(err)
	}
	received := clk.read()
	if received.Sub(sent) != 2500*time.Millisecond {
		t.Fatalf("the fake delays moved the clock %v, want 2.5 s", received.Sub(sent))
	}
	executed := sent.Add(500 * time.Millisecond)
	rho := DefaultMaxClockDrift
	mainExpiry := executed.Add(time.Duration(float64(ttl) * (1 + rho)))
	want := sent.Add(time.Duration(float64(ttl) * (1 - rho)))
	if got := tk.HeldUntil(); !got.Equal(want) || !got.Before(mainExpiry) {
		t.Fatalf("held until %v after the send; want %v (send + ttl·(1−ρ)), before the main's expiry at %v",
			tk.HeldUntil().Sub(sent), want.Sub(sent), mainExpiry.Sub(sent))
	}
	if tk.HeldUntil().After(received.Add(ttl - 2500*time.Millisecond)) {
		t.Fatal("the lease reaches past what the send time allows: counted from the reply")
	}
}
