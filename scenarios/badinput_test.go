package scenarios

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestBadInputOnRealNode: malformed frames, unknown ops, wrong types, bad IDs, deep and
// oversized payloads get the error codes of docs/protocol.md on a real node, change nothing, and the
// connection keeps working.
func TestBadInputOnRealNode(t *testing.T) {
	c := StartCluster(t, Options{Nodes: 2})
	c.WaitVoting(1, 1)
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+c.Node(1).HTTP+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	type reply struct {
		ID    json.RawMessage `json:"id"`
		OK    bool            `json:"ok"`
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
		Resources []json.RawMessage `json:"resources"`
	}
	roundTrip := func(kind int, frame []byte) reply {
		t.Helper()
		ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := ws.WriteMessage(kind, frame); err != nil {
			t.Fatalf("write: %v", err)
		}
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		var r reply
		if err := ws.ReadJSON(&r); err != nil {
			t.Fatalf("read after %q: %v", string(frame[:min(len(frame), 40)]), err)
		}
		return r
	}
	count := func() int {
		r := roundTrip(websocket.TextMessage, []byte(`{"id":"count","op":"list","limit":1000}`))
		if !r.OK {
			t.Fatalf("list failed: %+v", r.Error)
		}
		return len(r.Resources)
	}
	before := count()
	deep := strings.Repeat(`{"a":`, 200) + "1" + strings.Repeat("}", 200)
	huge := `{"id":"big","op":"create","type":"t","data":"` + strings.Repeat("x", 2<<20) + `"}`
	for _, tc := range []struct {
		name  string
		kind  int
		frame string
		code  string
		nilID bool
	}{
		{"bad json", websocket.TextMessage, `{"id":"1","op":`, "bad_request", false},
		{"not json", websocket.TextMessage, `nonsense`, "bad_request", true},
		{"binary frame", websocket.BinaryMessage, `{"id":"2","op":"list"}`, "bad_request", true},
		{"id not a string", websocket.TextMessage, `{"id":7,"op":"list"}`, "bad_request", true},
		{"unknown op", websocket.TextMessage, `{"id":"3","op":"frobnicate"}`, "bad_request", false},
		{"wrong type", websocket.TextMessage, `{"id":"4","op":"list","limit":"many"}`, "bad_request", false},
		{"bad rid", websocket.TextMessage, `{"id":"5","op":"get","rid":"01-abc"}`, "bad_request", false},
		{"unknown rid", websocket.TextMessage, `{"id":"6","op":"get","rid":"1-01JDQ8T5Z8K3N2M4P6R8S0V2X4"}`, "not_found", false},
		{"bad type", websocket.TextMessage, `{"id":"7","op":"create","type":"a b","data":1}`, "bad_request", false},
		{"server out of range", websocket.TextMessage, `{"id":"8","op":"create","type":"t","data":1,"server":70000}`, "bad_request", false},
		{"deep payload", websocket.TextMessage, `{"id":"9","op":"create","type":"t","data":` + deep + `}`, "bad_request", false},
		{"oversized frame", websocket.TextMessage, huge, "too_large", true},
		{"trailing brace", websocket.TextMessage, `{"id":"10","op":"create","type":"t","data":1}}`, "bad_request", false},
		{"two objects", websocket.TextMessage, `{"id":"11","op":"create","type":"t","data":1}{"id":"12","op":"list"}`, "bad_request", false},
		{"empty key", websocket.TextMessage, `{"id":"13","op":"create","type":"t","data":1,"key":""}`, "bad_request", false},
	} {
		r := roundTrip(tc.kind, []byte(tc.frame))
		if r.OK || r.Error == nil || r.Error.Code != tc.code {
			t.Errorf("%s: got ok=%v error=%+v, want %s", tc.name, r.OK, r.Error, tc.code)
		}
		if tc.nilID && string(r.ID) != "null" {
			t.Errorf("%s: id %s, want null", tc.name, r.ID)
		}
	}
	if after := count(); after != before {
		t.Fatalf("bad input changed the data: %d resources before, %d after", before, after)
	}
	r := roundTrip(websocket.TextMessage, []byte(`{"id":"ok","op":"create","type":"t","data":{"fine":true}}`))
	if !r.OK {
		t.Fatalf("a valid request after the bad ones failed: %+v", r.Error)
	}
}
