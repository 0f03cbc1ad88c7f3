package command

import (
	"encoding/json"
	"testing"
)

func TestRequestHash(t *testing.T) {
	base := func() *Request {
		return &Request{Op: OpUpdate, RID: "3-01JDQ8T5Z8K3N2M4P6R8S0V2X4", Data: json.RawMessage(`{"a":[1,2]}`), IfVersion: u64(4)}
	}
	h := RequestHash(base())
	if len(h) != 64 {
		t.Fatalf("hash %q is not hex SHA-256", h)
	}
	same := map[string]func(r *Request){
		"identical":        func(r *Request) {},
		"whitespace":       func(r *Request) { r.Data = json.RawMessage(" {\"a\" : [1,\n2]} ") },
		"another key":      func(r *Request) { r.Key = "other" },
		"read-only fields": func(r *Request) { r.Consistency = SiblingRead; r.Limit = 3 },
	}
	for name, change := range same {
		r := base()
		change(r)
		if got := RequestHash(r); got != h {
			t.Errorf("%s: hash changed", name)
		}
	}
	differ := map[string]func(r *Request){
		"op":             func(r *Request) { r.Op = OpPatch },
		"rid":            func(r *Request) { r.RID = "4-01JDQ8T5Z8K3N2M4P6R8S0V2X4" },
		"type":           func(r *Request) { r.Type = "t" },
		"data":           func(r *Request) { r.Data = json.RawMessage(`{"a":[2,1]}`) },
		"data to patch":  func(r *Request) { r.Patch, r.Data = r.Data, nil },
		"no ifVersion":   func(r *Request) { r.IfVersion = nil },
		"ifVersion":      func(r *Request) { r.IfVersion = u64(5) },
		"ticket":         func(r *Request) { r.Ticket = u64(4) },
		"ttl":            func(r *Request) { r.TTLMs = i64(4) },
		"server":         func(r *Request) { r.Server = i64(4) },
		"string in data": func(r *Request) { r.Data = json.RawMessage(`{"a":[1,2],"b":" "}`) },
	}
	seen := map[string]string{}
	for name, change := range differ {
		r := base()
		change(r)
		got := RequestHash(r)
		if got == h {
			t.Errorf("%s: hash did not change", name)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("%s and %s hash alike", name, other)
		}
		seen[got] = name
	}
}
