package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// The type of the writers' resources. Their data is a JSON object of string members: "c"
// the key of the create that made the resource (every update keeps it, so a create that
// took effect twice shows as two resources with one "c"), "v" the value of the last
// update, and members that patches set and remove.
const writerType = "counter"

// Ticket leases the writers take: long enough for a few writes under the ticket, short
// enough that a ticket granted to a request whose outcome stayed unknown ends soon.
const (
	writerTicketTTL = 2 * time.Second
	writerTicketUse = writerTicketTTL / 2 // the writer stops using a ticket after this
)

// writer runs one client's closed loop against a resource of its own in one group,
// recording every operation in the history. Without mix it only updates that resource. With
// mix it runs every op of the protocol (mixStep): updates and merge patches, some of them
// conditional (ifVersion), deletes followed by a new create, conditional patches of another
// writer's resource (its peer) at the version just read, linearizable reads, and tickets
// (acquire, fenced writes, renew, release), all with idempotency keys.
type writer struct {
	id    int
	cl    *client.Client
	h     *History
	group command.ServerID
	n     int // next value
	// mix: run every op (mixStep), chosen by rng; peer: the writer whose resource this one
	// writes to now and then (nil: none).
	mix  bool
	rng  *rand.Rand
	peer *writer
	// counts of this writer's ops: acknowledged writes, definite failures other than the
	// refusals the protocol defines, unknown outcomes, and those refusals (not_found,
	// conflict, ticket_held: outcomes the history checks).
	ok, failed, unknown, refused atomic.Int64
	codes                        sync.Map // code -> *atomic.Int64
	// keyed: every write carries an idempotency key and is retried (DoRetry) until it is
	// acknowledged or opTimeout passes, as a client riding out a failover does.
	keyed     bool
	opTimeout time.Duration
	// pace, when set, is a think time after each acknowledged write (a client that does
	// other work between writes).
	pace time.Duration
	// the writer's own resource, guarded by mu: its rid, the highest version this writer
	// was acknowledged on it, and whether it was deleted (gone: acknowledged; maybeGone: a
	// delete of unknown outcome).
	mu              sync.Mutex
	rid             string
	ackedV          uint64
	gone, maybeGone bool
	ackTimes        []int64  // history times of acknowledgements
	ackCalls        []int64  // history times the acknowledged writes were sent
	ackEpochs       []uint64 // the epoch each acknowledged write names (0: ticket ops, whose replies name none)
	ackDup          []bool   // whether the acknowledgement was a duplicate answer (first result)
	// owned by the writer's goroutine (mix): the version last seen on its resource (others
	// may have moved it since), the data it holds, a create to make (its key and when it
	// was first sent, kept across unknown outcomes), and the ticket held.
	seenV       uint64
	madeBy      string // the key of the create that made the resource
	createKey   string
	createCall  int64
	createSent  bool
	fence       uint64
	ticketUntil time.Time
}

// newWriter creates the writer's resource in group (retrying its keyed create) and
// returns the writer, which only updates it until mix is set.
func newWriter(t testing.TB, id int, cl *client.Client, group command.ServerID, h *History) *writer {
	w := &writer{id: id, cl: cl, h: h, group: group, rng: rand.New(rand.NewPCG(uint64(id), 1))}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w.createKey = fmt.Sprintf("w%d-create", id)
	for {
		if w.create(ctx) == "" {
			return w
		}
		if ctx.Err() != nil {
			t.Fatalf("writer %d: create in group %d did not succeed", id, group)
		}
		time.Sleep(50 * time.Millisecond) // pace retries after a failure; not synchronisation
	}
}

// seed makes the writer's choices of ops come from seed.
func (w *writer) seed(seed uint64) { w.rng = rand.New(rand.NewPCG(seed, uint64(w.id))) }

// state is the writer's resource: its rid, the highest version acknowledged to this
// writer, and whether it was deleted (gone) or may have been (maybeGone).
func (w *writer) state() (rid string, version uint64, gone, maybeGone bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rid, w.ackedV, w.gone, w.maybeGone
}

// currentRID is the writer's resource, for readers ("" before the first create).
func (w *writer) currentRID() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rid
}

func (w *writer) data(extra ...string) json.RawMessage {
	m := map[string]string{"c": w.madeBy}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	b, _ := json.Marshal(m)
	return b
}

