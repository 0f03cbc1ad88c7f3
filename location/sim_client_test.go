package location

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/oklog/ulid/v2"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
)

// The simulation's clients. Each has one request outstanding at a time and sends it to
// the node a random live node names as main (or, for sibling reads, to the node it is
// connected to), as the Go client does through any node:
//
//   - writers create, update (some with ifVersion), patch and delete a few resources, all
//     with idempotency keys; a request whose outcome is unknown (its main stepped down) is
//     retried with the same key at the next main. Now and then a writer reuses a committed
//     key for a different request, which must get conflict;
//   - a reader gets resources linearizably at the main;
//   - a sibling reader gets them with consistency sibling from the node it is connected to,
//     carrying its floor (minSeq) across reconnects;
//   - two ticket clients contend for a ticket on one resource: acquire, fenced updates,
//     renew, release, each believing it holds the ticket until sendTime + ttl·(1−ρ) on its
//     own clock.

type clientKind int

const (
	kindWriter clientKind = iota
	kindReader
	kindSiblingReader
	kindTicket
)

const (
	simResources   = 3 // live resources the writers keep
	simMaxTries    = 6 // attempts of one request before its client gives up on it
	simTicketUsers = 2
)

type simClient struct {
	id    int
	kind  clientKind
	clock simClock
	busy  bool             // waiting for an answer at a node
	req   *command.Request // the request being tried; retries keep its key
	op    int              // its porcupine operation, or -1
	probe bool             // req reuses a committed key: the answer must be conflict
	tries int
	sent  time.Duration // real time of the first attempt
	mono  time.Duration // the same instant on the client's monotonic clock
	// ticket clients: the fence believed held, and until when (real time)
	fence uint64
	until time.Duration
	// sibling reader: the node it reads from, and the highest seq it has read at
	conn  uint16
	floor uint64
}

// pendingWrite is a write executed at a main, answered when seq commits there.
type pendingWrite struct {
	cl       *simClient
	node     uint16
	epoch    uint64
	seq      uint64
	assigned time.Duration
	reply    *command.Reply
	err      *command.Error
	dup      bool
}

type pendingRead struct {
	cl      *simClient
	op      int
	rid     string
	node    uint16
	epoch   uint64
	round   uint64
	index   uint64
	arrived time.Duration
}

// origin is the request an entry was executed for.
type origin struct {
	cl  *simClient
	op  int
	req *command.Request
}

func newClients(s *sim) []*simClient {
	var out []*simClient
	add := func(k clientKind) {
		out = append(out, &simClient{id: len(out), kind: k, clock: s.newClock(), op: -1})
	}
	for range simWriters {
		add(kindWriter)
	}
	add(kindReader)
	add(kindSiblingReader)
	for range simTicketUsers {
		add(kindTicket)
	}
	return out
}

func (cl *simClient) now(s *sim) time.Duration { return cl.clock.mono(s.now) }

// realAt is the real time at which the client's monotonic clock reads m.
func (cl *simClient) realAt(m time.Duration) time.Duration {
	return time.Duration(math.Floor(float64(m) / (1 + cl.clock.drift)))
}

// clientStep lets each idle client start (or retry) a request now and then.
func (c *simChecker) clientStep() {
	s := c.s
	var live []*simNode
	for _, n := range s.nodes {
		if n.up && n.dir != nil {
			live = append(live, n)
		}
	}
	if len(live) == 0 {
		return
	}
	for _, cl := range c.clients {
		if cl.busy || s.rng.Float64() > 0.04 || (c.quiet && cl.req == nil) {
			continue
		}
		if cl.kind == kindSiblingReader {
			c.siblingRead(cl)
			continue
		}
		if cl.req == nil && !c.nextRequest(cl) {
			continue
		}
		entry := live[s.rng.Intn(len(live))]
		mid := entry.dir.Main
		if mid == 0 {
			continue
		}
		target := s.node(mid)
		if !target.up || target.c.Role() != core.Main || s.locBlocked(entry.loc, target.loc) {
			continue // no_main, or no route to it: nothing happened; try again later
		}
		if cl.tries == 0 {
			cl.sent, cl.mono = s.now, cl.now(s)
		}
		cl.tries++
		cl.busy = true
		if cl.req.Op == "get" {
			c.reads = append(c.reads, pendingRead{cl: cl, op: cl.op, rid: cl.req.RID, node: target.id, epoch: target.c.Epoch(),
				round: target.c.Replication().ReadRound(), index: target.c.Replication().Commit(), arrived: s.now})
			target.heartbeats()
		} else {
			c.execute(target, cl)
		}
		c.resolve(target)
	}
}

