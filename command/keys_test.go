package command

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestExecuteKeyedWrite(t *testing.T) {
	h := newHarness(t)
	first := h.ok(&Request{Op: OpCreate, Type: "t", Data: json.RawMessage(`{"a": 1}`), Key: "k1", Server: i64(3)})
	d := first.Effect.Dedupe
	want := &DedupeRecord{Key: "k1", Hash: RequestHash(&Request{Op: OpCreate, Type: "t", Data: json.RawMessage(`{"a":1}`), Server: i64(3)}),
		Op: OpCreate, Epoch: 7, Seq: 10, Resource: first.Reply.Resource, At: first.Effect.At}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("dedupe record\n got %+v\nwant %+v", d, want)
	}
	if first.Reply.Duplicate {
		t.Fatal("first write says duplicate")
	}

	// A retry with other insignificant whitespace is the same request.
	retry := h.run(&Request{Op: OpCreate, Type: "t", Data: json.RawMessage("{\"a\":1}\n"), Key: "k1", Server: i64(3)})
	if !reflect.DeepEqual(retry.Duplicate, d) {
		t.Fatalf("retry: %+v, want duplicate %+v", retry, d)
	}
	if r := retry.Duplicate.Reply(); !r.Duplicate || r.Seq != 10 || r.Epoch != 7 || r.Resource.ID != first.Reply.Resource.ID {
		t.Fatalf("duplicate reply %+v", r)
	}

	for name, req := range map[string]*Request{
		"other data":     {Op: OpCreate, Type: "t", Data: json.RawMessage(`{"a":2}`), Key: "k1", Server: i64(3)},
		"other type":     {Op: OpCreate, Type: "u", Data: json.RawMessage(`{"a":1}`), Key: "k1", Server: i64(3)},
		"server omitted": {Op: OpCreate, Type: "t", Data: json.RawMessage(`{"a":1}`), Key: "k1"},
		"other op":       {Op: OpUpdate, RID: first.Reply.Resource.ID, Data: json.RawMessage(`{"a":1}`), Key: "k1"},
	} {
		if out := h.run(req); CodeOf(out.Err) != CodeConflict || !strings.Contains(out.Err.Message, `key "k1"`) {
			t.Errorf("%s: got %+v, want conflict", name, out)
		}
	}
	// Validation still comes first: a malformed repeat is a bad request, not a duplicate.
	if out := h.run(&Request{Op: OpCreate, Type: "t", Data: json.RawMessage(`{"a":`), Key: "k1", Server: i64(3)}); CodeOf(out.Err) != CodeBadRequest {
		t.Fatalf("malformed repeat: %+v", out)
	}
	if h.seq != 12 {
		t.Fatalf("repeats appended entries: seq %d", h.seq)
	}
}

// docs/replication.md case 9, scenario C: a retry is answered by its key before anything about
// the resource's current state can refuse it.
func TestExecuteKeyCheckedFirst(t *testing.T) {
	t.Run("retry of a delete that succeeded", func(t *testing.T) {
		h := newHarness(t)
		r := h.create(`{}`)
		del := &Request{Op: OpDelete, RID: r.ID, Key: "del"}
		first := h.ok(del)
		if first.Effect.Dedupe == nil || first.Effect.Dedupe.Resource != nil {
			t.Fatalf("delete dedupe record %+v", first.Effect.Dedupe)
		}
		if out := h.run(del); out.Duplicate == nil || out.Duplicate.Seq != first.Reply.Seq {
			t.Fatalf("retry got %+v, want the duplicate of seq %d", out, first.Reply.Seq)
		}
	})
	t.Run("retry with a stale ifVersion", func(t *testing.T) {
		h := newHarness(t)
		r := h.create(`{}`)
		upd := &Request{Op: OpUpdate, RID: r.ID, Data: json.RawMessage(`{"x":1}`), IfVersion: u64(1), Key: "u"}
		first := h.ok(upd)
		h.ok(&Request{Op: OpPatch, RID: r.ID, Patch: json.RawMessage(`{"y":2}`)})
		out := h.run(upd)
		if out.Duplicate == nil || !reflect.DeepEqual(out.Duplicate.Resource, first.Reply.Resource) {
			t.Fatalf("retry got %+v, want the first result %+v", out, first.Reply.Resource)
		}
		if out.Duplicate.Resource.Version != 2 {
			t.Fatalf("duplicate carries version %d, want the resource as it was then (2)", out.Duplicate.Resource.Version)
		}
	})
	t.Run("reused key on a deleted rid is a conflict, not not_found", func(t *testing.T) {
		h := newHarness(t)
		r := h.create(`{}`)
		h.ok(&Request{Op: OpDelete, RID: r.ID, Key: "k"})
		if out := h.run(&Request{Op: OpDelete, RID: r.ID, Key: "k", IfVersion: u64(1)}); CodeOf(out.Err) != CodeConflict {
			t.Fatalf("got %+v, want conflict", out)
		}
	})
	t.Run("key of 128 characters", func(t *testing.T) {
		h := newHarness(t)
		key := strings.Repeat("é", MaxKeyLen)
		req := &Request{Op: OpCreate, Type: "t", Data: json.RawMessage(`1`), Key: key}
		h.ok(req)
		if out := h.run(req); out.Duplicate == nil {
			t.Fatalf("retry got %+v", out)
		}
	})
}
