package command

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// ticketStep is one request of a ticket story on one resource, with what it must answer
// and the ticket state it must leave.
type ticketStep struct {
	name  string
	req   Request // RID is filled in with the story's resource when empty
	code  Code    // "" for success
	reply *TicketInfo
	after TicketState
}

func acquire(ttl int64) Request { return Request{Op: OpAcquireTicket, TTLMs: i64(ttl)} }
func renew(fence uint64, ttl int64) Request {
	return Request{Op: OpRenewTicket, Ticket: u64(fence), TTLMs: i64(ttl)}
}
func release(fence uint64) Request { return Request{Op: OpReleaseTicket, Ticket: u64(fence)} }

func update(fence *uint64) Request {
	return Request{Op: OpUpdate, Data: json.RawMessage(`{"w":1}`), Ticket: fence}
}

// runTicketStory plays steps on one fresh resource and checks every answer, the ticket
// state after each step, and that ticket ops never change the resource's version.
func runTicketStory(t *testing.T, h *harness, rid string, steps []ticketStep) {
	t.Helper()
	for _, st := range steps {
		req := st.req
		if req.RID == "" {
			req.RID = rid
		}
		before, _, _ := h.v.Resource(rid)
		out := h.run(&req)
		if errCode(out.Err) != st.code {
			t.Fatalf("%s: got %+v (err %v), want code %q", st.name, out, out.Err, st.code)
		}
		if st.code == "" && isTicketOp(req.Op) {
			if !reflect.DeepEqual(out.Reply.Ticket, st.reply) {
				t.Fatalf("%s: reply ticket %+v, want %+v", st.name, out.Reply.Ticket, st.reply)
			}
			if out.Effect.Kind != EffectTicket || out.Effect.RID != rid || out.Effect.Type != before.Type {
				t.Fatalf("%s: effect %+v", st.name, out.Effect)
			}
			after, _, _ := h.v.Resource(rid)
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("%s: a ticket op changed the resource from %+v to %+v", st.name, before, after)
			}
		}
		if got, _ := h.v.Ticket(rid); got != st.after {
			t.Fatalf("%s: ticket state %+v, want %+v", st.name, got, st.after)
		}
	}
}