func (c *simChecker) newKey() string {
	c.keys++
	return fmt.Sprintf("k%d", c.keys)
}

func regJSON(d regData) json.RawMessage {
	b, _ := json.Marshal(d)
	return b
}

// nextRequest picks cl's next request; false when it has nothing to do yet.
func (c *simChecker) nextRequest(cl *simClient) bool {
	s := c.s
	cl.tries, cl.probe, cl.op = 0, false, -1
	switch cl.kind {
	case kindReader:
		if len(c.rids) == 0 {
			return false
		}
		rid := c.rids[s.rng.Intn(len(c.rids))]
		cl.req = &command.Request{Op: "get", RID: rid}
		c.addOp(cl, regInput{Op: "get", RID: rid})
		return true
	case kindTicket:
		return c.nextTicketRequest(cl)
	}
	c.nextV++
	v := c.nextV
	live := c.liveRIDs()
	if len(live) < simResources && (len(live) == 0 || s.rng.Intn(4) == 0) {
		srv := int64(simGroup)
		cl.req = &command.Request{Op: command.OpCreate, Type: "reg", Data: regJSON(regData{V: v}), Server: &srv, Key: c.newKey()}
		c.addOp(cl, regInput{Op: command.OpCreate, V: v})
		return true
	}
	if len(c.committedKeys) > 0 && s.rng.Intn(30) == 0 {
		// A committed key reused for another request: conflict, and nothing changes.
		k := c.committedKeys[s.rng.Intn(len(c.committedKeys))]
		cl.req = &command.Request{Op: command.OpUpdate, RID: c.keyRID[k], Data: regJSON(regData{V: v}), Key: k}
		cl.probe = true
		return true
	}
	rid := c.rids[s.rng.Intn(len(c.rids))]
	in := regInput{RID: rid, V: v}
	req := &command.Request{RID: rid, Key: c.newKey()}
	switch r := s.rng.Intn(20); {
	case r < 11:
		in.Op, req.Data = command.OpUpdate, regJSON(regData{V: v})
	case r < 18:
		in.Op, in.P, req.Patch = command.OpPatch, v, regJSON(regData{P: v})
		in.V = 0
	default:
		in.Op = command.OpDelete
		in.V = 0
	}
	req.Op = in.Op
	if s.rng.Intn(4) == 0 {
		if st, ok := c.refVersion(rid); ok {
			in.IfVersion = st + uint64(s.rng.Intn(2)) // right or one ahead
			iv := in.IfVersion
			req.IfVersion = &iv
		}
	}
	cl.req = req
	c.addOp(cl, in)
	return true
}

func (c *simChecker) addOp(cl *simClient, in regInput) {
	c.clock++
	c.ops = append(c.ops, porcupine.Operation{ClientId: cl.id, Input: in, Call: c.clock, Output: regOutput{}, Return: openReturn})
	cl.op = len(c.ops) - 1
}

