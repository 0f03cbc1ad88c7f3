package command

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// Named tests for docs/replication.md cases 8 and 9 at the lowest layer that expresses them:
// deterministic execution against a view (the main's committed layer plus its overlay).

// Case 8 scenario A: "M grants fence 7 to P with TTL 30 s and stores expiresAt=12:00:30 ...
// New main N's wall clock is 20 s ahead ... N grants fence 8 to Q": two holders at once.
// The rule: the ticket stores a duration, and nothing in execution compares a stored instant
// with the executing node's clock; only the main's expiry entry ends the ticket. So a main
// whose wall clock is far ahead still refuses the acquire until the expiry entry exists.
func TestCase8A_TicketTTLIsADurationNeverADeadline(t *testing.T) {
	h := newHarness(t)
	r := h.create(`{}`)
	first := h.ok(&Request{Op: OpAcquireTicket, RID: r.ID, TTLMs: i64(30000)})
	tk := first.Effect.Ticket
	if tk == nil || !tk.Live || tk.TTLMs != 30000 || tk.Fence != 1 {
		t.Fatalf("acquire stored %+v, want fence 1 live with ttlMs 30000 (a duration)", tk)
	}
	// The effect's state is what every copy stores; its JSON must hold no instant other than
	// the effect's own At (which nothing compares): no expiresAt, no deadline.
	b, err := json.Marshal(tk)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	for k := range fields {
		if k != "fence" && k != "live" && k != "ttlMs" {
			t.Fatalf("stored ticket state has field %q (%s): only fence, live and ttlMs may be replicated", k, b)
		}
	}
	// A new main whose clock is 20 s ahead (and one a day ahead) executes an acquire: the
	// ticket is still live, whatever the wall clock says.
	for _, ahead := range []time.Duration{20 * time.Second, 24 * time.Hour} {
		h.now = h.now.Add(ahead)
		if out := h.run(&Request{Op: OpAcquireTicket, RID: r.ID, TTLMs: i64(1000)}); errCode(out.Err) != CodeTicketHeld {
			t.Fatalf("acquire on a clock %v ahead: %+v (err %v), want ticket_held: only the main's expiry entry ends a ticket", ahead, out, out.Err)
		}
	}
	// Only the main's expiry entry ends it; then the next fence is 2, never a reused 1.
	h.expire(r.ID, 1)
	out := h.ok(&Request{Op: OpAcquireTicket, RID: r.ID, TTLMs: i64(1000)})
	if out.Reply.Ticket == nil || out.Reply.Ticket.Fence != 2 {
		t.Fatalf("acquire after expiry: %+v, want fence 2", out.Reply.Ticket)
	}
}

// Case 9 scenario C: "A retry of a delete that succeeded gets not_found. A retry of an
// update whose fence has since expired gets ticket_held. A retry of an update whose
// ifVersion is now stale gets conflict." docs/protocol.md requires the first result with
// duplicate:true for all three: the key is checked before ticket, ifVersion and existence.
func TestCase9C_KeyCheckedBeforeTicketVersionAndExistence(t *testing.T) {
	type story struct {
		name   string
		first  func(h *harness, rid string) Request
		change func(h *harness, rid string)
	}
	for _, s := range []story{
		{"delete retried after it succeeded (would be not_found)",
			func(h *harness, rid string) Request { return Request{Op: OpDelete, RID: rid, Key: "d"} },
			func(h *harness, rid string) {}},
		{"update retried after its fence expired (would be ticket_held)",
			func(h *harness, rid string) Request {
				h.ok(&Request{Op: OpAcquireTicket, RID: rid, TTLMs: i64(100)})
				return Request{Op: OpUpdate, RID: rid, Data: json.RawMessage(`"x"`), Ticket: u64(1), Key: "u"}
			},
			func(h *harness, rid string) { h.expire(rid, 1) }},
		{"update retried with an ifVersion now stale (would be conflict)",
			func(h *harness, rid string) Request {
				return Request{Op: OpUpdate, RID: rid, Data: json.RawMessage(`"x"`), IfVersion: u64(1), Key: "v"}
			},
			func(h *harness, rid string) {
				h.ok(&Request{Op: OpPatch, RID: rid, Patch: json.RawMessage(`{"y":1}`)})
			}},
	} {
		t.Run(s.name, func(t *testing.T) {
			h := newHarness(t)
			r := h.create(`{}`)
			req := s.first(h, r.ID)
			first := h.ok(&req)
			s.change(h, r.ID)
			seq := h.seq
			out := h.run(&req)
			if out.Duplicate == nil {
				t.Fatalf("retry got err %v, want the first result with duplicate:true", out.Err)
			}
			want := *first.Reply
			want.Duplicate = true
			if got := out.Duplicate.Reply(); !reflect.DeepEqual(got, &want) {
				t.Fatalf("duplicate reply %+v, want the first reply %+v", got, &want)
			}
			if h.seq != seq {
				t.Fatal("the retry appended an entry: executed twice")
			}
		})
	}
}

// Case 9 scenario D: "Keys expire by the wall clock of whichever main holds them. A new main
// whose clock is 5 min ahead drops 5 min of keys early." The rule: key expiry is a
// replicated entry issued by the main, never a wall-clock comparison at lookup. So a repeat
// executed on a main whose clock is 5 minutes (or 11 minutes) ahead of the first execution
// is still answered from the key.
func TestCase9D_KeysNeverExpireByTheExecutingClock(t *testing.T) {
	h := newHarness(t)
	req := &Request{Op: OpCreate, Type: "t", Data: json.RawMessage(`{"n":1}`), Key: "k", Server: i64(int64(group))}
	first := h.ok(req)
	for _, ahead := range []time.Duration{5 * time.Minute, 11 * time.Minute} {
		h.now = first.Effect.At.Add(ahead)
		out := h.run(req)
		if out.Duplicate == nil || out.Duplicate.Seq != first.Reply.Seq || out.Duplicate.Resource.ID != first.Reply.Resource.ID {
			t.Fatalf("repeat on a clock %v ahead: %+v (err %v), want the duplicate of seq %d", ahead, out, out.Err, first.Reply.Seq)
		}
	}
}