func TestTicketRules(t *testing.T) {
	h := newHarness(t)
	r := h.create(`{}`)
	live := func(f uint64, ttl int64) TicketState { return TicketState{Fence: f, Live: true, TTLMs: ttl} }
	ended := func(f uint64) TicketState { return TicketState{Fence: f} }
	runTicketStory(t, h, r.ID, []ticketStep{
		{"write with no ticket ever granted", update(nil), "", nil, TicketState{}},
		{"write naming a fence never granted", update(u64(1)), CodeTicketHeld, nil, TicketState{}},
		{"renew of a fence never granted", renew(1, 100), CodeTicketHeld, nil, TicketState{}},
		{"release of a fence never granted", release(1), CodeTicketHeld, nil, TicketState{}},
		{"acquire grants fence 1", acquire(1000), "", &TicketInfo{Fence: 1, ExpiresMs: 1000}, live(1, 1000)},
		{"second acquire while live", acquire(50), CodeTicketHeld, nil, live(1, 1000)},
		{"update without the fence", update(nil), CodeTicketHeld, nil, live(1, 1000)},
		{"update with another fence", update(u64(2)), CodeTicketHeld, nil, live(1, 1000)},
		{"patch without the fence", Request{Op: OpPatch, Patch: json.RawMessage(`{"p":1}`)}, CodeTicketHeld, nil, live(1, 1000)},
		{"delete without the fence", Request{Op: OpDelete}, CodeTicketHeld, nil, live(1, 1000)},
		{"update with the live fence", update(u64(1)), "", nil, live(1, 1000)},
		{"patch with the live fence", Request{Op: OpPatch, Patch: json.RawMessage(`{"p":1}`), Ticket: u64(1)}, "", nil, live(1, 1000)},
		{"renew with another fence", renew(2, 5000), CodeTicketHeld, nil, live(1, 1000)},
		{"renew keeps the fence, takes the new ttl", renew(1, 5000), "", &TicketInfo{Fence: 1, ExpiresMs: 5000}, live(1, 5000)},
		{"release with another fence", release(2), CodeTicketHeld, nil, live(1, 5000)},
		{"release", release(1), "", nil, ended(1)},
		{"release again", release(1), CodeTicketHeld, nil, ended(1)},
		{"renew after release", renew(1, 100), CodeTicketHeld, nil, ended(1)},
		{"write with the released fence", update(u64(1)), CodeTicketHeld, nil, ended(1)},
		{"write without a fence once none is live", update(nil), "", nil, ended(1)},
		{"the counter survives release", acquire(20), "", &TicketInfo{Fence: 2, ExpiresMs: 20}, live(2, 20)},
		{"write with the older fence", update(u64(1)), CodeTicketHeld, nil, live(2, 20)},
	})

	// Expiry is the main's entry; it ends the ticket and keeps the counter.
	if e, err := ExpireTicket(h.v, r.ID, 1, h.now); e != nil || err != nil {
		t.Fatalf("expiring a fence that is not live: %+v, %v", e, err)
	}
	e, err := ExpireTicket(h.v, r.ID, 2, h.now)
	want := &Effect{Kind: EffectTicket, RID: r.ID, Type: "doc", Ticket: &TicketState{Fence: 2}, At: h.now.UTC()}
	if err != nil || !reflect.DeepEqual(e, want) {
		t.Fatalf("ExpireTicket = %+v, %v; want %+v", e, err, want)
	}
	if rid, info, ok := e.TicketChange(); !ok || rid != r.ID || info != nil {
		t.Fatalf("expiry's ticket change = %q %+v %t, want rid and null", rid, info, ok)
	}
	h.v.apply(t, e)
	if e, _ := ExpireTicket(h.v, r.ID, 2, h.now); e != nil {
		t.Fatalf("a second expiry of fence 2: %+v", e)
	}

	runTicketStory(t, h, r.ID, []ticketStep{
		{"write with the expired fence", update(u64(2)), CodeTicketHeld, nil, ended(2)},
		{"renew of the expired fence", renew(2, 20), CodeTicketHeld, nil, ended(2)},
		{"acquire after expiry", acquire(30), "", &TicketInfo{Fence: 3, ExpiresMs: 30}, live(3, 30)},
		{"delete with the live fence ends the ticket", Request{Op: OpDelete, Ticket: u64(3)}, "", nil, ended(3)},
		{"acquire on the deleted rid", acquire(30), CodeNotFound, nil, ended(3)},
		{"renew on the deleted rid", renew(3, 30), CodeNotFound, nil, ended(3)},
		{"release on the deleted rid", release(3), CodeNotFound, nil, ended(3)},
		{"write with a fence on the deleted rid", update(u64(3)), CodeNotFound, nil, ended(3)},
	})
	unknown := "3-01JN8NSVZVABYZR1S1G9JMY5HZ"
	if out := h.run(&Request{Op: OpAcquireTicket, RID: unknown, TTLMs: i64(5)}); errCode(out.Err) != CodeNotFound {
		t.Fatalf("acquire of an unknown rid: %+v", out)
	}
}

// A delete under a live ticket carries the ticket's end, so every copy and every
// subscriber sees the ticket go with its resource.
func TestTicketDeleteEffect(t *testing.T) {
	h := newHarness(t)
	r := h.create(`1`)
	h.ok(&Request{Op: OpAcquireTicket, RID: r.ID, TTLMs: i64(10)})
	out := h.ok(&Request{Op: OpDelete, RID: r.ID, Ticket: u64(1)})
	if out.Effect.Kind != EffectDelete || !reflect.DeepEqual(out.Effect.Ticket, &TicketState{Fence: 1}) {
		t.Fatalf("delete effect %+v, want one ending fence 1", out.Effect)
	}
	if rid, info, ok := out.Effect.TicketChange(); !ok || rid != r.ID || info != nil {
		t.Fatalf("ticket change of the delete: %q %+v %t", rid, info, ok)
	}
	plain := h.create(`2`)
	out = h.ok(&Request{Op: OpDelete, RID: plain.ID})
	if out.Effect.Ticket != nil {
		t.Fatalf("delete without a ticket carries %+v", out.Effect.Ticket)
	}
	if _, _, ok := out.Effect.TicketChange(); ok {
		t.Fatal("a delete without a live ticket reports a ticket change")
	}
}