func (w *writer) value() string {
	v := fmt.Sprintf("w%d-%d", w.id, w.n)
	w.n++
	return v
}

// do sends req (keyed and retried when w.keyed) and records it in the history as op,
// sent at call. It returns the reply and the error code ("" on success; "stopped" when
// ctx ended first, with the outcome unknown). The op is recorded unless it is a create
// whose rid is unknown, or a failure the model has no place for.
func (w *writer) do(ctx context.Context, req *command.Request, op Op, call int64) (*command.Reply, command.Code) {
	var rep *command.Reply
	var err error
	if w.keyed {
		octx, cancel := context.WithTimeout(ctx, w.opTimeout)
		rep, err = w.cl.DoRetry(octx, req)
		cancel()
	} else {
		rep, err = w.cl.Do(ctx, req)
	}
	return rep, w.record(ctx, req, op, call, rep, err)
}

// record records the outcome of req and counts it.
func (w *writer) record(ctx context.Context, req *command.Request, op Op, call int64, rep *command.Reply, err error) command.Code {
	write := req.Op != command.OpGet
	if err == nil {
		res := Result{}
		if rep.Resource != nil {
			res.RID, res.Data, res.Version = rep.Resource.ID, canonData(rep.Resource.Data), rep.Resource.Version
		}
		if rep.Ticket != nil {
			res.Fence = rep.Ticket.Fence
		}
		if op.Op != command.OpCreate {
			res.RID = ""
		}
		w.h.Record(w.id, op, call, res)
		if write {
			w.mu.Lock()
			w.ackTimes = append(w.ackTimes, w.h.Now())
			w.ackCalls = append(w.ackCalls, call)
			w.ackEpochs = append(w.ackEpochs, rep.Epoch)
			w.ackDup = append(w.ackDup, rep.Duplicate)
			w.mu.Unlock()
			w.ok.Add(1)
		}
		return ""
	}
	code := command.CodeOf(err)
	switch code {
	case command.CodeNotFound, command.CodeConflict, command.CodeTicketHeld:
		if op.Op != command.OpCreate {
			w.h.Record(w.id, op, call, Result{Code: code})
			w.refused.Add(1)
			return code
		}
	}
	if ctx.Err() != nil {
		// Cut off by the scenario stopping its writers: the outcome is unknown, and it is
		// not a failure of the cluster.
		if write && op.Op != command.OpCreate {
			w.h.Record(w.id, op, call, Result{Unknown: true})
		}
		return "stopped"
	}
	switch {
	case !write:
		// A failed read changes nothing: not recorded.
	case code.OutcomeUnknown():
		if op.Op != command.OpCreate {
			w.h.Record(w.id, op, call, Result{Unknown: true})
		}
		w.unknown.Add(1)
	default:
		w.failed.Add(1)
	}
	c, _ := w.codes.LoadOrStore(code, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
	return code
}

// create makes the writer's resource under w.createKey: an unknown outcome leaves it to
// be retried with the same key (recorded once, from the first send, when it succeeds).
func (w *writer) create(ctx context.Context) command.Code {
	if !w.createSent {
		w.createCall, w.createSent = w.h.Now(), true
	}
	data, _ := json.Marshal(map[string]string{"c": w.createKey, "v": "init"})
	req := &command.Request{Op: command.OpCreate, Type: writerType, Data: data, Key: w.createKey}
	s := int64(w.group)
	req.Server = &s
	octx, cancel := context.WithTimeout(ctx, 20*time.Second)
	rep, err := w.cl.DoRetry(octx, req)
	cancel()
	code := w.record(ctx, req, Op{Op: command.OpCreate, Data: canonData(data)}, w.createCall, rep, err)
	if code == "" {
		w.mu.Lock()
		w.rid, w.ackedV, w.gone, w.maybeGone = rep.Resource.ID, rep.Resource.Version, false, false
		w.mu.Unlock()
		w.seenV, w.createSent, w.madeBy, w.createKey = rep.Resource.Version, false, w.createKey, ""
	}
	return code
}

// acknowledged notes that a write to the writer's own resource rid was acknowledged at
// version v.
func (w *writer) acknowledged(rid string, v uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if rid == w.rid {
		w.ackedV = max(w.ackedV, v)
	}
}

// step makes one op; it returns the error code ("" on success).
func (w *writer) step(ctx context.Context) command.Code {
	if w.mix {
		return w.mixStep(ctx)
	}
	v := w.value()
	data := w.data("v", v)
	req := &command.Request{Op: command.OpUpdate, RID: w.rid, Data: data}
	if w.keyed {
		req.Key = fmt.Sprintf("w%d-%s", w.id, v)
	}
	rep, code := w.do(ctx, req, Op{Op: command.OpUpdate, RID: w.rid, Data: canonData(data)}, w.h.Now())
	if code == "" {
		w.acknowledged(w.rid, rep.Resource.Version)
	}
	return code
}

// mixStep makes one op of the mix: a create when the writer's resource was deleted, else
// ops under the ticket while it holds one, else one chosen by rng.
func (w *writer) mixStep(ctx context.Context) command.Code {
	if w.createKey != "" {
		return w.create(ctx)
	}
	rid := w.currentRID()
	key := fmt.Sprintf("w%d-%d", w.id, w.n)
	if w.fence != 0 && time.Now().After(w.ticketUntil) {
		w.fence = 0 // the lease is (nearly) over: the writer no longer counts on it
	}
	r := w.rng.IntN(100)
	if w.fence != 0 {
		switch {
		case r < 60:
			return w.write(ctx, rid, key, w.rng.IntN(2) == 0, false)
		case r < 75:
			ttl, f := writerTicketTTL.Milliseconds(), w.fence
			sent := time.Now()
			req := &command.Request{Op: command.OpRenewTicket, RID: rid, Ticket: &f, TTLMs: &ttl, Key: key}
			w.n++
			_, code := w.do(ctx, req, Op{Op: command.OpRenewTicket, RID: rid, Fence: f}, w.h.Now())
			switch {
			case code == "":
				w.ticketUntil = sent.Add(writerTicketUse)
			case !code.OutcomeUnknown():
				w.fence = 0 // refused: the ticket was lost (or the writer stops)
			}
			return code
		case r < 80:
			return w.del(ctx, rid, key)
		default:
			f := w.fence
			req := &command.Request{Op: command.OpReleaseTicket, RID: rid, Ticket: &f, Key: key}
			op := Op{Op: command.OpReleaseTicket, RID: rid, Fence: f}
			w.n++
			w.fence = 0
			_, code := w.do(ctx, req, op, w.h.Now())
			return code
		}
	}
	switch {
	case r < 30:
		return w.write(ctx, rid, key, false, w.rng.IntN(3) == 0)
	case r < 60:
		return w.write(ctx, rid, key, true, w.rng.IntN(3) == 0)
	case r < 66:
		return w.del(ctx, rid, key)
	case r < 78 && w.peer != nil:
		return w.cross(ctx)
	case r < 86:
		ttl := writerTicketTTL.Milliseconds()
		sent := time.Now()
		req := &command.Request{Op: command.OpAcquireTicket, RID: rid, TTLMs: &ttl, Key: key}
		w.n++
		rep, code := w.do(ctx, req, Op{Op: command.OpAcquireTicket, RID: rid}, w.h.Now())
		if code == "" && rep.Ticket != nil {
			w.fence, w.ticketUntil = rep.Ticket.Fence, sent.Add(writerTicketUse)
		}
		return code
	default:
		rep, code := w.get(ctx, rid)
		switch code {
		case "":
			w.seenV = rep.Resource.Version
		case command.CodeNotFound:
			w.deleted(false)
		}
		return ""
	}
}

// write updates (or, with patch, merge-patches) the writer's resource; conditional: with
// ifVersion the version it last saw (stale when anything else moved it since).
func (w *writer) write(ctx context.Context, rid, key string, patch, conditional bool) command.Code {
	v := w.value()
	req := &command.Request{Op: command.OpUpdate, RID: rid, Key: key}
	op := Op{Op: command.OpUpdate, RID: rid}
	if patch {
		// Set one member, or remove one.
		member := "p" + strconv.Itoa(w.rng.IntN(3))
		raw := json.RawMessage(fmt.Sprintf(`{%q:%q}`, member, v))
		if w.rng.IntN(4) == 0 {
			raw = json.RawMessage(fmt.Sprintf(`{%q:null}`, member))
		}
		req.Op, req.Patch = command.OpPatch, raw
		op.Op, op.Data = command.OpPatch, canonPatch(raw)
	} else {
		req.Data = w.data("v", v)
		op.Data = canonData(req.Data)
	}
	if conditional && w.seenV != 0 {
		iv := w.seenV
		req.IfVersion, op.IfVersion = &iv, iv
	}
	if w.fence != 0 {
		f := w.fence
		req.Ticket, op.Fence = &f, f
	}
	rep, code := w.do(ctx, req, op, w.h.Now())
	switch code {
	case "":
		w.seenV = rep.Resource.Version
		w.acknowledged(rid, rep.Resource.Version)
	case command.CodeTicketHeld:
		w.fence = 0
	case command.CodeNotFound:
		w.deleted(false)
	}
	return code
}

// del deletes the writer's resource (conditionally half the time; with the fence of the
// ticket it holds, which ends with it); the next step creates a new one.
func (w *writer) del(ctx context.Context, rid, key string) command.Code {
	req := &command.Request{Op: command.OpDelete, RID: rid, Key: key}
	op := Op{Op: command.OpDelete, RID: rid}
	w.n++
	if w.rng.IntN(2) == 0 && w.seenV != 0 {
		iv := w.seenV
		req.IfVersion, op.IfVersion = &iv, iv
	}
	if w.fence != 0 {
		f := w.fence
		req.Ticket, op.Fence = &f, f
	}
	_, code := w.do(ctx, req, op, w.h.Now())
	switch {
	case code == "":
		w.deleted(true)
	case code == command.CodeNotFound:
		w.deleted(false)
	case code == command.CodeTicketHeld:
		w.fence = 0
	case code == "stopped" || code.OutcomeUnknown():
		w.deleted(false)
	}
	return code
}

// deleted moves the writer on to a new resource: the old one is gone (its delete was
// acknowledged) or may be (a delete of unknown outcome, or a refusal with not_found, which
// the history check judges).
func (w *writer) deleted(acknowledged bool) {
	w.mu.Lock()
	if acknowledged {
		w.gone = true
	} else {
		w.maybeGone = true
	}
	w.mu.Unlock()
	w.fence, w.seenV = 0, 0
	w.createKey = fmt.Sprintf("w%d-c%d", w.id, w.n)
	w.n++
}

// cross reads the peer's resource and patches it at the version read: a conditional
// write that races with the peer's own writes.
func (w *writer) cross(ctx context.Context) command.Code {
	rid := w.peer.currentRID()
	if rid == "" {
		return ""
	}
	rep, code := w.get(ctx, rid)
	if code != "" {
		return code
	}
	v := w.value()
	raw := json.RawMessage(fmt.Sprintf(`{"x%d":%q}`, w.id, v))
	iv := rep.Resource.Version
	req := &command.Request{Op: command.OpPatch, RID: rid, Patch: raw, IfVersion: &iv, Key: fmt.Sprintf("w%d-%s", w.id, v)}
	_, code = w.do(ctx, req, Op{Op: command.OpPatch, RID: rid, Data: canonPatch(raw), IfVersion: iv}, w.h.Now())
	return code
}

// get reads rid linearizably and records it.
func (w *writer) get(ctx context.Context, rid string) (*command.Reply, command.Code) {
	call := w.h.Now()
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	rep, err := w.cl.Get(rctx, rid, command.Linearizable)
	cancel()
	code := command.CodeOf(err)
	switch {
	case err == nil:
		w.h.Record(w.id, Op{Op: command.OpGet, RID: rid}, call, Result{Data: canonData(rep.Resource.Data), Version: rep.Resource.Version})
	case code == command.CodeNotFound:
		w.h.Record(w.id, Op{Op: command.OpGet, RID: rid}, call, Result{Code: code})
	}
	return rep, code
}

// failures describes the writer's failed writes by code.
func (w *writer) failures() string {
	out := ""
	w.codes.Range(func(k, v any) bool {
		out += fmt.Sprintf(" %s=%d", k, v.(*atomic.Int64).Load())
		return true
	})
	return out
}

// run steps until ctx ends.
func (w *writer) run(ctx context.Context) {
	for ctx.Err() == nil {
		switch code := w.step(ctx); {
		case code == "", code == command.CodeConflict, code == command.CodeTicketHeld, code == command.CodeNotFound:
			if w.pace > 0 {
				time.Sleep(w.pace) // think time; not synchronisation
			}
		default:
			time.Sleep(10 * time.Millisecond) // pace retries after a failure; not synchronisation
		}
	}
}

// lostWrites reads the writer's resource (linearizable, through cl) and returns 1 if the
// last acknowledged version is missing from it (or a deleted one is back), else 0. The
// read goes into the history too, so the checker sees it against everything else.
func (w *writer) lostWrites(t testing.TB, cl *client.Client) int {
	rid, want, gone, maybeGone := w.state()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		call := w.h.Now()
		r, err := cl.Get(ctx, rid, command.Linearizable)
		switch code := command.CodeOf(err); {
		case err == nil:
			w.h.Record(w.id, Op{Op: command.OpGet, RID: rid}, call, Result{Data: canonData(r.Resource.Data), Version: r.Resource.Version})
			if gone {
				t.Errorf("writer %d: %s is back at version %d after its delete was acknowledged", w.id, rid, r.Resource.Version)
				return 1
			}
			if r.Resource.Version < want {
				t.Errorf("writer %d: %s at version %d, but version %d was acknowledged", w.id, rid, r.Resource.Version, want)
				return 1
			}
			return 0
		case code == command.CodeNotFound:
			w.h.Record(w.id, Op{Op: command.OpGet, RID: rid}, call, Result{Code: code})
			if !gone && !maybeGone {
				t.Errorf("writer %d: %s not found, but version %d was acknowledged and no delete sent", w.id, rid, want)
				return 1
			}
			return 0
		}
		if ctx.Err() != nil {
			t.Fatalf("writer %d: final read: %v", w.id, err)
		}
		time.Sleep(50 * time.Millisecond) // pace retries after a failure; not synchronisation
	}
}

