package api

import (
	"reflect"
	"strings"
	"testing"

	"github.com/sibylhq/sibyl/command"
)

// checkFastFrame fails when the fast decoder takes frame and decodes it otherwise than
// encoding/json does.
func checkFastFrame(t *testing.T, frame []byte, maxDepth int) (fast bool) {
	t.Helper()
	id, req, ok := decodeFastFrame(frame, maxDepth)
	if !ok {
		return false
	}
	wantID, want, err := decodeJSONFrame(frame, maxDepth)
	if err != nil {
		t.Fatalf("%s: the fast decoder took a frame encoding/json refuses: %v", frame, err)
	}
	if *id != *wantID || !reflect.DeepEqual(req, want) {
		t.Fatalf("%s:\n fast %q %+v\n json %q %+v", frame, *id, req, *wantID, want)
	}
	return true
}

func TestFastFrameMatchesJSON(t *testing.T) {
	fast := []string{
		`{"id":"1","op":"update","rid":"1-01JDQ8T5Z8K3N2M4P6R8S0V2X4","data":{"n":3,"pad":"x\"}"}}`,
		` { "id" : "2" , "op" : "create" , "type" : "doc" , "data" : [ 1 , 2 ] , "server" : -3 , "key" : "k" } `,
		`{"id":"3","op":"get","rid":"r","consistency":"sibling","minSeq":18446744073709551615}`,
		`{"id":"4","op":"patch","rid":"r","patch":{"a":null},"ifVersion":7,"ticket":2}`,
		`{"id":"5","op":"acquireTicket","rid":"r","ttlMs":3000}`,
		`{"id":"6","op":"list","type":"t","after":"a","limit":10}`,
		`{"id":"7","op":"subscribe","from":"tok","sub":"x"}`,
		`{"id":"8","op":"hello","token":"sbt_abc"}`,
		`{"id":"9","op":"drain","node":2}`,
		`{"id":"10","op":"deleteRole","name":"r"}`,
		`{"id":"11","op":"createToken","role":"r"}`,
		`{"id":"12","op":"create","type":"t","data":"\u00e9"}`,
	}
	for _, f := range fast {
		if !checkFastFrame(t, []byte(f), command.MaxDepth) {
			t.Errorf("%s: left to encoding/json, want the fast decoder", f)
		}
	}
	slow := []string{
		`{"id":"1","op":"update","rid":"r","data":null}`,
		`{"id":"1","op":"update","rid":"r","key":""}`,
		`{"id":"1","op":"nope"}`,
		`{"id":"1"}`,
		`{"op":"get"}`,
		`{"id":1,"op":"get"}`,
		`{"id":"1","op":"get","rid":"r\u0031"}`,
		`{"id":"1","op":"get","RID":"r"}`,
		`{"id":"1","op":"get","scope":["*"]}`,
		`{"id":"1","op":"list","limit":1.5}`,
		`{"id":"1","op":"list","limit":"1"}`,
		`{"id":"1","op":"createRole","name":"r","grants":[]}`,
		`{"id":"1","op":"get"}x`,
		"{\"id\":\"1\",\"op\":\"create\",\"type\":\"t\",\"data\":\"\xff\"}",
		`{"id":"1","op":"create","type":"t","data":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`,
	}
	for _, f := range slow {
		if _, _, ok := decodeFastFrame([]byte(f), command.MaxDepth); ok {
			t.Errorf("%s: taken by the fast decoder, want encoding/json", f)
		}
	}
}

func BenchmarkDecodeFrame(b *testing.B) {
	frame := []byte(`{"id":"12345","op":"update","rid":"1-01JDQ8T5Z8K3N2M4P6R8S0V2X4","data":{"n":12345,"pad":"` +
		strings.Repeat("x", 256) + `"}}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			decodeFrame(frame, command.MaxDepth)
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			decodeJSONFrame(frame, command.MaxDepth)
		}
	})
}