func TestTicketValidation(t *testing.T) {
	h := newHarness(t)
	r := h.create(`{}`)
	other := "4-01JN8NSVZVABYZR1S1G9JMY5HZ"
	for _, tt := range []struct {
		name string
		req  Request
		code Code
		msg  string
	}{
		{"acquire without ttlMs", Request{Op: OpAcquireTicket, RID: r.ID}, CodeBadRequest, "ttlMs is missing"},
		{"acquire with ttlMs 0", Request{Op: OpAcquireTicket, RID: r.ID, TTLMs: i64(0)}, CodeBadRequest, "not positive"},
		{"acquire with a negative ttlMs", Request{Op: OpAcquireTicket, RID: r.ID, TTLMs: i64(-5)}, CodeBadRequest, "not positive"},
		{"acquire with ttlMs over 24 h", Request{Op: OpAcquireTicket, RID: r.ID, TTLMs: i64(MaxTicketTTLMs + 1)}, CodeBadRequest, "24 h"},
		{"acquire without rid", Request{Op: OpAcquireTicket, TTLMs: i64(5)}, CodeBadRequest, "rid is missing"},
		{"renew without ticket", Request{Op: OpRenewTicket, RID: r.ID, TTLMs: i64(5)}, CodeBadRequest, "ticket is missing"},
		{"renew without ttlMs", Request{Op: OpRenewTicket, RID: r.ID, Ticket: u64(1)}, CodeBadRequest, "ttlMs"},
		{"release without ticket", Request{Op: OpReleaseTicket, RID: r.ID}, CodeBadRequest, "ticket is missing"},
		{"acquire in another group", Request{Op: OpAcquireTicket, RID: other, TTLMs: i64(5)}, CodeBadRequest, "belongs to group 4"},
	} {
		out := h.run(&tt.req)
		if errCode(out.Err) != tt.code || !strings.Contains(out.Err.Message, tt.msg) {
			t.Errorf("%s: got %v, want %s containing %q", tt.name, out.Err, tt.code, tt.msg)
		}
	}
	if out := h.ok(&Request{Op: OpAcquireTicket, RID: r.ID, TTLMs: i64(MaxTicketTTLMs)}); out.Reply.Ticket.ExpiresMs != MaxTicketTTLMs {
		t.Fatalf("acquire with the largest ttl: %+v", out.Reply)
	}
}