// execute is group.submit at main n for cl's request.
func (c *simChecker) execute(n *simNode, cl *simClient) {
	s := c.s
	var view command.View = n.ov
	if s.mutation == "execute-committed" {
		view = committedView{n.store}
	}
	out := command.Execute(view, cl.req, command.ExecContext{Group: command.ServerID(simGroup), Epoch: n.c.Replication().Epoch(),
		Seq: n.c.Replication().LastSeq() + 1, Now: n.now(), NewID: func() command.RID {
			var id ulid.ULID
			c.nextRID++
			binary.BigEndian.PutUint64(id[8:], c.nextRID)
			binary.BigEndian.PutUint32(id[:4], uint32(s.seed))
			return command.RID{Server: command.ServerID(simGroup), ID: id}
		}})
	pw := pendingWrite{cl: cl, node: n.id, epoch: n.c.Epoch(), assigned: s.now}
	switch {
	case out.Err != nil:
		// A refusal may depend on pending state: answered once that state commits.
		pw.seq, pw.err = n.c.Replication().LastSeq(), out.Err
	case out.Duplicate != nil:
		pw.seq, pw.reply, pw.dup = out.Duplicate.Seq, out.Duplicate.Reply(), true
	default:
		pw.seq, pw.reply = n.appendEffect(out.Effect), out.Reply
		c.origins[[2]uint64{n.c.Epoch(), pw.seq}] = origin{cl: cl, op: cl.op, req: cl.req}
		n.pump()
	}
	c.writes = append(c.writes, pw)
}

// resolve answers the requests waiting at main n.
func (c *simChecker) resolve(n *simNode) {
	if n.c.Role() != core.Main {
		return
	}
	kept := c.writes[:0]
	for _, w := range c.writes {
		if w.node != n.id || w.epoch != n.c.Epoch() || w.seq > n.c.Commit() {
			kept = append(kept, w)
			continue
		}
		c.answered(w)
	}
	c.writes = kept
	rkept := c.reads[:0]
	for _, r := range c.reads {
		if r.node != n.id || r.epoch != n.c.Epoch() || !n.c.Replication().RoundConfirmed(r.round) || n.c.Commit() < r.index ||
			!n.c.BarrierCommitted() || n.applied < c.readIndex(n, r) {
			rkept = append(rkept, r)
			continue
		}
		res, _, err := n.store.Resource(r.rid)
		if err != nil {
			c.s.fatalf("node %d: read %s: %v", n.id, r.rid, err)
		}
		out := outputOf(res)
		if res == nil {
			out.Code = command.CodeNotFound
		}
		c.fencedCheck(r.epoch, fmt.Sprintf("read at main %d", n.id), r.arrived, 0)
		c.clock++
		c.ops[r.op].Output, c.ops[r.op].Return = out, c.clock
		r.cl.busy, r.cl.req = false, nil
		c.s.tracef("client %d: get %s at main %d (epoch %d, index %d, applied %d): %+v [op %d]", r.cl.id, r.rid, n.id, r.epoch, r.index, n.applied, out, c.clock)
	}
	c.reads = rkept
}

// readIndex is what a read must see applied: the commit point on its arrival, and the new
// main's barrier, below which entries an older main acknowledged may lie.
func (c *simChecker) readIndex(n *simNode, r pendingRead) uint64 {
	if c.s.mutation == "read-index-on-arrival" {
		return r.index
	}
	return max(r.index, n.c.BarrierSeq())
}

// answered: w's answer reaches its client.
func (c *simChecker) answered(w pendingWrite) {
	s, cl := c.s, w.cl
	cl.busy = false
	req := cl.req
	if w.err == nil {
		what := fmt.Sprintf("%s by client %d at (%d,%d)", req.Op, cl.id, w.reply.Epoch, w.reply.Seq)
		if w.dup {
			// A duplicate answer reports an entry committed before (its main waited for
			// that): invariant 3 asks that the entry is in the committed history, which a
			// fenced main may still truthfully report.
			if e, ok := c.ledger[w.reply.Seq]; !ok || e != w.reply.Epoch {
				s.fatalf("%s (duplicate) reports an entry the committed history does not hold (invariant 3)", what)
			}
			c.duplicateCheck(req, w.reply)
			s.stats.duplicates++
		} else {
			c.fencedCheck(w.epoch, what, w.assigned, w.seq)
		}
		c.acked = append(c.acked, ackedWrite{epoch: w.reply.Epoch, seq: w.reply.Seq, what: what})
		s.stats.acked++
	}
	if cl.probe {
		if w.err == nil || w.err.Code != command.CodeConflict {
			s.fatalf("client %d reused the committed key %q for another request and got %v, %+v; want conflict (invariant 13)",
				cl.id, req.Key, w.err, w.reply)
		}
		s.stats.conflicts++
	}
	out := regOutput{}
	if w.err != nil {
		out.Code = w.err.Code
	} else {
		out = outputOf(w.reply.Resource)
	}
	s.tracef("client %d: %s %s answered by main %d (epoch %d) at seq %d: %v %+v dup=%v", cl.id, req.Op, req.RID, w.node, w.epoch, w.seq, w.err, out, w.dup)
	if cl.op >= 0 {
		op := &c.ops[cl.op]
		if op.Return == openReturn {
			c.clock++
			op.Output, op.Return = out, c.clock
		} else if op.Output != out {
			s.fatalf("client %d: answer %+v to %s differs from its committed effect %+v (invariant 13)", cl.id, out, req.Op, op.Output)
		}
	}
	if cl.kind == kindTicket {
		c.ticketAnswered(cl, w)
	}
	cl.req = nil
}

