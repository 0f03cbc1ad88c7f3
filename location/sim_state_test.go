package location

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"io"
	"slices"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node"
	"github.com/sibylhq/sibyl/node/core"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/sibling"
	resync "github.com/sibylhq/sibyl/sync"
)

// The state layer of a simulated copy, modelled on node/: entries carry real effects
// (command.Execute on the main, against node.Overlay over the copy's committed layer), and
// committed entries are applied to a real store.GroupStore (the in-memory one). The main
// keeps ticket deadlines on its monotonic clock and writes expiries as entries, as
// node/tickets.go does.

// simRho is the declared clock drift bound ρ of ticket leases: every simulated clock runs
// within ±2% of real time (newClock), so ρ = 0.02 keeps ttl·(1−ρ) on any holder's clock
// within ttl·(1+ρ) on any main's.
const simRho = 0.02

// mono is the process's monotonic clock: drift without the offset (steps never move it).
func (c *simClock) mono(real time.Duration) time.Duration {
	return time.Duration(float64(real) * (1 + c.drift))
}

func newSimStore() store.GroupStore {
	gs, err := store.NewMemStore().Group(command.ServerID(simGroup))
	if err != nil {
		panic(err)
	}
	return gs
}

type simTicket struct {
	fence    uint64
	deadline time.Duration // on the main's monotonic clock
}

func (n *simNode) monoNow() time.Duration { return n.clock.mono(n.s.now) }

// applyTo is the persist loop's apply: committed entries up to commit go to the committed
// layer in one write each, with the entry itself (the store's log holds what it applied).
func (n *simNode) applyTo(commit uint64) {
	for q := n.applied + 1; q <= commit && q <= n.log.Last(); q++ {
		e, _ := entryData(n.log, q)
		eff, err := command.DecodeEffect(e.Data)
		if err != nil {
			n.s.fatalf("node %d: entry (%d,%d) holds no effect: %v", n.id, e.Epoch, q, err)
		}
		if err := n.store.Write(&store.Batch{Append: []sibling.Entry{e}, CommitSeq: q,
			Apply: []store.AppliedEffect{{Epoch: e.Epoch, Seq: q, Effect: eff}}}); err != nil {
			n.s.fatalf("node %d: apply (%d,%d): %v", n.id, e.Epoch, q, err)
		}
		n.applied = q
		if n.ov != nil {
			n.ov.Applied(q)
		}
		n.s.chk.appliedAt(n, e, &eff)
	}
}

// startMainState is the state half of becomeMain: the uncommitted tail becomes pending
// state, and every live ticket inherited is re-armed from now, the moment this node
// learned it was chosen.
func (n *simNode) startMainState() {
	n.ov = node.NewOverlay(n.store)
	for q := n.applied + 1; q <= n.log.Last(); q++ {
		e, _ := entryData(n.log, q)
		eff, err := command.DecodeEffect(e.Data)
		if err != nil {
			n.s.fatalf("node %d: entry (%d,%d) holds no effect: %v", n.id, e.Epoch, q, err)
		}
		n.ov.Add(q, &eff)
	}
	live, err := n.ov.LiveTickets()
	if err != nil {
		n.s.fatalf("node %d: live tickets: %v", n.id, err)
	}
	n.tickets = map[string]simTicket{}
	for _, lt := range live {
		n.tickets[lt.RID] = simTicket{fence: lt.Ticket.Fence,
			deadline: n.monoNow() + node.TicketLifetime(lt.Ticket.TTLMs, simRho) + node.TicketRearmMargin}
		if n.s.mutation == "tickets-expire-on-promotion" {
			n.tickets[lt.RID] = simTicket{fence: lt.Ticket.Fence, deadline: n.monoNow()}
		}
	}
}

func (n *simNode) stopMainState() { n.ov, n.tickets = nil, nil }

// committedView executes against the committed layer alone, without the pending one: a
// deliberate bug for the mutation tests.
type committedView struct{ gs store.GroupStore }

func (v committedView) Resource(rid string) (*command.Resource, bool, error) {
	res, ts, err := v.gs.Resource(rid)
	return res, ts != nil, err
}
func (v committedView) Dedupe(key string) (*command.DedupeRecord, error) { return v.gs.Dedupe(key) }
func (v committedView) Ticket(rid string) (command.TicketState, error)   { return v.gs.Ticket(rid) }

// appendEffect is appendLocked: the core assigns the next seq and the driver takes the
// entry (logged).
func (n *simNode) appendEffect(eff *command.Effect) uint64 {
	seq := n.c.Propose(eff)
	n.drain()
	return seq
}

// logged takes a new entry of the main's into its log (not yet durable) and the pending
// layer; the ticket deadlines follow it.
func (n *simNode) logged(p core.Proposal) {
	e, seq, eff := p.Entry.Epoch, p.Entry.Seq, p.Effect
	n.logWrites++
	if err := n.log.Append(p.Entry); err != nil {
		n.s.fatalf("node %d: %v", n.id, err)
	}
	n.ov.Add(seq, eff)
	if eff.Ticket != nil {
		if eff.Ticket.Live {
			n.tickets[eff.RID] = simTicket{fence: eff.Ticket.Fence, deadline: n.monoNow() + node.TicketLifetime(eff.Ticket.TTLMs, simRho)}
			n.s.tracef("node %d arms fence %d (ttl %d ms) at seq %d until mono %v (mono now %v)", n.id, eff.Ticket.Fence, eff.Ticket.TTLMs, seq, n.tickets[eff.RID].deadline, n.monoNow())
		} else {
			delete(n.tickets, eff.RID)
		}
	}
	n.s.chk.entryWritten(n, e, seq, string(p.Entry.Data))
}

// expireTickets is ticketDue for every deadline passed: the expiry is an entry.
func (n *simNode) expireTickets() {
	for _, rid := range sortedKeys(n.tickets) {
		tk := n.tickets[rid]
		if tk.deadline > n.monoNow() {
			continue
		}
		delete(n.tickets, rid)
		eff, err := command.ExpireTicket(n.ov, rid, tk.fence, n.now())
		if err != nil {
			n.s.fatalf("node %d: expire %s: %v", n.id, rid, err)
		}
		if eff != nil {
			seq := n.appendEffect(eff)
			n.s.tracef("node %d expires the ticket %d on %s at seq %d", n.id, tk.fence, rid, seq)
		}
	}
}

// digest hashes a copy's whole committed layer (resources, tombstones, dedupe records,
// tickets), read through the store's snapshot, the same read a resync sends.
func digest(gs store.GroupStore) (uint64, uint64) {
	sn, err := gs.Snapshot(1)
	if err != nil {
		panic(err)
	}
	defer sn.Close()
	h := fnv.New64a()
	var after resync.Position
	for {
		recs, err := sn.Read(after, 1<<20, 1024)
		if errors.Is(err, io.EOF) {
			return sn.Header().Seq, h.Sum64()
		}
		if err != nil {
			panic(err)
		}
		for _, r := range recs {
			var l [4]byte
			h.Write([]byte{r.Bucket})
			binary.BigEndian.PutUint32(l[:], uint32(len(r.Key)))
			h.Write(l[:])
			h.Write(r.Key)
			binary.BigEndian.PutUint32(l[:], uint32(len(r.Value)))
			h.Write(l[:])
			h.Write(r.Value)
		}
		after = slices.Clone(resync.PositionOf(recs[len(recs)-1]))
	}
}