// docs/replication.md case 9: the key is checked before tickets, versions and existence, so a
// retry gets its first answer whatever happened to the ticket since.
func TestTicketCheckOrderWithKeys(t *testing.T) {
	for _, tt := range []struct {
		name string
		// setup runs on a fresh resource and returns the keyed request to retry.
		first  func(h *harness, rid string) Request
		change func(h *harness, rid string) // what happens between the first try and the retry
	}{
		{"acquire retried after its ticket was released",
			func(h *harness, rid string) Request {
				return Request{Op: OpAcquireTicket, RID: rid, TTLMs: i64(100), Key: "a"}
			},
			func(h *harness, rid string) { h.ok(&Request{Op: OpReleaseTicket, RID: rid, Ticket: u64(1)}) }},
		{"acquire retried while another holder has the next fence",
			func(h *harness, rid string) Request {
				return Request{Op: OpAcquireTicket, RID: rid, TTLMs: i64(100), Key: "a"}
			},
			func(h *harness, rid string) {
				h.expire(rid, 1)
				h.ok(&Request{Op: OpAcquireTicket, RID: rid, TTLMs: i64(100)})
			}},
		{"update retried after its fence expired",
			func(h *harness, rid string) Request {
				h.ok(&Request{Op: OpAcquireTicket, RID: rid, TTLMs: i64(100)})
				return Request{Op: OpUpdate, RID: rid, Data: json.RawMessage(`"x"`), Ticket: u64(1), Key: "u"}
			},
			func(h *harness, rid string) { h.expire(rid, 1) }},
		{"update retried after a newer fence was granted",
			func(h *harness, rid string) Request {
				h.ok(&Request{Op: OpAcquireTicket, RID: rid, TTLMs: i64(100)})
				return Request{Op: OpUpdate, RID: rid, Data: json.RawMessage(`"x"`), Ticket: u64(1), Key: "u"}
			},
			func(h *harness, rid string) {
				h.expire(rid, 1)
				h.ok(&Request{Op: OpAcquireTicket, RID: rid, TTLMs: i64(100)})
			}},
		{"renew retried after expiry",
			func(h *harness, rid string) Request {
				h.ok(&Request{Op: OpAcquireTicket, RID: rid, TTLMs: i64(100)})
				return Request{Op: OpRenewTicket, RID: rid, Ticket: u64(1), TTLMs: i64(200), Key: "r"}
			},
			func(h *harness, rid string) { h.expire(rid, 1) }},
		{"release retried",
			func(h *harness, rid string) Request {
				h.ok(&Request{Op: OpAcquireTicket, RID: rid, TTLMs: i64(100)})
				return Request{Op: OpReleaseTicket, RID: rid, Ticket: u64(1), Key: "x"}
			},
			func(h *harness, rid string) {}},
		{"delete under a ticket retried after the resource is gone",
			func(h *harness, rid string) Request {
				h.ok(&Request{Op: OpAcquireTicket, RID: rid, TTLMs: i64(100)})
				return Request{Op: OpDelete, RID: rid, Ticket: u64(1), Key: "d"}
			},
			func(h *harness, rid string) {}},
		{"acquire retried after the resource was deleted",
			func(h *harness, rid string) Request {
				return Request{Op: OpAcquireTicket, RID: rid, TTLMs: i64(100), Key: "a"}
			},
			func(h *harness, rid string) { h.ok(&Request{Op: OpDelete, RID: rid, Ticket: u64(1)}) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			r := h.create(`{}`)
			req := tt.first(h, r.ID)
			first := h.ok(&req)
			tt.change(h, r.ID)
			seq := h.seq
			out := h.run(&req)
			if out.Duplicate == nil {
				t.Fatalf("retry got %+v (err %v), want the duplicate of seq %d", out, out.Err, first.Reply.Seq)
			}
			rep := out.Duplicate.Reply()
			wantRep := *first.Reply
			wantRep.Duplicate = true
			if !reflect.DeepEqual(rep, &wantRep) {
				t.Fatalf("duplicate reply %+v, want the first reply %+v", rep, &wantRep)
			}
			if h.seq != seq {
				t.Fatal("the retry appended an entry")
			}
			// The same key for a different request is a conflict before any ticket rule.
			other := req
			other.TTLMs = i64(999)
			if other.Op == OpReleaseTicket || other.Op == OpDelete || other.Op == OpUpdate {
				other.Ticket = u64(42)
			}
			if out := h.run(&other); errCode(out.Err) != CodeConflict {
				t.Fatalf("key reused for another request: %+v (err %v), want conflict", out, out.Err)
			}
		})
	}
}

// Among the checks after the key: existence, then the ticket, then ifVersion.
func TestTicketCheckOrderAfterKey(t *testing.T) {
	h := newHarness(t)
	r := h.create(`{}`)
	h.ok(&Request{Op: OpAcquireTicket, RID: r.ID, TTLMs: i64(100)})
	for _, tt := range []struct {
		name string
		req  Request
		code Code
	}{
		{"stale ifVersion and no fence: the ticket wins", Request{Op: OpUpdate, RID: r.ID, Data: json.RawMessage(`1`), IfVersion: u64(9)}, CodeTicketHeld},
		{"stale ifVersion and a wrong fence", Request{Op: OpUpdate, RID: r.ID, Data: json.RawMessage(`1`), IfVersion: u64(9), Ticket: u64(7)}, CodeTicketHeld},
		{"stale ifVersion under the live fence", Request{Op: OpUpdate, RID: r.ID, Data: json.RawMessage(`1`), IfVersion: u64(9), Ticket: u64(1)}, CodeConflict},
		{"right ifVersion under the live fence", Request{Op: OpUpdate, RID: r.ID, Data: json.RawMessage(`1`), IfVersion: u64(1), Ticket: u64(1)}, ""},
	} {
		if out := h.run(&tt.req); errCode(out.Err) != tt.code {
			t.Errorf("%s: got %+v (err %v), want %q", tt.name, out, out.Err, tt.code)
		}
	}
}