// steppedDown: the requests waiting at n have an unknown outcome; writers retry them with
// the same key, reads are abandoned.
func (c *simChecker) steppedDown(n *simNode) {
	kept := c.writes[:0]
	for _, w := range c.writes {
		if w.node != n.id {
			kept = append(kept, w)
			continue
		}
		w.cl.busy = false
		if w.cl.tries >= simMaxTries {
			w.cl.req = nil // given up: its operation stays open until its entry commits, if ever
		} else {
			c.s.stats.retries++
		}
	}
	c.writes = kept
	rkept := c.reads[:0]
	for _, r := range c.reads {
		if r.node == n.id {
			r.cl.busy, r.cl.req = false, nil
			c.ops[r.op].Return = -1
			continue
		}
		rkept = append(rkept, r)
	}
	c.reads = rkept
}

// duplicateCheck: a duplicate answer equals the first result of its key (invariant 13).
func (c *simChecker) duplicateCheck(req *command.Request, rep *command.Reply) {
	first, ok := c.firstReply[req.Key]
	if !ok {
		c.s.fatalf("duplicate answer for key %q, which no committed entry holds (invariant 13)", req.Key)
	}
	a, _ := json.Marshal(first)
	b, _ := json.Marshal(rep)
	if string(a) != string(b) {
		c.s.fatalf("duplicate answer for key %q: %s, first result %s (invariant 13)", req.Key, b, a)
	}
}

// siblingRead is a get with consistency sibling at cl's node, carrying its floor: the
// node's rule (group_sibling.go siblingRead) is to answer from its committed layer when it
// is main, or a sibling that heard its main within down-after, once applied >= floor.
func (c *simChecker) siblingRead(cl *simClient) {
	s := c.s
	if cl.conn == 0 || s.rng.Intn(20) == 0 {
		cl.conn = uint16(1 + s.rng.Intn(len(s.nodes))) // a (re)connect; the floor goes along
	}
	n := s.node(cl.conn)
	if !n.up || len(c.allRIDs) == 0 {
		cl.conn = 0
		return
	}
	serving := n.c.Role() == core.Main || n.c.Heard(n.now())
	if !serving || n.applied < cl.floor {
		return // unavailable, or it waits: the client tries again later
	}
	c.noteCommitted(n)
	rid := c.allRIDs[s.rng.Intn(len(c.allRIDs))]
	res, ts, err := n.store.Resource(rid)
	if err != nil {
		s.fatalf("node %d: sibling read of %s: %v", n.id, rid, err)
	}
	got := stateString(res, ts)
	if want := c.refStateAt(rid, n.applied); got != want {
		s.fatalf("sibling read of %s at node %d, seq %d: %s; the committed log up to %d gives %s (invariant 6)",
			rid, n.id, n.applied, got, n.applied, want)
	}
	cl.floor = n.applied
	s.stats.siblingReads++
}

func stateString(res *command.Resource, ts *command.Tombstone) string {
	switch {
	case res != nil:
		b, _ := json.Marshal(res)
		return string(b)
	case ts != nil:
		return fmt.Sprintf("deleted at version %d", ts.Version)
	}
	return "unknown"
}
