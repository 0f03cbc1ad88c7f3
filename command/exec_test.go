package command

import (
	"encoding/json"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"
)

const group ServerID = 3

// harness executes commands against a mapView like a main would: one seq per entry, a
// clock that moves on, effects applied as soon as they are made.
type harness struct {
	t   *testing.T
	v   *mapView
	gen *IDGen
	seq uint64
	now time.Time
}

func newHarness(t *testing.T) *harness {
	// A non-UTC zone checks that everything stored is in UTC.
	now := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	return &harness{t: t, v: newMapView(), gen: NewIDGen(group, rand.New(rand.NewSource(1))), seq: 10, now: now}
}

func (h *harness) ctx() ExecContext {
	now := h.now
	return ExecContext{Group: group, Epoch: 7, Seq: h.seq, Now: now, NewID: func() RID { return h.gen.Next(now) }}
}

// run executes req, checks the shape of the outcome and applies its effect.
func (h *harness) run(req *Request) Outcome {
	h.t.Helper()
	out := Execute(h.v, req, h.ctx())
	n := 0
	for _, set := range []bool{out.Err != nil, out.Duplicate != nil, out.Effect != nil} {
		if set {
			n++
		}
	}
	if n != 1 || (out.Reply != nil) != (out.Effect != nil) {
		h.t.Fatalf("%s: outcome %+v is not exactly one of Err, Duplicate, Effect+Reply", req.Op, out)
	}
	if out.Effect != nil {
		h.v.apply(h.t, out.Effect)
		h.seq += 2 // seqs need not be contiguous
		h.now = h.now.Add(time.Millisecond)
	}
	return out
}

func (h *harness) ok(req *Request) Outcome {
	h.t.Helper()
	out := h.run(req)
	if out.Err != nil {
		h.t.Fatalf("%s: %v", req.Op, out.Err)
	}
	return out
}

func (h *harness) create(data string) *Resource {
	h.t.Helper()
	return h.ok(&Request{Op: OpCreate, Type: "doc", Data: json.RawMessage(data)}).Reply.Resource
}

func u64(v uint64) *uint64 { return &v }
func i64(v int64) *int64   { return &v }

func TestExecuteCreate(t *testing.T) {
	h := newHarness(t)
	out := h.ok(&Request{Op: OpCreate, Type: "a.B_c-9", Data: json.RawMessage(` { "x" : [1, 2] } `), Server: i64(3)})
	r := out.Reply.Resource
	rid, err := ParseRID(r.ID)
	if err != nil || rid.Server != group {
		t.Fatalf("rid %q: %v, server %d", r.ID, err, rid.Server)
	}
	now := h.now.Add(-time.Millisecond).UTC()
	want := &Resource{ID: r.ID, Type: "a.B_c-9", Version: 1, Data: json.RawMessage(`{"x":[1,2]}`), Created: now, Updated: now}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("resource\n got %+v\nwant %+v", r, want)
	}
	wantEff := &Effect{Kind: EffectPut, RID: r.ID, Resource: want, At: now}
	if !reflect.DeepEqual(out.Effect, wantEff) {
		t.Fatalf("effect\n got %+v\nwant %+v", out.Effect, wantEff)
	}
	if out.Reply.Epoch != 7 || out.Reply.Seq != 10 || out.Reply.Duplicate {
		t.Fatalf("reply %+v", out.Reply)
	}
	if null := h.create(`null`); string(null.Data) != "null" {
		t.Fatalf("data null stored as %s", null.Data)
	}
}

