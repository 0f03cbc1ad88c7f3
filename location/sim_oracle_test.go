package location

import (
	"slices"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/sibling"
)

// The oracle's fold of the one committed history (the ledger) into a reference store, and
// what is checked as it grows:
//
//	6  state: a sibling read answers what the committed log up to its seq gives, and at the
//	   end every copy's whole committed layer hashes like the reference's
//	11 events: per subscription, one event per committed resource or ticket entry, in seq
//	   order, none missing, none repeated, each in the final committed log, versions +1
//	12 tickets: see ticketFold and holderCheck (sim_tickets_test.go)
//	13 idempotency: at most one committed effect per key; duplicate answers equal the first

// refState is a resource's committed state from seq on.
type refState struct {
	seq   uint64
	state string
}

// ackedWrite is a write some client was told succeeded.
type ackedWrite struct {
	epoch, seq uint64
	what       string
}

// noteCommitted checks n's commit point against the ledger (and extends it).
func (c *simChecker) noteCommitted(n *simNode) {
	if c.checked[n.id] > n.commit {
		c.checked[n.id] = 0 // a wiped copy starts over
	}
	for q := c.checked[n.id] + 1; q <= n.commit; q++ {
		e, _ := n.log.EpochAt(q)
		c.ledgerCheck(n, q, e)
	}
	c.checked[n.id] = n.commit
}

// fold applies the ledger's next entries to the reference store.
func (c *simChecker) fold() {
	s := c.s
	for {
		q := c.refApplied + 1
		e, ok := c.ledger[q]
		if !ok {
			return
		}
		data, ok := c.entries[[2]uint64{e, q}]
		if !ok {
			s.fatalf("committed (%d,%d) was never written by a main", e, q)
		}
		eff, err := command.DecodeEffect([]byte(data))
		if err != nil {
			s.fatalf("committed (%d,%d) holds no effect: %v", e, q, err)
		}
		o, hasOrigin := c.origins[[2]uint64{e, q}]
		var op *origin
		if hasOrigin {
			op = &o
		}
		if eff.RID != "" {
			prev, err := c.ref.Ticket(eff.RID)
			if err != nil {
				s.fatalf("reference ticket of %s: %v", eff.RID, err)
			}
			c.ticketFold(q, &eff, prev, op)
			c.versionCheck(q, &eff)
		}
		if d := eff.Dedupe; d != nil {
			if at, dup := c.keySeq[d.Key]; dup {
				s.fatalf("key %q has committed effects at seq %d and %d (invariant 13)", d.Key, at, q)
			}
			c.keySeq[d.Key] = q
			c.firstReply[d.Key] = d.Reply()
			if d.Op == command.OpUpdate || d.Op == command.OpPatch {
				c.committedKeys = append(c.committedKeys, d.Key)
				c.keyRID[d.Key] = eff.RID
			}
		}
		if err := c.ref.Write(&store.Batch{Append: []sibling.Entry{{Epoch: e, Seq: q, Data: []byte(data)}}, CommitSeq: q,
			Apply: []store.AppliedEffect{{Epoch: e, Seq: q, Effect: eff}}}); err != nil {
			s.fatalf("reference store: apply (%d,%d): %v", e, q, err)
		}
		c.refApplied = q
		if eff.Kind == command.EffectPut || eff.Kind == command.EffectDelete {
			c.noteResource(q, &eff, op)
		}
		if hasOrigin && o.op >= 0 && c.ops[o.op].Return == openReturn {
			out := regOutput{}
			if eff.Kind == command.EffectPut {
				out = outputOf(eff.Resource)
			}
			c.clock++
			c.ops[o.op].Output, c.ops[o.op].Return = out, c.clock
		}
	}
}

func (c *simChecker) noteResource(q uint64, eff *command.Effect, o *origin) {
	res, ts, err := c.ref.Resource(eff.RID)
	if err != nil {
		c.s.fatalf("reference resource %s: %v", eff.RID, err)
	}
	if _, known := c.hist[eff.RID]; !known {
		c.allRIDs = append(c.allRIDs, eff.RID)
		switch {
		case eff.Resource != nil && eff.Resource.Type == "lock":
			if c.ticketRID == "" {
				c.ticketRID = eff.RID
			}
		default:
			c.rids = append(c.rids, eff.RID)
		}
	}
	c.hist[eff.RID] = append(c.hist[eff.RID], refState{seq: q, state: stateString(res, ts)})
	if eff.Kind == command.EffectDelete {
		c.gone[eff.RID] = true
	}
	c.version[eff.RID] = max(c.version[eff.RID], versionOf(eff))
}

func versionOf(eff *command.Effect) uint64 {
	if eff.Resource != nil {
		return eff.Resource.Version
	}
	return eff.Version
}

// versionCheck: a resource's version grows by exactly one per created, updated and deleted
// event (invariant 11).
func (c *simChecker) versionCheck(q uint64, eff *command.Effect) {
	if eff.Kind != command.EffectPut && eff.Kind != command.EffectDelete {
		return
	}
	if v := versionOf(eff); v != c.version[eff.RID]+1 {
		c.s.fatalf("seq %d gives %s version %d after version %d (invariant 11)", q, eff.RID, v, c.version[eff.RID])
	}
}

// refVersion is rid's committed version so far.
func (c *simChecker) refVersion(rid string) (uint64, bool) {
	v, ok := c.version[rid]
	return v, ok && !c.gone[rid]
}

