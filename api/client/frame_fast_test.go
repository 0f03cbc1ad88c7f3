package client

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/sibylhq/sibyl/command"
)

func ptrI(v int64) *int64   { return &v }
func ptrU(v uint64) *uint64 { return &v }

// The fast encoding of a request frame is the same JSON object as json.Marshal's, with the
// fields in the same order; requests it does not cover, and strings that need escaping,
// are left to json.Marshal.
func TestRequestFrameMatchesJSON(t *testing.T) {
	covered := []*command.Request{
		{Op: command.OpUpdate, RID: "1-01J0000000000000000000000A", Data: json.RawMessage(`{ "payload" : [1, 2, {"x":"y"}] }`)},
		{Op: command.OpCreate, Type: "job", Data: json.RawMessage(`"a<b>&c"`), Server: ptrI(3), Key: "k-1"},
		{Op: command.OpPatch, RID: "2-01J0000000000000000000000B", Patch: json.RawMessage(`{"a":null}`), IfVersion: ptrU(7)},
		{Op: command.OpGet, RID: "2-01J0000000000000000000000B", Consistency: command.SiblingRead, MinSeq: 12},
		{Op: command.OpAcquireTicket, RID: "2-01J0000000000000000000000B", TTLMs: ptrI(3000), Ticket: ptrU(4)},
		{Op: command.OpDelete, RID: "2-01J0000000000000000000000B"},
		{},
	}
	for _, r := range covered {
		fast, ok := appendRequestFrame(nil, "17", r)
		if !ok {
			t.Fatalf("%+v: not covered by the fast encoding", r)
		}
		slow, err := json.Marshal(outFrame{ID: "17", Request: r})
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal(fast, &a); err != nil {
			t.Fatalf("%+v: fast frame %s is not JSON: %v", r, fast, err)
		}
		json.Unmarshal(slow, &b)
		if !reflect.DeepEqual(a, b) || keyOrder(fast) != keyOrder(slow) {
			t.Fatalf("%+v:\nfast %s\njson %s", r, fast, slow)
		}
	}
	left := []*command.Request{
		{Op: command.OpList, After: "1-01J0000000000000000000000A", Limit: 10},
		{Op: command.OpSubscribe, Sub: "s", From: json.RawMessage(`"tok"`)},
		{Op: command.OpHello, Token: "t"},
		{Op: command.OpDrain, Node: ptrI(2)},
		{Op: command.OpCreate, Type: "jöb", Data: json.RawMessage(`1`)},
		{Op: command.OpUpdate, RID: "1-x", Data: json.RawMessage(`{"a":`)},
	}
	for _, r := range left {
		if _, ok := appendRequestFrame(nil, "1", r); ok {
			t.Errorf("%+v: the fast encoding took a request it does not cover", r)
		}
	}
}

// keyOrder is the order of a frame's top-level keys.
func keyOrder(frame []byte) string {
	dec := json.NewDecoder(bytes.NewReader(frame))
	dec.Token()
	var keys string
	for dec.More() {
		k, _ := dec.Token()
		keys += k.(string) + ","
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	return keys
}

func BenchmarkRequestFrame(b *testing.B) {
	r := &command.Request{Op: command.OpUpdate, RID: "1-01J0000000000000000000000A",
		Data: json.RawMessage(`{"payload":"` + string(make([]byte, 0)) + `0123456789012345678901234567890123456789"}`)}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for range b.N {
			buf, _ = appendRequestFrame(buf[:0], "12345", r)
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			json.Marshal(outFrame{ID: "12345", Request: r})
		}
	})
}