func TestExecuteWrites(t *testing.T) {
	tests := []struct {
		name string
		old  string
		req  Request
		data string // the resulting data; "" for a delete
	}{
		{"update replaces", `{"a":1,"b":2}`, Request{Op: OpUpdate, Data: json.RawMessage(`{"c": 3}`)}, `{"c":3}`},
		{"update to a scalar", `{"a":1}`, Request{Op: OpUpdate, Data: json.RawMessage(`"s"`)}, `"s"`},
		{"update with ifVersion", `{}`, Request{Op: OpUpdate, Data: json.RawMessage(`[]`), IfVersion: u64(1)}, `[]`},
		{"patch merges", `{"a":1,"b":{"c":2,"d":3}}`, Request{Op: OpPatch, Patch: json.RawMessage(`{"a":null,"b":{"c":5}}`)}, `{"b":{"c":5,"d":3}}`},
		{"patch on a non-object", `[1,2]`, Request{Op: OpPatch, Patch: json.RawMessage(`{"a":1}`)}, `{"a":1}`},
		{"non-object patch replaces", `{"a":1}`, Request{Op: OpPatch, Patch: json.RawMessage(`[true]`)}, `[true]`},
		{"delete", `{"a":1}`, Request{Op: OpDelete}, ""},
		{"delete with ifVersion", `{"a":1}`, Request{Op: OpDelete, IfVersion: u64(1)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			old := h.create(tt.old)
			req := tt.req
			req.RID = old.ID
			out := h.ok(&req)
			now := h.now.Add(-time.Millisecond).UTC()
			if tt.data == "" {
				want := &Effect{Kind: EffectDelete, RID: old.ID, Version: 2, Type: old.Type, At: now}
				if !reflect.DeepEqual(out.Effect, want) || out.Reply.Resource != nil {
					t.Fatalf("effect %+v, reply %+v; want effect %+v and no resource", out.Effect, out.Reply, want)
				}
				if r, tomb, _ := h.v.Resource(old.ID); r != nil || !tomb {
					t.Fatalf("after delete: %+v, tombstoned %v", r, tomb)
				}
				return
			}
			want := &Resource{ID: old.ID, Type: "doc", Version: 2, Data: json.RawMessage(tt.data), Created: old.Created, Updated: now}
			if !reflect.DeepEqual(out.Reply.Resource, want) || !reflect.DeepEqual(out.Effect.Resource, want) {
				t.Fatalf("got %+v\nwant %+v", out.Reply.Resource, want)
			}
			if out.Effect.Kind != EffectPut || out.Effect.RID != old.ID || !out.Effect.At.Equal(now) {
				t.Fatalf("effect %+v", out.Effect)
			}
		})
	}
}

// Version grows by exactly one per created, updated and deleted event, the tombstone
// included.
func TestExecuteVersionsGrowByOne(t *testing.T) {
	h := newHarness(t)
	r := h.create(`{}`)
	v2 := h.ok(&Request{Op: OpUpdate, RID: r.ID, Data: json.RawMessage(`1`)}).Reply.Resource.Version
	v3 := h.ok(&Request{Op: OpPatch, RID: r.ID, Patch: json.RawMessage(`{"a":1}`)}).Reply.Resource.Version
	v4 := h.ok(&Request{Op: OpDelete, RID: r.ID}).Effect.Version
	if r.Version != 1 || v2 != 2 || v3 != 3 || v4 != 4 {
		t.Fatalf("versions %d %d %d %d, want 1 2 3 4", r.Version, v2, v3, v4)
	}
}

