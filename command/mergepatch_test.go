package command

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestMergePatch(t *testing.T) {
	tests := []struct{ target, patch, want string }{
		// RFC 7386, Appendix A.
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a": {"b": "c"}}`, `{"a": {"b": "d", "c": null}}`, `{"a":{"b":"d"}}`},
		{`{"a": [{"b":"c"}]}`, `{"a": [1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"e":null,"a":1}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
		// RFC 7386, section 3: members keep their order, new ones come last.
		{`{"title":"Goodbye!","author":{"givenName":"John","familyName":"Doe"},"tags":["example","sample"],"content":"This will be unchanged"}`,
			`{"title":"Hello!","phoneNumber":"+01-123-456-7890","author":{"familyName":null},"tags":["example"]}`,
			`{"title":"Hello!","author":{"givenName":"John"},"tags":["example"],"content":"This will be unchanged","phoneNumber":"+01-123-456-7890"}`},
		// Beyond the RFC's table.
		{``, `{"a":1}`, `{"a":1}`},
		{`null`, `{"a":{"b":null}}`, `{"a":{}}`},
		{`"s"`, `{}`, `{}`},
		{`{"a":1}`, `{}`, `{"a":1}`},
		{` { "a" : [ 1 , 2 ] } `, `{ "b" : { "c" : 3 } }`, `{"a":[1,2],"b":{"c":3}}`},
		{`{"a":1,"b":2}`, `{"a":null,"a":5}`, `{"a":5,"b":2}`},  // the last duplicate is the value
		{`{"a":1,"a":2}`, `{"b":3}`, `{"a":2,"b":3}`},           // duplicate in the target
		{`{"a":1}`, `{"\u0061":2}`, `{"a":2}`},                  // names compare decoded
		{`{"<&>":1}`, `{"<&>":{"x":"<"}}`, `{"<&>":{"x":"<"}}`}, // no HTML escaping
		{`{"n":1.50e3}`, `{"m":-0}`, `{"n":1.50e3,"m":-0}`},     // numbers kept as written
		{`{"a":{"b":{"c":1}}}`, `{"a":{"b":{"d":2}}}`, `{"a":{"b":{"c":1,"d":2}}}`},
	}
	for _, tt := range tests {
		got, err := MergePatch(json.RawMessage(tt.target), json.RawMessage(tt.patch))
		if err != nil || string(got) != tt.want {
			t.Errorf("MergePatch(%s, %s) = %s, %v; want %s", tt.target, tt.patch, got, err, tt.want)
		}
	}
}

func TestMergePatchRefuses(t *testing.T) {
	nest := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	if _, err := MergePatch(json.RawMessage(nest(MaxDepth)), json.RawMessage(nest(MaxDepth))); err != nil {
		t.Fatalf("depth %d refused: %v", MaxDepth, err)
	}
	for _, tt := range []struct{ target, patch, msg string }{
		{`{}`, nest(MaxDepth + 1), "patch: JSON is nested deeper than 64 levels"},
		{nest(MaxDepth + 1), `{}`, "patch target: JSON is nested deeper"},
		{`{}`, `{"a":}`, "patch is not valid JSON"},
		{`{`, `{}`, "patch target is not valid JSON"},
		{`{}`, ``, "patch is not valid JSON"},
	} {
		_, err := MergePatch(json.RawMessage(tt.target), json.RawMessage(tt.patch))
		if CodeOf(err) != CodeBadRequest || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("MergePatch(%.20s, %.20s) = %v, want bad_request %q", tt.target, tt.patch, err, tt.msg)
		}
	}
}

func TestCheckDepth(t *testing.T) {
	for _, tt := range []struct {
		in  string
		max int
		ok  bool
	}{
		{`1`, 0, true},
		{`[]`, 0, false},
		{`[]`, 1, true},
		{`[[{}]]`, 3, true},
		{`[[{}]]`, 2, false},
		{`[[],[],[]]`, 2, true},
		{`["[[[[", "\"[[[["]`, 1, true}, // brackets inside strings, after an escaped quote
		{`["\\", [[]]]`, 2, false},      // an escaped backslash ends no string
		{`{"a":{"b":[1]}}`, 3, true},
	} {
		if err := CheckDepth(json.RawMessage(tt.in), tt.max); (err == nil) != tt.ok {
			t.Errorf("CheckDepth(%s, %d) = %v, want ok=%v", tt.in, tt.max, err, tt.ok)
		}
	}
}

// FuzzMergePatch checks that MergePatch never panics, refuses only with bad_request, and
// that what it returns is compact, shallow enough, idempotent, and holds every member the
// patch sets.
func FuzzMergePatch(f *testing.F) {
	f.Add(`{"a":"b"}`, `{"a":null,"b":{"c":[1]}}`)
	f.Add(`[1,2]`, `{"a":"b","c":null}`)
	f.Add(`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`)
	f.Add(``, `{"a":1,"a":null}`)
	f.Add(`{"x":"\"}"}`, `"s"`)
	f.Add(`{`, `{}`)
	f.Add(strings.Repeat("[", 70), `{}`)
	f.Fuzz(func(t *testing.T, target, patch string) {
		got, err := MergePatch(json.RawMessage(target), json.RawMessage(patch))
		if err != nil {
			if CodeOf(err) != CodeBadRequest {
				t.Fatalf("refused with %v", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, got); err != nil || !bytes.Equal(buf.Bytes(), got) {
			t.Fatalf("result %q is not compact JSON (%v)", got, err)
		}
		if CheckDepth(got, MaxDepth) != nil {
			t.Fatalf("result %q is too deep", got)
		}
		again, err := MergePatch(got, json.RawMessage(patch))
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("patching twice: %s, %v; once: %s", again, err, got)
		}
		p, _ := checkJSON("patch", json.RawMessage(patch))
		if !isObject(p) {
			if !bytes.Equal(got, p) {
				t.Fatalf("non-object patch %s gave %s", p, got)
			}
			return
		}
		var res, ops object
		if err := res.parse(got); err != nil {
			t.Fatalf("result %s is not an object: %v", got, err)
		}
		if err := ops.parse(p); err != nil {
			t.Fatal(err)
		}
		for _, m := range ops.members {
			v := res.get(m.name)
			switch {
			case string(m.value) == "null" && v != nil:
				t.Fatalf("member %q set to null is still there: %s", m.name, got)
			case string(m.value) != "null" && !isObject(m.value) && !bytes.Equal(v, m.value):
				t.Fatalf("member %q is %s, patch says %s", m.name, v, m.value)
			}
		}
	})
}
