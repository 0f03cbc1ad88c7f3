package client

import (
	"context"
	"sync"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// DefaultMaxClockDrift is ρ, the bound on clock rate drift a cluster declares by default
// (sibyl node --max-clock-drift). A holder of a cluster run with a larger value passes
// it with TicketDrift.
const DefaultMaxClockDrift = 1e-3

// ticketClock reads the holder's clock. time.Now carries the monotonic reading every
// held-until comparison uses, so wall clock steps never extend a ticket. Tests replace it
// to control when a request counts as sent.
var ticketClock = time.Now

// TicketOpt sets an optional part of a ticket op.
type TicketOpt func(*ticketOpts)

type ticketOpts struct {
	key   string
	drift float64
}

// TicketKey makes the op idempotent under key, so that it is retried while its outcome is
// unknown (a failover), and a repeat answers the first result. A key names one op:
// reusing the key of an earlier call answers that call's result, whose lease this call
// cannot date.
func TicketKey(key string) TicketOpt { return func(o *ticketOpts) { o.key = key } }

// TicketDrift sets ρ for the held-until computation (default DefaultMaxClockDrift); it
// must be at least the cluster's --max-clock-drift.
func TicketDrift(rho float64) TicketOpt { return func(o *ticketOpts) { o.drift = rho } }

func ticketOptions(opts []TicketOpt) ticketOpts {
	o := ticketOpts{drift: DefaultMaxClockDrift}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Ticket is a held ticket: an exclusive, expiring right to change one resource, with its
// fence. The holder passes the fence with every write to the resource (WriteOpt) and to
// any downstream system that can check it: the fence is the safety, the TTL only bounds
// how long others wait when the holder goes away.
//
// A Ticket counts its lease from when it sent the acquire or renew, on this process's
// monotonic clock, less the drift margin: held until sendTime + ttl·(1−ρ). The server
// counts ttl·(1+ρ) from a later instant (when it executed the request), so while Held
// is true no one else can have been granted the resource, whatever the network delays
// were. The reply's expiresMs is never used: counting it from the reply's arrival would
// overstate the lease by the reply's delay (docs/replication.md case 8).
type Ticket struct {
	RID   string
	Fence uint64

	c         *Client
	drift     float64
	mu        sync.Mutex
	heldUntil time.Time // zero once released or lost
}

// AcquireTicket asks for the ticket of rid for ttl (whole milliseconds; less is refused).
// It fails with ticket_held while another ticket on rid is live, and not_found when rid
// does not exist. Without TicketKey it is sent once: an unknown outcome (timeout,
// unavailable) may have granted a ticket nobody holds, which then expires.
func (c *Client) AcquireTicket(ctx context.Context, rid string, ttl time.Duration, opts ...TicketOpt) (*Ticket, error) {
	o := ticketOptions(opts)
	ttlMs, err := ticketTTL(ttl)
	if err != nil {
		return nil, err
	}
	sent := ticketClock()
	rep, err := c.DoRetry(ctx, &command.Request{Op: command.OpAcquireTicket, RID: rid, TTLMs: &ttlMs, Key: o.key})
	if err != nil {
		return nil, err
	}
	if rep.Ticket == nil {
		return nil, command.Errorf(command.CodeInternal, "acquireTicket of rid %q: the reply carries no ticket", rid)
	}
	return &Ticket{RID: rid, Fence: rep.Ticket.Fence, c: c, drift: o.drift,
		heldUntil: leaseEnd(sent, ttlMs, o.drift)}, nil
}

// ticketTTL is ttl in whole milliseconds, as the protocol carries it.
func ticketTTL(ttl time.Duration) (int64, error) {
	ms := ttl.Milliseconds()
	if ms <= 0 {
		return 0, command.Errorf(command.CodeBadRequest, "ticket ttl %v is less than 1 ms", ttl)
	}
	return ms, nil
}

// leaseEnd is sent + ttl·(1−ρ), rounded down.
func leaseEnd(sent time.Time, ttlMs int64, rho float64) time.Time {
	ttl := time.Duration(ttlMs) * time.Millisecond
	return sent.Add(time.Duration(float64(ttl) * (1 - rho)))
}

// HeldUntil is the instant (on this process's monotonic clock) until which the holder may
// act as the resource's only owner; the zero time once the ticket was released or lost.
func (t *Ticket) HeldUntil() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.heldUntil
}

// Held reports whether the lease still runs now.
func (t *Ticket) Held() bool { return t.Remaining() > 0 }

// Remaining is how much of the lease is left (0 when none).
func (t *Ticket) Remaining() time.Duration {
	until := t.HeldUntil()
	if until.IsZero() {
		return 0
	}
	return max(until.Sub(ticketClock()), 0)
}

// WriteOpt carries the ticket's fence on a write to its resource.
func (t *Ticket) WriteOpt() WriteOpt { return WithTicket(t.Fence) }

// Renew extends the lease: ttl counts again from when this renewal is sent (a shorter ttl
// shortens it). While the renewal is in flight the ticket counts as held only until the
// earlier of its old end and the new one, since the server may apply it at any moment.
// ticket_held or not_found mean the ticket was lost (expired, or its resource deleted);
// after an unknown outcome the shorter of the two leases stands.
func (t *Ticket) Renew(ctx context.Context, ttl time.Duration, opts ...TicketOpt) error {
	o := ticketOptions(opts)
	ttlMs, err := ticketTTL(ttl)
	if err != nil {
		return err
	}
	sent := ticketClock()
	renewed := leaseEnd(sent, ttlMs, t.drift)
	t.mu.Lock()
	old := t.heldUntil
	if old.IsZero() {
		t.mu.Unlock()
		return command.Errorf(command.CodeTicketHeld, "renew of rid %q: fence %d was released or lost", t.RID, t.Fence)
	}
	if renewed.Before(old) {
		t.heldUntil = renewed
	}
	t.mu.Unlock()
	fence := t.Fence
	rep, err := t.c.DoRetry(ctx, &command.Request{Op: command.OpRenewTicket, RID: t.RID, Ticket: &fence, TTLMs: &ttlMs, Key: o.key})
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.heldUntil.IsZero() {
		return err // released meanwhile: nothing to extend
	}
	switch code := command.CodeOf(err); {
	case err == nil && rep.Ticket != nil && rep.Ticket.Fence == t.Fence:
		t.heldUntil = renewed
	case err == nil:
		t.heldUntil = time.Time{}
		return command.Errorf(command.CodeInternal, "renewTicket of rid %q: the reply names fence %v, not %d", t.RID, rep.Ticket, t.Fence)
	case code == command.CodeTicketHeld || code == command.CodeNotFound:
		t.heldUntil = time.Time{}
	case code.OutcomeUnknown():
		// Either lease may stand: keep the shorter (set above).
	default:
		t.heldUntil = old // refused: nothing changed
	}
	return err
}

// Release gives the ticket up. The holder stops counting on it before the request is
// sent; on an unknown outcome the ticket ends at the latest when it expires.
func (t *Ticket) Release(ctx context.Context, opts ...TicketOpt) error {
	o := ticketOptions(opts)
	t.mu.Lock()
	t.heldUntil = time.Time{}
	t.mu.Unlock()
	fence := t.Fence
	_, err := t.c.DoRetry(ctx, &command.Request{Op: command.OpReleaseTicket, RID: t.RID, Ticket: &fence, Key: o.key})
	return err
}