func (c *simChecker) liveRIDs() []string {
	var out []string
	for _, rid := range c.rids {
		if !c.gone[rid] {
			out = append(out, rid)
		}
	}
	return out
}

// refStateAt is rid's state after the committed log up to seq.
func (c *simChecker) refStateAt(rid string, seq uint64) string {
	if seq > c.refApplied {
		c.s.fatalf("a read at seq %d, beyond the committed history known (%d)", seq, c.refApplied)
	}
	h := c.hist[rid]
	i, found := slices.BinarySearchFunc(h, seq, func(r refState, q uint64) int {
		switch {
		case r.seq < q:
			return -1
		case r.seq > q:
			return 1
		}
		return 0
	})
	if found {
		return h[i].state
	}
	if i == 0 {
		return stateString(nil, nil)
	}
	return h[i-1].state
}

// Subscriptions (invariant 11). A subscriber follows the group (subscribe server) at one
// node: every entry that node applies reaches it in order, resource and ticket entries as
// events; when it resumes at another node with its token (the last seq it covered), that
// node serves what it holds after the token from its log and goes on from there.

type simSub struct {
	node   uint16
	pos    uint64 // the token: the last seq covered
	events [][2]uint64
}

const simSubs = 2

func isEvent(eff *command.Effect) bool {
	return eff.Kind == command.EffectPut || eff.Kind == command.EffectDelete || eff.Kind == command.EffectTicket
}

// appliedAt: n applied entry e; its subscribers take it.
func (c *simChecker) appliedAt(n *simNode, e sibling.Entry, eff *command.Effect) {
	for _, sub := range c.subs {
		if sub.node != n.id || sub.pos >= e.Seq {
			continue
		}
		if sub.pos+1 < e.Seq {
			c.catchUp(sub, n, e.Seq-1)
		}
		c.deliver(sub, e.Epoch, e.Seq, eff)
	}
}

func (c *simChecker) deliver(sub *simSub, epoch, seq uint64, eff *command.Effect) {
	if seq != sub.pos+1 {
		c.s.fatalf("subscriber at %d offered seq %d (invariant 11)", sub.pos, seq)
	}
	sub.pos = seq
	if isEvent(eff) {
		sub.events = append(sub.events, [2]uint64{epoch, seq})
		c.s.stats.events++
	}
}

// catchUp serves sub from n's store log after its token, up to seq.
func (c *simChecker) catchUp(sub *simSub, n *simNode, to uint64) {
	if sub.pos >= to {
		return
	}
	es, err := n.store.Entries(sub.pos+1, to, 0)
	if err != nil {
		c.s.fatalf("node %d: catch-up of a subscriber from %d: %v", n.id, sub.pos+1, err)
	}
	for _, e := range es {
		eff, err := command.DecodeEffect(e.Data)
		if err != nil {
			c.s.fatalf("node %d: entry (%d,%d): %v", n.id, e.Epoch, e.Seq, err)
		}
		c.deliver(sub, e.Epoch, e.Seq, &eff)
	}
}

// subStep moves a subscriber to another node now and then (a reconnect, or its node is
// down) and serves it what that node holds after its token.
func (c *simChecker) subStep() {
	s := c.s
	for _, sub := range c.subs {
		if sub.node != 0 && s.node(sub.node).up && s.rng.Intn(300) != 0 {
			continue
		}
		n := s.nodes[s.rng.Intn(len(s.nodes))]
		if !n.up {
			sub.node = 0
			continue
		}
		sub.node = n.id
		c.catchUp(sub, n, n.applied)
	}
}

// finalEvents: every subscriber, served by the final main, has one event per committed
// resource or ticket entry, each at its (epoch, seq) in the final log.
func (c *simChecker) finalEvents(m *simNode) {
	s := c.s
	want := 0
	for q := uint64(1); q <= m.applied; q++ {
		e, _ := entryData(m.log, q)
		if eff, err := command.DecodeEffect(e.Data); err == nil && isEvent(&eff) {
			want++
		}
	}
	for i, sub := range c.subs {
		sub.node = m.id
		c.catchUp(sub, m, m.applied)
		if len(sub.events) != want {
			s.fatalf("subscriber %d has %d events; the committed log up to %d holds %d (invariant 11)", i, len(sub.events), m.applied, want)
		}
		for _, ev := range sub.events {
			if e, _ := m.log.EpochAt(ev[1]); e != ev[0] {
				s.fatalf("subscriber %d had an event at (%d,%d); the final log holds (%d,%d) (invariant 11)", i, ev[0], ev[1], e, ev[1])
			}
		}
	}
}

// finalState: every copy that applied as far as the reference holds the same committed
// layer (invariant 6); the main and every voting sibling must have.
func (c *simChecker) finalState(m *simNode) {
	s := c.s
	_, want := digest(c.ref)
	compared := 0
	for _, n := range s.nodes {
		if n.applied != c.refApplied {
			continue
		}
		if at, got := digest(n.store); at != c.refApplied || got != want {
			s.fatalf("node %d's committed layer at seq %d differs from the fold of the committed log (invariant 6)", n.id, at)
		}
		compared++
	}
	if m.applied != c.refApplied {
		s.fatalf("main %d applied %d of the %d committed entries", m.id, m.applied, c.refApplied)
	}
	s.stats.digests += compared
}
