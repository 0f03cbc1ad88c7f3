package api

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sibylhq/sibyl/command"
)

func TestDecodeFrame(t *testing.T) {
	cases := []struct {
		frame   string
		id      string // "" for no id
		ok      bool
		message string // part of the error message
	}{
		{`{"id":"1","op":"get","rid":"1-01JDQ8T5Z8K3N2M4P6R8S0V2X4","consistency":"sibling","minSeq":7}`, "1", true, ""},
		{`{"id":"", "op":"list", "extra":{"ignored":[1,2]}}`, "", true, ""},
		{`{"id":"x","op":"list","limit":"x"}`, "x", false, `field "limit" must be an integer, got string`},
		{`{"id":"v","op":"delete","ifVersion":-1}`, "v", false, `field "ifVersion" must be a non-negative integer`},
		{`{"id":7,"op":"list"}`, "", false, "id must be a string, got 7"},
		{`{"id":"a","op":"list"} trailing`, "a", false, "not valid JSON"},
		{`{"id":"a","op":"get","rid":"1-01JDQ8T5Z8K3N2M4P6R8S0V2X4"}}`, "a", false, "not valid JSON"},
		{`{"id":"a","op":"create","type":"t","data":1} {"id":"b","op":"list"}`, "a", false, "not valid JSON"},
		{`{"id":"k","op":"create","type":"t","data":1,"key":""}`, "k", false, "key is empty"},
		{`{"id":"k","op":"update","rid":"1-01JDQ8T5Z8K3N2M4P6R8S0V2X4","data":1,"key":""}`, "k", false, "key is empty"},
		{`{"id":"k","op":"create","type":"t","data":1,"key":5}`, "k", false, `field "key" must be a string`},
		{`{"id":"k","op":"create","type":"t","data":1,"key":null}`, "k", true, ""},
		{`{"id":"u","op":"nope"}`, "u", false, `unknown op "nope"`},
		{`{"id":"e"}`, "e", false, "no op"},
		{`null`, "", false, ""},
		{``, "", false, "not valid JSON"},
		{`{"id":"a","id":"b","op":"list"}`, "b", true, ""},
		{`{"id":"a","op":"get","rid":` + strings.Repeat("[", 100), "a", false, "nested deeper than 64"},
		{`{"id":"q","op":"create","type":"t","data":"[[[[{{{{"}`, "q", true, ""}, // brackets in strings do not nest
	}
	for _, tc := range cases {
		id, req, err := decodeFrame([]byte(tc.frame), 64)
		if (req != nil) == (err != nil) {
			t.Fatalf("%s: got req=%v err=%v, want exactly one", tc.frame, req, err)
		}
		gotID := ""
		if id != nil {
			gotID = *id
		}
		if gotID != tc.id || (req != nil) != tc.ok {
			t.Fatalf("%s: got id=%q ok=%v err=%v, want id=%q ok=%v", tc.frame, gotID, req != nil, err, tc.id, tc.ok)
		}
		if err != nil && (err.Code != command.CodeBadRequest || !strings.Contains(err.Message, tc.message)) {
			t.Fatalf("%s: error %v, want bad_request mentioning %q", tc.frame, err, tc.message)
		}
	}
}

func TestDecodeFrameKeepsFields(t *testing.T) {
	_, req, err := decodeFrame([]byte(`{"id":"1","op":"update","rid":"r","data":{"a":[1]},"ifVersion":3,"key":"k","ticket":9,"server":2}`), 64)
	if err != nil {
		t.Fatal(err)
	}
	if req.Op != command.OpUpdate || req.RID != "r" || string(req.Data) != `{"a":[1]}` || *req.IfVersion != 3 ||
		req.Key != "k" || *req.Ticket != 9 || *req.Server != 2 {
		t.Fatalf("decoded %+v", req)
	}
}

func TestCheckDepth(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	if err := checkDepth([]byte(nest(64)), 64); err != nil {
		t.Fatalf("depth 64 refused: %v", err)
	}
	if err := checkDepth([]byte(nest(65)), 64); err == nil {
		t.Fatal("depth 65 accepted")
	}
	if err := checkDepth([]byte(`["\"[[[[[["]`), 2); err != nil {
		t.Fatalf("escaped quote inside a string confused the scanner: %v", err)
	}
}

// FuzzFrame feeds arbitrary bytes to the frame decoder: it must never panic, must yield
// exactly one of a request or an error, and errors must be bad_request.
func FuzzFrame(f *testing.F) {
	seeds := []string{
		`{"id":"1","op":"create","type":"doc","data":{"a":1},"key":"k"}`,
		`{"id":"2","op":"get","rid":"1-01JDQ8T5Z8K3N2M4P6R8S0V2X4","consistency":"sibling","minSeq":3}`,
		`{"id":"3","op":"list","limit":"x"}`,
		`{"id":4,"op":"list"}`,
		`{"id":"5","op":"subscribe","from":{"t":[1,2]}}`,
		`{"id":"6","op":"patch","patch":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`,
		`[`, `"`, `{"id":"\ud800"}`, "{\"id\":\"\xff\"}", `{"id":"7","op":"hello","token":"t"}`,
		`{"id":"8","op":"createRole","name":"r","grants":[{"types":["job","doc*"],"ops":["read","write"]}]}`,
		`{"id":"9","op":"createToken","role":"r","ttlMs":1000,"scope":["*"],"Scope":["*"],"bearer":"x","Bearer":"x"}`,
		`{"id":"10","op":"revokeToken","token":"sbt_x"}`, `{"id":"11","op":"createRole","grants":{"types":1}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		id, req, err := decodeFrame(frame, 64)
		checkFastFrame(t, frame, 64)
		if (req != nil) == (err != nil) {
			t.Fatalf("frame %q: req=%v err=%v, want exactly one", frame, req, err)
		}
		if err != nil && err.Code != command.CodeBadRequest {
			t.Fatalf("frame %q: error code %s, want bad_request", frame, err.Code)
		}
		if req != nil && (id == nil || !knownOps[req.Op]) {
			t.Fatalf("frame %q: accepted without an id or with op %q", frame, req.Op)
		}
		if req != nil && (req.Scope != nil || req.Bearer != "") {
			t.Fatalf("frame %q: a client set the server's own fields: scope %q bearer %q", frame, req.Scope, req.Bearer)
		}
		if id != nil && !utf8.ValidString(*id) && utf8.Valid(frame) {
			t.Fatalf("frame %q: id %q is not UTF-8", frame, *id)
		}
	})
}

// A frame's data counts as checked only when the frame's depth limit is within the one
// validation applies; a client cannot claim it.
func TestDecodeFrameMarksDataChecked(t *testing.T) {
	frame := []byte(`{"id":"a","op":"create","type":"t","data":{"x":1},"JSONChecked":false,"jsonChecked":true}`)
	_, req, err := decodeFrame(frame, command.MaxDepth)
	if err != nil || !req.JSONChecked {
		t.Fatalf("decode at the validation depth: %+v %v; want JSONChecked", req, err)
	}
	_, req, err = decodeFrame(frame, command.MaxDepth+10)
	if err != nil || req.JSONChecked {
		t.Fatalf("decode at a deeper limit: %+v %v; want data not marked checked", req, err)
	}
	bad := command.Request{Op: command.OpCreate, Type: "t", Data: []byte(`{"x":`)}
	if command.ValidateRequest(&bad) == nil {
		t.Fatal("invalid data passed validation when not marked checked")
	}
}