func TestTicketEffectCodec(t *testing.T) {
	const rid = "3-01JDQ8T5Z8K3N2M4P6R8S0V2X4"
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, e := range []*Effect{
		{Kind: EffectTicket, RID: rid, Type: "job", Ticket: &TicketState{Fence: 1, Live: true, TTLMs: 30000}, At: at,
			Dedupe: &DedupeRecord{Key: "k", Hash: "h", Op: OpAcquireTicket, Epoch: 1, Seq: 2,
				Ticket: &TicketInfo{Fence: 1, ExpiresMs: 30000}, At: at}},
		{Kind: EffectTicket, RID: rid, Type: "job", Ticket: &TicketState{Fence: 9}, At: at},
		{Kind: EffectDelete, RID: rid, Version: 3, Ticket: &TicketState{Fence: 9}, At: at},
	} {
		b, err := EncodeEffect(e)
		if err != nil {
			t.Fatalf("EncodeEffect(%+v): %v", e, err)
		}
		got, err := DecodeEffect(b)
		if err != nil || !reflect.DeepEqual(&got, e) {
			t.Fatalf("round trip of %s: %+v, %v", b, got, err)
		}
	}
	res := `{"id":"` + rid + `","type":"t","version":1,"data":1,"created":"2025-01-01T00:00:00Z","updated":"2025-01-01T00:00:00Z"}`
	for _, tt := range []struct{ in, msg string }{
		{`{"k":6,"type":"t","rid":"` + rid + `"}`, "carries no ticket"},
		{`{"k":6,"tk":{"fence":1}}`, "effect of kind 6"},
		{`{"k":6,"rid":"` + rid + `","tk":{"fence":1}}`, "lacks a valid resource type"},
		{`{"k":6,"type":"a b","rid":"` + rid + `","tk":{"fence":1}}`, "lacks a valid resource type"},
		{`{"k":6,"type":"t","rid":"` + rid + `","res":` + res + `,"tk":{"fence":1}}`, "changes the resource"},
		{`{"k":6,"type":"t","rid":"` + rid + `","v":2,"tk":{"fence":1}}`, "changes the resource"},
		{`{"k":6,"type":"t","rid":"` + rid + `","tk":{"fence":0}}`, "malformed"},
		{`{"k":6,"type":"t","rid":"` + rid + `","tk":{"fence":1,"live":true}}`, "malformed"},
		{`{"k":6,"type":"t","rid":"` + rid + `","tk":{"fence":1,"ttlMs":5}}`, "malformed"},
		{`{"k":6,"type":"t","rid":"` + rid + `","tk":{"fence":1,"live":true,"ttlMs":-5}}`, "malformed"},
		{`{"k":6,"type":"t","rid":"` + rid + `","tk":{"fence":1,"bogus":1}}`, "unknown field"},
		{`{"k":1,"rid":"` + rid + `","res":` + res + `,"tk":{"fence":1}}`, "carries a ticket"},
		{`{"k":2,"rid":"` + rid + `","v":2,"tk":{"fence":1,"live":true,"ttlMs":5}}`, "leaves a live ticket"},
		{`{"k":3,"tk":{"fence":1}}`, "carries a ticket"},
	} {
		if _, err := DecodeEffect([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("DecodeEffect(%s) = %v, want an error containing %q", tt.in, err, tt.msg)
		}
	}
	if _, err := EncodeEffect(&Effect{Kind: EffectTicket, RID: rid}); err == nil {
		t.Error("EncodeEffect of a ticket effect without a ticket succeeded")
	}
}

// expire applies the main's expiry of fence on rid, as a committed entry.
func (h *harness) expire(rid string, fence uint64) {
	h.t.Helper()
	e, err := ExpireTicket(h.v, rid, fence, h.now)
	if err != nil || e == nil {
		h.t.Fatalf("ExpireTicket(%s, %d) = %+v, %v", rid, fence, e, err)
	}
	h.v.apply(h.t, e)
	h.seq += 2
}

// errCode is the code of an outcome's error ("" for none); CodeOf takes an error, and a nil
// *Error in an error interface is not nil.
func errCode(e *Error) Code {
	if e == nil {
		return ""
	}
	return e.Code
}
