package api

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sibylhq/sibyl/api/internal/fake"
	"github.com/sibylhq/sibyl/command"
)

// Every malformed frame gets its error and leaves the connection usable: each case is
// followed by a valid request on the same connection.
func TestBadFramesKeepConnectionUsable(t *testing.T) {
	h := newHarness(t, Options{MaxFrameBytes: 4096, MaxDepth: 16})
	ws := h.dial(nil)
	deep := `{"id":"d","op":"create","type":"t","data":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`
	cases := []struct {
		name  string
		kind  int
		frame string
		code  command.Code
		id    string
	}{
		{"malformed JSON", websocket.TextMessage, `{"op":"get",`, command.CodeBadRequest, "null"},
		{"malformed after a readable id", websocket.TextMessage, `{"id":"m","op":"get","rid":}`, command.CodeBadRequest, `"m"`},
		{"not JSON at all", websocket.TextMessage, `hello`, command.CodeBadRequest, "null"},
		{"not an object", websocket.TextMessage, `[1,2,3]`, command.CodeBadRequest, "null"},
		{"binary frame", websocket.BinaryMessage, `{"id":"b","op":"list"}`, command.CodeBadRequest, "null"},
		{"id is a number", websocket.TextMessage, `{"id":5,"op":"list"}`, command.CodeBadRequest, "null"},
		{"id is null", websocket.TextMessage, `{"id":null,"op":"list"}`, command.CodeBadRequest, "null"},
		{"id missing", websocket.TextMessage, `{"op":"list"}`, command.CodeBadRequest, "null"},
		{"limit is a string", websocket.TextMessage, `{"id":"x","op":"list","limit":"x"}`, command.CodeBadRequest, `"x"`},
		{"server is a string", websocket.TextMessage, `{"id":"s","op":"list","server":"1"}`, command.CodeBadRequest, `"s"`},
		{"ifVersion negative", websocket.TextMessage, `{"id":"v","op":"delete","rid":"1-01JDQ8T5Z8K3N2M4P6R8S0V2X4","ifVersion":-1}`, command.CodeBadRequest, `"v"`},
		{"op is a number", websocket.TextMessage, `{"id":"o","op":7}`, command.CodeBadRequest, `"o"`},
		{"unknown op", websocket.TextMessage, `{"id":"u","op":"frobnicate"}`, command.CodeBadRequest, `"u"`},
		{"missing op", websocket.TextMessage, `{"id":"n"}`, command.CodeBadRequest, `"n"`},
		{"nested too deep", websocket.TextMessage, deep, command.CodeBadRequest, `"d"`},
		{"invalid UTF-8", websocket.TextMessage, "{\"id\":\"\xff\xfe\",\"op\":\"list\"}", command.CodeBadRequest, "null"},
		{"oversized frame", websocket.TextMessage, `{"id":"big","op":"create","type":"t","data":"` + strings.Repeat("a", 10000) + `"}`, command.CodeTooLarge, "null"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws.t = t
			ws.sendKind(tc.kind, []byte(tc.frame))
			r := ws.recv()
			if tc.id == "null" && string(r.ID) == "null" {
				// "id": null must be present, not omitted.
				if _, ok := r.Fields["id"]; !ok {
					t.Fatalf("reply has no id field: %v", r.Fields)
				}
			}
			mustFail(t, r, tc.code, tc.id)
			id := "after" + string(rune('a'+i))
			mustOK(t, ws.roundTrip(`{"id":"`+id+`","op":"list"}`), id)
		})
	}
}