// doubledCreates lists the writers' resources in group g through cl and returns how many
// creates took effect more than once: resources that carry the key of one create ("c").
func doubledCreates(t testing.TB, cl *client.Client, g command.ServerID) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	byKey := map[string][]string{}
	after := ""
	for {
		rep, err := cl.List(ctx, client.ListOptions{Type: writerType, Server: g, After: after, Limit: 1000})
		if err != nil {
			t.Fatalf("list %s in group %d: %v", writerType, g, err)
		}
		for _, r := range rep.Resources {
			var d map[string]any
			if json.Unmarshal(r.Data, &d) == nil {
				if c, ok := d["c"].(string); ok {
					byKey[c] = append(byKey[c], r.ID)
				}
			}
		}
		if rep.Next == "" {
			break
		}
		after = rep.Next
	}
	n := 0
	for k, rids := range byKey {
		if len(rids) > 1 {
			t.Errorf("the create with key %q made %d resources in group %d: %v", k, len(rids), g, rids)
			n += len(rids) - 1
		}
	}
	return n
}

// pairPeers makes each writer the peer of the one before it (cross writes).
func pairPeers(ws []*writer) {
	if len(ws) < 2 {
		return
	}
	for i, w := range ws {
		w.peer = ws[(i+1)%len(ws)]
	}
}

// longestGap returns the longest time between consecutive acknowledgements of any of the
// writers, within [from, to] of the history clock.
func longestGap(ws []*writer, from, to int64) time.Duration {
	gap, _ := longestGapAt(ws, from, to)
	return gap
}

// longestGapAt is longestGap and the history time its gap began.
func longestGapAt(ws []*writer, from, to int64) (time.Duration, int64) {
	var ts []int64
	for _, w := range ws {
		w.mu.Lock()
		for _, t := range w.ackTimes {
			if t >= from && t <= to {
				ts = append(ts, t)
			}
		}
		w.mu.Unlock()
	}
	slices.Sort(ts)
	var gap, at int64
	for i := 1; i < len(ts); i++ {
		if d := ts[i] - ts[i-1]; d > gap {
			gap, at = d, ts[i-1]
		}
	}
	return time.Duration(gap), at
}

// stopOnce returns a function that calls every stop in order the first time it is called
// and does nothing after: a test stops its writers before it checks, and defers the same
// call for the paths that fail first.
func stopOnce(stops ...func()) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			for _, s := range stops {
				s()
			}
		})
	}
}