func TestExecuteRefusals(t *testing.T) {
	deep := strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)
	other := NewIDGen(4, rand.New(rand.NewSource(2))).Next(time.Unix(1e9, 0)).String()
	unknown := NewIDGen(group, rand.New(rand.NewSource(3))).Next(time.Unix(1e9, 0)).String()
	tests := []struct {
		name string
		req  func(live, deleted string) *Request
		code Code
		msg  string
	}{
		{"unknown op", func(l, d string) *Request { return &Request{Op: "frobnicate"} }, CodeBadRequest, `unknown op "frobnicate"`},
		{"read op", func(l, d string) *Request { return &Request{Op: OpGet, RID: l} }, CodeBadRequest, `op "get" is not a resource write`},
		{"create without type", func(l, d string) *Request { return &Request{Op: OpCreate, Data: json.RawMessage(`1`)} }, CodeBadRequest, "type is missing"},
		{"create type with space", func(l, d string) *Request { return &Request{Op: OpCreate, Type: "a b", Data: json.RawMessage(`1`)} }, CodeBadRequest, `type "a b" has characters outside [a-zA-Z0-9_.-]`},
		{"create type of 65", func(l, d string) *Request {
			return &Request{Op: OpCreate, Type: strings.Repeat("t", 65), Data: json.RawMessage(`1`)}
		}, CodeBadRequest, "longer than 64"},
		{"create without data", func(l, d string) *Request { return &Request{Op: OpCreate, Type: "t"} }, CodeBadRequest, "data is missing"},
		{"create with bad JSON", func(l, d string) *Request { return &Request{Op: OpCreate, Type: "t", Data: json.RawMessage(`{"a":}`)} }, CodeBadRequest, "data is not valid JSON"},
		{"create too deep", func(l, d string) *Request { return &Request{Op: OpCreate, Type: "t", Data: json.RawMessage(deep)} }, CodeBadRequest, "deeper than 64"},
		{"create in another group", func(l, d string) *Request {
			return &Request{Op: OpCreate, Type: "t", Data: json.RawMessage(`1`), Server: i64(4)}
		}, CodeBadRequest, "server 4 is not this group (3)"},
		{"create server 0", func(l, d string) *Request {
			return &Request{Op: OpCreate, Type: "t", Data: json.RawMessage(`1`), Server: i64(0)}
		}, CodeBadRequest, "server 0 is not in 1..65535"},
		{"key of 129", func(l, d string) *Request {
			return &Request{Op: OpCreate, Type: "t", Data: json.RawMessage(`1`), Key: strings.Repeat("k", 129)}
		}, CodeBadRequest, "more than 128"},
		{"update without data", func(l, d string) *Request { return &Request{Op: OpUpdate, RID: l} }, CodeBadRequest, "data is missing"},
		{"patch without patch", func(l, d string) *Request { return &Request{Op: OpPatch, RID: l} }, CodeBadRequest, "patch is missing"},
		{"patch with bad JSON", func(l, d string) *Request { return &Request{Op: OpPatch, RID: l, Patch: json.RawMessage(`{`)} }, CodeBadRequest, "patch is not valid JSON"},
		{"delete without rid", func(l, d string) *Request { return &Request{Op: OpDelete} }, CodeBadRequest, "rid is missing"},
		{"lower-case rid", func(l, d string) *Request { return &Request{Op: OpDelete, RID: strings.ToLower(l)} }, CodeBadRequest, "upper case"},
		{"rid of another group", func(l, d string) *Request { return &Request{Op: OpDelete, RID: other} }, CodeBadRequest, "belongs to group 4, not 3"},
		{"ifVersion 0", func(l, d string) *Request { return &Request{Op: OpDelete, RID: l, IfVersion: u64(0)} }, CodeBadRequest, "ifVersion 0"},
		{"stale ifVersion", func(l, d string) *Request {
			return &Request{Op: OpUpdate, RID: l, Data: json.RawMessage(`1`), IfVersion: u64(2)}
		}, CodeConflict, "ifVersion 2 does not match version 1"},
		{"ifVersion of a deleted rid", func(l, d string) *Request { return &Request{Op: OpDelete, RID: d, IfVersion: u64(1)} }, CodeNotFound, "was deleted"},
		{"update deleted", func(l, d string) *Request { return &Request{Op: OpUpdate, RID: d, Data: json.RawMessage(`1`)} }, CodeNotFound, "was deleted"},
		{"patch deleted", func(l, d string) *Request { return &Request{Op: OpPatch, RID: d, Patch: json.RawMessage(`{}`)} }, CodeNotFound, "was deleted"},
		{"delete deleted", func(l, d string) *Request { return &Request{Op: OpDelete, RID: d} }, CodeNotFound, "was deleted"},
		{"update unknown", func(l, d string) *Request { return &Request{Op: OpUpdate, RID: unknown, Data: json.RawMessage(`1`)} }, CodeNotFound, "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			live := h.create(`{"a":1}`)
			deleted := h.create(`{}`)
			h.ok(&Request{Op: OpDelete, RID: deleted.ID})
			out := h.run(tt.req(live.ID, deleted.ID))
			if out.Err == nil || out.Err.Code != tt.code || !strings.Contains(out.Err.Message, tt.msg) {
				t.Fatalf("got %+v, want %s containing %q", out, tt.code, tt.msg)
			}
			if got, _, _ := h.v.Resource(live.ID); !reflect.DeepEqual(got, live) {
				t.Fatalf("refused command changed %q to %+v", live.ID, got)
			}
		})
	}
}

func TestExecuteViewErrors(t *testing.T) {
	h := newHarness(t)
	r := h.create(`{}`)
	h.v.err = errDisk
	for _, req := range []*Request{
		{Op: OpUpdate, RID: r.ID, Data: json.RawMessage(`1`)},
		{Op: OpCreate, Type: "t", Data: json.RawMessage(`1`), Key: "k"},
	} {
		if out := h.run(req); CodeOf(out.Err) != CodeInternal || !strings.Contains(out.Err.Message, errDisk.Error()) {
			t.Fatalf("%s with a failing view: %+v", req.Op, out)
		}
	}
}

func TestExecuteWithoutIDGenerator(t *testing.T) {
	ctx := ExecContext{Group: group, Now: time.Unix(1, 0)}
	if out := Execute(newMapView(), &Request{Op: OpCreate, Type: "t", Data: json.RawMessage(`1`)}, ctx); CodeOf(out.Err) != CodeInternal {
		t.Fatalf("got %+v, want internal", out)
	}
}

func TestExecuteIsDeterministic(t *testing.T) {
	a, b := newHarness(t), newHarness(t)
	for _, h := range []*harness{a, b} {
		r := h.create(`{"n":1}`)
		h.ok(&Request{Op: OpPatch, RID: r.ID, Patch: json.RawMessage(`{"m":2}`), Key: "p"})
	}
	if !reflect.DeepEqual(a.v, b.v) {
		t.Fatalf("same commands, different states:\n%+v\n%+v", a.v, b.v)
	}
}