func TestAuthentication(t *testing.T) {
	h := newHarness(t, Options{ClientTokens: []string{"client"}, AdminTokens: []string{"admin"}})

	t.Run("no token", func(t *testing.T) {
		ws := h.dial(nil)
		mustFail(t, ws.roundTrip(`{"id":"1","op":"list"}`), command.CodeUnauthorized, `"1"`)
		mustFail(t, ws.roundTrip(`{"id":"2","op":"status"}`), command.CodeUnauthorized, `"2"`)
	})
	t.Run("bad token on upgrade", func(t *testing.T) {
		ws := h.dial(bearerHeader("wrong"))
		mustFail(t, ws.roundTrip(`{"id":"1","op":"list"}`), command.CodeUnauthorized, `"1"`)
	})
	t.Run("hello with a bad token, then a good one", func(t *testing.T) {
		ws := h.dial(nil)
		mustFail(t, ws.roundTrip(`{"id":"h","op":"hello","token":"wrong"}`), command.CodeUnauthorized, `"h"`)
		mustFail(t, ws.roundTrip(`{"id":"1","op":"list"}`), command.CodeUnauthorized, `"1"`)
		mustOK(t, ws.roundTrip(`{"id":"h2","op":"hello","token":"client"}`), "h2")
		mustOK(t, ws.roundTrip(`{"id":"2","op":"list"}`), "2")
	})
	t.Run("client token cannot run admin ops", func(t *testing.T) {
		ws := h.dial(bearerHeader("client"))
		mustOK(t, ws.roundTrip(`{"id":"1","op":"list"}`), "1")
		for _, op := range []string{"registerSibling", "removeSibling", "promote", "drain"} {
			mustFail(t, ws.roundTrip(`{"id":"a","op":"`+op+`","server":1,"node":2}`), command.CodeForbidden, `"a"`)
		}
	})
	t.Run("admin token on upgrade", func(t *testing.T) {
		ws := h.dial(bearerHeader("admin"))
		mustOK(t, ws.roundTrip(`{"id":"p","op":"promote","server":1,"node":2}`), "p")
	})
	t.Run("admin token by hello", func(t *testing.T) {
		ws := h.dial(nil)
		mustOK(t, ws.roundTrip(`{"id":"h","op":"hello","token":"admin"}`), "h")
		mustOK(t, ws.roundTrip(`{"id":"d","op":"drain","node":2}`), "d")
	})
}

func TestDevModeAcceptsEveryoneAsAdmin(t *testing.T) {
	h := newHarness(t, Options{})
	ws := h.dial(nil)
	mustOK(t, ws.roundTrip(`{"id":"p","op":"promote","server":1,"node":2}`), "p")
	mustOK(t, ws.roundTrip(`{"id":"h","op":"hello","token":"anything"}`), "h")
}

// A slow request does not hold back a later one: replies come as they complete.
func TestPipeliningOutOfOrder(t *testing.T) {
	h := newHarness(t, Options{})
	ws := h.dial(nil)
	rid := ws.createOne("c")
	h.fake.Block(rid)
	ws.send(`{"id":"slow","op":"get","rid":"` + rid + `"}`)
	ws.send(`{"id":"fast","op":"list"}`)
	mustOK(t, ws.recv(), "fast")
	h.fake.Release(rid)
	r := ws.recv()
	mustOK(t, r, "slow")
	if r.Reply.Resource == nil || r.Reply.Resource.ID != rid {
		t.Fatalf("slow get returned %+v, want resource %s", r.Reply.Resource, rid)
	}
}

func TestPendingLimitGivesRateLimited(t *testing.T) {
	h := newHarness(t, Options{MaxPendingPerConn: 2})
	ws := h.dial(nil)
	rid := ws.createOne("c")
	h.fake.Block(rid)
	get := func(id string) { ws.send(`{"id":"` + id + `","op":"get","rid":"` + rid + `"}`) }
	get("g1")
	get("g2")
	get("g3")
	mustFail(t, ws.recv(), command.CodeRateLimited, `"g3"`)
	h.fake.Release(rid)
	seen := map[string]bool{}
	for range 2 {
		r := ws.recv()
		seen[string(r.ID)] = r.OK
	}
	if !seen[`"g1"`] || !seen[`"g2"`] {
		t.Fatalf("want g1 and g2 answered ok, got %v", seen)
	}
	mustOK(t, ws.roundTrip(`{"id":"after","op":"list"}`), "after")
}

