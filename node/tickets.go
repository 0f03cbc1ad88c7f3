package node

import (
	"math"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
	"github.com/sibylhq/sibyl/node/store"
)

// DefaultMaxClockDrift is ρ of docs/replication.md case 8 when Config.MaxClockDrift is 0: the
// declared bound on how much faster or slower any two clocks in the system run (1e-3 is
// 1 ms per second, well above what NTP-disciplined or even free-running quartz does).
const DefaultMaxClockDrift = 1e-3

// TicketRearmMargin is ε of docs/replication.md case 8: a new main expires an inherited ticket
// no earlier than ttl·(1+ρ) + ε after it learned it was chosen. It covers what the
// monotonic clock cannot: the time between the controller's choice reaching the node
// and becomeMain reading the clock, and timer slack.
const TicketRearmMargin = 100 * time.Millisecond

// frozenExpiryRetry is how long an expiry that falls due while the main is frozen for a
// hand-over waits before it looks again. A frozen main appends nothing (the target must
// end up holding everything); expiring late is always safe, expiring early never is.
const frozenExpiryRetry = 20 * time.Millisecond

// clockDrift is ρ: Config.MaxClockDrift, or the default when it is unset.
func (c *Config) clockDrift() float64 {
	if c.MaxClockDrift > 0 {
		return c.MaxClockDrift
	}
	return DefaultMaxClockDrift
}

// TicketLifetime is ttl·(1+ρ), rounded up to the nanosecond: how long the main keeps a
// ticket live after executing its acquire or renew. Measured on the main's monotonic
// clock, it is never shorter than the holder's ttl·(1−ρ) counted on its own clock from
// an earlier instant (when it sent the request).
func TicketLifetime(ttlMs int64, rho float64) time.Duration {
	ttl := time.Duration(ttlMs) * time.Millisecond
	return time.Duration(math.Ceil(float64(ttl) * (1 + rho)))
}

// ticketTimers are the main's expiry deadlines, one per live ticket, on its monotonic
// clock (time.Now carries a monotonic reading, and timers run on it). They exist only
// while this node is main of the group: siblings never expire tickets, and a new main
// re-arms from its own clock rather than inheriting anyone's deadlines.
type ticketTimers struct {
	armed map[string]*ticketTimer // rid -> its current deadline
}

type ticketTimer struct {
	fence    uint64
	deadline time.Time
	t        *time.Timer
}

// armInheritedTickets gives every live ticket a new main inherits (committed, or in its
// uncommitted tail) the deadline chosenAt + ttl·(1+ρ) + ε, chosenAt being when this node
// learned it was chosen. That instant is later in real time than every seal of the
// promotion, so later than the start of any lease a holder may count on; until then the
// tickets stay live and acquires get ticket_held. Call with g.mu held, once the main
// role's fields are set.
func (g *group) armInheritedTickets(live []store.LiveTicket, chosenAt time.Time) {
	g.tickets = &ticketTimers{armed: map[string]*ticketTimer{}}
	rho := g.n.cfg.clockDrift()
	for _, lt := range live {
		g.armTicketAt(lt.RID, lt.Ticket.Fence, chosenAt.Add(TicketLifetime(lt.Ticket.TTLMs, rho)+TicketRearmMargin))
	}
	if len(live) > 0 {
		g.log.Info().Int("tickets", len(live)).Msg("re-armed inherited tickets from the moment this node was chosen")
	}
}

// noteTicketEffect keeps the deadlines in step with an effect the main just executed:
// an acquire or renew (re)starts its ticket's deadline from now, the execution instant;
// a release, an expiry or a delete ends it. Call with g.mu held.
func (g *group) noteTicketEffect(eff *command.Effect) {
	if eff.Ticket == nil || g.tickets == nil {
		return
	}
	if !eff.Ticket.Live {
		g.disarmTicket(eff.RID)
		return
	}
	g.armTicketAt(eff.RID, eff.Ticket.Fence, time.Now().Add(TicketLifetime(eff.Ticket.TTLMs, g.n.cfg.clockDrift())))
}

func (g *group) armTicketAt(rid string, fence uint64, deadline time.Time) {
	g.disarmTicket(rid)
	tt := &ticketTimer{fence: fence, deadline: deadline}
	tt.t = time.AfterFunc(time.Until(deadline), func() { g.ticketDue(rid, tt) })
	g.tickets.armed[rid] = tt
}

func (g *group) disarmTicket(rid string) {
	if tt := g.tickets.armed[rid]; tt != nil {
		tt.t.Stop()
		delete(g.tickets.armed, rid)
	}
}

// stopTicketTimers ends every deadline when the main role ends. Call with g.mu held.
func (g *group) stopTicketTimers() {
	if g.tickets == nil {
		return
	}
	for _, tt := range g.tickets.armed {
		tt.t.Stop()
	}
	g.tickets = nil
}

// ticketDue runs when tt's deadline passes: the main writes the expiry as an entry of its
// log, unless tt was replaced meanwhile (renewed, ended, or the main role moved on).
func (g *group) ticketDue(rid string, tt *ticketTimer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.c.Role() != core.Main || g.tickets == nil || g.tickets.armed[rid] != tt {
		return
	}
	if g.frozen != 0 {
		tt.t.Reset(frozenExpiryRetry)
		return
	}
	delete(g.tickets.armed, rid)
	eff, err := command.ExpireTicket(g.ov, rid, tt.fence, time.Now())
	if err != nil {
		// The ticket stays live; holders lose nothing, others wait. Try again shortly
		// rather than never.
		g.log.Error().Err(err).Str("rid", rid).Uint64("fence", tt.fence).Msg("cannot expire ticket; retrying")
		g.tickets.armed[rid] = tt
		tt.t.Reset(g.n.cfg.DownAfter)
		return
	}
	if eff == nil {
		return
	}
	seq := g.appendLocked(eff)
	g.kick()
	g.log.Debug().Str("rid", rid).Uint64("fence", tt.fence).Uint64("seq", seq).Msg("ticket expired")
}
