package client

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api"
	"github.com/sibylhq/sibyl/api/internal/fake"
	"github.com/sibylhq/sibyl/command"
)

// fakeClock is a ticketClock that stands still until told to move, so a test decides
// exactly when a request counts as sent and when its reply arrives.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) read() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func useFakeClock(t *testing.T) *fakeClock {
	clk := &fakeClock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	ticketClock = clk.read
	t.Cleanup(func() { ticketClock = time.Now })
	return clk
}

func ticketFixture(t *testing.T) (*fake.Backend, *Client, string) {
	fb := fake.New()
	n := startNode(t, fb, api.Options{})
	c := dial(t, Options{Addrs: []string{n.addr()}, Seed: 1})
	r, err := c.Create(testCtx(t), "job", json.RawMessage(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	return fb, c, r.Resource.ID
}

// The lease is counted from when the request was sent, less the drift margin, never from
// the reply (the fake answers expiresMs 1000 whatever ttl was asked).
func TestTicketLeaseFromSendTime(t *testing.T) {
	clk := useFakeClock(t)
	_, c, rid := ticketFixture(t)
	ctx := testCtx(t)
	sent := clk.read()
	tk, err := c.AcquireTicket(ctx, rid, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := sent.Add(10*time.Second - 10*time.Millisecond) // ttl·(1−1e-3)
	if tk.Fence != 1 || !tk.HeldUntil().Equal(want) || !tk.Held() {
		t.Fatalf("ticket %+v held until %v, want fence 1 held until %v", tk, tk.HeldUntil(), want)
	}
	clk.advance(9990*time.Millisecond - time.Nanosecond)
	if tk.Remaining() != time.Nanosecond {
		t.Fatalf("remaining %v just before the end", tk.Remaining())
	}
	clk.advance(time.Nanosecond)
	if tk.Held() {
		t.Fatal("held at sendTime + ttl·(1−ρ)")
	}
	if got := tk.WriteOpt(); got == nil {
		t.Fatal("no write option")
	}

	// A renewal counts from its own send; a shorter ttl shortens the lease.
	renewSent := clk.read()
	if err := tk.Renew(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if want := renewSent.Add(2*time.Second - 2*time.Millisecond); !tk.HeldUntil().Equal(want) {
		t.Fatalf("after renew held until %v, want %v", tk.HeldUntil(), want)
	}
	if err := tk.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if tk.Held() || !tk.HeldUntil().IsZero() {
		t.Fatalf("held after release, until %v", tk.HeldUntil())
	}
	if err := tk.Renew(ctx, time.Second); codeOf(err) != command.CodeTicketHeld {
		t.Fatalf("renew after release: %v, want ticket_held", err)
	}

	// A larger declared drift shortens the lease accordingly.
	sent = clk.read()
	tk, err = c.AcquireTicket(ctx, rid, time.Second, TicketDrift(0.1))
	if err != nil {
		t.Fatal(err)
	}
	if want := sent.Add(900 * time.Millisecond); !tk.HeldUntil().Equal(want) {
		t.Fatalf("with ρ 0.1 held until %v, want %v", tk.HeldUntil(), want)
	}
}

func TestTicketRenewOutcomes(t *testing.T) {
	clk := useFakeClock(t)
	fb, c, rid := ticketFixture(t)
	ctx := testCtx(t)
	for _, tt := range []struct {
		name    string
		failure command.Code
		applied bool
		// want is the lease end after the renewal, in terms of the old end and the new one.
		want func(old, renewed time.Time) time.Time
	}{
		{"ticket_held: lost", command.CodeTicketHeld, false, func(old, renewed time.Time) time.Time { return time.Time{} }},
		{"not_found: lost", command.CodeNotFound, false, func(old, renewed time.Time) time.Time { return time.Time{} }},
		{"timeout: the shorter lease", command.CodeTimeout, true, func(old, renewed time.Time) time.Time { return renewed }},
		{"refused: unchanged", command.CodeBadRequest, false, func(old, renewed time.Time) time.Time { return old }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tk, err := c.AcquireTicket(ctx, rid, 20*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			old := tk.HeldUntil()
			clk.advance(time.Second)
			renewed := clk.read().Add(5*time.Second - 5*time.Millisecond)
			fb.FailNext(command.OpRenewTicket, fake.Failure{Err: command.Errorf(tt.failure, "injected"), Applied: tt.applied})
			if err := tk.Renew(ctx, 5*time.Second); codeOf(err) != tt.failure {
				t.Fatalf("renew: %v, want %s", err, tt.failure)
			}
			if got, want := tk.HeldUntil(), tt.want(old, renewed); !got.Equal(want) {
				t.Fatalf("held until %v, want %v", got, want)
			}
			_ = tk.Release(ctx)
		})
	}
}

// A keyed acquire is retried through an unknown outcome; the duplicate answer is dated
// from the first send.
func TestTicketKeyedAcquireRetried(t *testing.T) {
	clk := useFakeClock(t)
	fb, c, rid := ticketFixture(t)
	ctx := testCtx(t)
	fb.FailNext(command.OpAcquireTicket, fake.Failure{Err: command.Errorf(command.CodeTimeout, "injected"), Applied: true})
	sent := clk.read()
	tk, err := c.AcquireTicket(ctx, rid, 3*time.Second, TicketKey("acq-1"))
	if err != nil {
		t.Fatal(err)
	}
	if want := sent.Add(3*time.Second - 3*time.Millisecond); tk.Fence != 1 || !tk.HeldUntil().Equal(want) {
		t.Fatalf("ticket fence %d held until %v, want fence 1 until %v", tk.Fence, tk.HeldUntil(), want)
	}
	if _, err := c.AcquireTicket(ctx, rid, 999*time.Microsecond); codeOf(err) != command.CodeBadRequest {
		t.Fatalf("acquire with a ttl under 1 ms: %v", err)
	}
}