// Each op carries exactly the fields of the protocol table.
func TestReplyFieldsPerOp(t *testing.T) {
	h := newHarness(t, Options{})
	ws := h.dial(nil)
	has := func(r testReply, want ...string) {
		t.Helper()
		allowed := map[string]bool{"id": true, "ok": true}
		for _, f := range want {
			allowed[f] = true
			if _, ok := r.Fields[f]; !ok {
				t.Fatalf("reply lacks %q: %v", f, r.Fields)
			}
		}
		for f := range r.Fields {
			if !allowed[f] {
				t.Fatalf("reply has unexpected field %q: %v", f, r.Fields)
			}
		}
	}
	empty := ws.roundTrip(`{"id":"l","op":"list"}`)
	has(empty, "resources")
	if string(empty.Fields["resources"]) != "[]" {
		t.Fatalf("empty list resources = %s, want []", empty.Fields["resources"])
	}
	created := ws.roundTrip(`{"id":"c","op":"create","type":"doc","data":{"a":1},"key":"k1"}`)
	has(created, "resource", "epoch", "seq")
	rid := created.Reply.Resource.ID
	has(ws.roundTrip(`{"id":"c2","op":"create","type":"doc","data":{"a":1},"key":"k1"}`), "resource", "epoch", "seq", "duplicate")
	has(ws.roundTrip(`{"id":"g","op":"get","rid":"`+rid+`"}`), "resource", "seq")
	has(ws.roundTrip(`{"id":"u","op":"update","rid":"`+rid+`","data":{"b":2}}`), "resource", "epoch", "seq")
	has(ws.roundTrip(`{"id":"p","op":"patch","rid":"`+rid+`","patch":{"c":3}}`), "resource", "epoch", "seq")
	has(ws.roundTrip(`{"id":"a","op":"acquireTicket","rid":"`+rid+`","ttlMs":1000}`), "ticket")
	has(ws.roundTrip(`{"id":"r","op":"releaseTicket","rid":"` + rid + `","ticket":1}`))
	has(ws.roundTrip(`{"id":"s","op":"subscribe","rid":"`+rid+`"}`), "token")
	has(ws.roundTrip(`{"id":"us","op":"unsubscribe","sub":"s"}`))
	st := ws.roundTrip(`{"id":"st","op":"status"}`)
	has(st, "status")
	if st.Reply.Status == nil || len(st.Reply.Status.Groups) != 1 {
		t.Fatalf("status reply = %s", st.Fields["status"])
	}
	ws.createOne("c3")
	page := ws.roundTrip(`{"id":"l2","op":"list","limit":1}`)
	has(page, "resources", "next")
	has(ws.roundTrip(`{"id":"d","op":"delete","rid":"`+rid+`"}`), "epoch", "seq")
	mustFail(t, ws.roundTrip(`{"id":"g2","op":"get","rid":"`+rid+`"}`), command.CodeNotFound, `"g2"`)
}

// panicBackend panics in Start for creates of type "panic-start" and in the wait for type
// "panic-wait".
type panicBackend struct{ fakeBackend }

func (b panicBackend) NewSession(out Outbox) Session {
	return panicSession{b.fakeBackend.NewSession(out)}
}

type panicSession struct{ Session }

func (s panicSession) Start(ctx context.Context, req *command.Request, admin bool) func() (*command.Reply, error) {
	switch req.Type {
	case "panic-start":
		panic("boom in start")
	case "panic-wait":
		return func() (*command.Reply, error) { panic("boom in wait") }
	case "code-less":
		return func() (*command.Reply, error) { return nil, errors.New("disk on fire") }
	case "typed-nil":
		return func() (*command.Reply, error) {
			var none *command.Error
			return &command.Reply{Epoch: 1, Seq: 1}, none
		}
	}
	return s.Session.Start(ctx, req, admin)
}

func TestBackendPanicsBecomeInternal(t *testing.T) {
	fb := fake.New()
	h := newHarnessFor(t, panicBackend{fakeBackend{fb}}, fb, Options{})
	ws := h.dial(nil)
	for _, typ := range []string{"panic-start", "panic-wait", "code-less"} {
		mustFail(t, ws.roundTrip(`{"id":"p","op":"create","type":"`+typ+`","data":1}`), command.CodeInternal, `"p"`)
		mustOK(t, ws.roundTrip(`{"id":"ok","op":"list"}`), "ok")
	}
	// A nil *command.Error handed back as the error is a success, not a crash.
	mustOK(t, ws.roundTrip(`{"id":"n","op":"create","type":"typed-nil","data":1}`), "n")
}

func TestRetryableFollowsCode(t *testing.T) {
	h := newHarness(t, Options{})
	ws := h.dial(nil)
	h.fake.FailNext(command.OpList, fake.Failure{Err: &command.Error{Code: command.CodeNoMain, Message: "no main"}})
	r := ws.roundTrip(`{"id":"l","op":"list"}`)
	mustFail(t, r, command.CodeNoMain, `"l"`)
	h.fake.FailNext(command.OpList, fake.Failure{Err: &command.Error{Code: "weird", Message: "?"}})
	mustFail(t, ws.roundTrip(`{"id":"l2","op":"list"}`), command.CodeInternal, `"l2"`)
}

func TestCloseEndsConnectionsAndSessions(t *testing.T) {
	h := newHarness(t, Options{})
	ws := h.dial(nil)
	mustOK(t, ws.roundTrip(`{"id":"1","op":"list"}`), "1")
	h.srv.Close()
	ws.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := ws.c.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("after Close, read gave %v, want close 1001", err)
	}
	waitFor(t, "the session to be closed", func() bool {
		opened, closed := h.fake.Sessions()
		return opened == closed
	})
}
