package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sibylhq/sibyl/api/internal/fake"
	"github.com/sibylhq/sibyl/command"
)

// The in-memory backend lives in api/internal/fake so that the client's tests drive the
// same one; this file adapts it to Backend and holds the test harness.

type fakeBackend struct{ *fake.Backend }

func (b fakeBackend) NewSession(out Outbox) Session { return b.Backend.NewSession(out) }

// harness is a Server over a fake backend behind an httptest server.
type harness struct {
	t    *testing.T
	fake *fake.Backend
	srv  *Server
	http *httptest.Server
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	fb := fake.New()
	return newHarnessFor(t, fakeBackend{fb}, fb, opts)
}

func newHarnessFor(t *testing.T, b Backend, fb *fake.Backend, opts Options) *harness {
	t.Helper()
	s := NewServer(b, opts)
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.Close()
		hs.Close()
	})
	return &harness{t: t, fake: fb, srv: s, http: hs}
}

// wsClient is a raw WebSocket connection for writing exact frames.
type wsClient struct {
	t *testing.T
	c *websocket.Conn
}

func (h *harness) dial(header http.Header) *wsClient {
	h.t.Helper()
	url := "ws" + strings.TrimPrefix(h.http.URL, "http") + "/v1/ws"
	c, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		h.t.Fatalf("dial %s: %v", url, err)
	}
	resp.Body.Close()
	h.t.Cleanup(func() { c.Close() })
	return &wsClient{t: h.t, c: c}
}

func bearerHeader(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

func (w *wsClient) send(frame string) {
	w.t.Helper()
	w.sendKind(websocket.TextMessage, []byte(frame))
}

func (w *wsClient) sendKind(kind int, frame []byte) {
	w.t.Helper()
	if err := w.c.WriteMessage(kind, frame); err != nil {
		w.t.Fatalf("write frame %q: %v", clip(frame), err)
	}
}

// testReply is a received reply, decoded twice: as a map to check which fields are
// present, and as the typed reply to check their values.
type testReply struct {
	ID     json.RawMessage
	OK     bool
	Error  *command.Error
	Fields map[string]json.RawMessage
	Reply  command.Reply
}

func (w *wsClient) recv() testReply {
	w.t.Helper()
	w.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	kind, data, err := w.c.ReadMessage()
	if err != nil {
		w.t.Fatalf("read reply: %v", err)
	}
	if kind != websocket.TextMessage {
		w.t.Fatalf("reply is frame type %d, want text", kind)
	}
	return decodeTestReply(w.t, data)
}

func decodeTestReply(t *testing.T, data []byte) testReply {
	t.Helper()
	var r testReply
	if err := json.Unmarshal(data, &r.Fields); err != nil {
		t.Fatalf("reply %s is not a JSON object: %v", data, err)
	}
	r.ID = r.Fields["id"]
	json.Unmarshal(r.Fields["ok"], &r.OK)
	if raw, ok := r.Fields["error"]; ok {
		r.Error = &command.Error{}
		if err := json.Unmarshal(raw, r.Error); err != nil {
			t.Fatalf("reply %s: bad error object: %v", data, err)
		}
	}
	if err := json.Unmarshal(data, &r.Reply); err != nil {
		t.Fatalf("reply %s does not decode as a reply: %v", data, err)
	}
	return r
}

// roundTrip sends one frame and returns the next reply.
func (w *wsClient) roundTrip(frame string) testReply {
	w.t.Helper()
	w.send(frame)
	return w.recv()
}

// mustOK fails unless r is a success with the given id.
func mustOK(t *testing.T, r testReply, id string) {
	t.Helper()
	if !r.OK || r.Error != nil || string(r.ID) != `"`+id+`"` {
		t.Fatalf("want ok reply with id %q, got id=%s ok=%v error=%+v", id, r.ID, r.OK, r.Error)
	}
}

// mustFail fails unless r is an error with the given code and raw id ("null" or `"x"`).
func mustFail(t *testing.T, r testReply, code command.Code, rawID string) {
	t.Helper()
	if r.OK || r.Error == nil || r.Error.Code != code || string(r.ID) != rawID {
		t.Fatalf("want error %s with id %s, got id=%s ok=%v error=%+v", code, rawID, r.ID, r.OK, r.Error)
	}
	if r.Error.Retryable != code.Retryable() {
		t.Fatalf("error %s: retryable=%v, want %v", code, r.Error.Retryable, code.Retryable())
	}
	if r.Error.Message == "" {
		t.Fatalf("error %s has no message", code)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// createOne creates a resource over ws and returns its rid.
func (w *wsClient) createOne(id string) string {
	w.t.Helper()
	r := w.roundTrip(`{"id":"` + id + `","op":"create","type":"doc","data":{"n":1}}`)
	mustOK(w.t, r, id)
	return r.Reply.Resource.ID
}
