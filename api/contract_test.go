package api

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/sibylhq/sibyl/api/internal/fake"
	"github.com/sibylhq/sibyl/command"
)

// A frame with bytes after its JSON object, and a write with an empty key, get bad_request
// and are not executed; the connection stays usable.
func TestTrailingBytesAndEmptyKeyAreRefused(t *testing.T) {
	h := newHarness(t, Options{})
	ws := h.dial(nil)
	r := ws.roundTrip(`{"id":"c","op":"create","type":"t","data":1}`)
	mustOK(t, r, "c")
	rid := r.Reply.Resource.ID
	for _, tc := range []struct{ name, frame, id string }{
		{"trailing brace on a create", `{"id":"a","op":"create","type":"t","data":1}}`, `"a"`},
		{"trailing brace on a get", `{"id":"b","op":"get","rid":"` + rid + `"}}`, `"b"`},
		{"a second object", `{"id":"d","op":"delete","rid":"` + rid + `"}{"id":"e","op":"list"}`, `"d"`},
		{"trailing garbage on an update", `{"id":"u","op":"update","rid":"` + rid + `","data":2}x`, `"u"`},
		{"empty key on a create", `{"id":"k1","op":"create","type":"t","data":1,"key":""}`, `"k1"`},
		{"empty key on an update", `{"id":"k2","op":"update","rid":"` + rid + `","data":3,"key":""}`, `"k2"`},
		{"empty key on a delete", `{"id":"k3","op":"delete","rid":"` + rid + `","key":""}`, `"k3"`},
		{"empty key on a ticket", `{"id":"k4","op":"acquireTicket","rid":"` + rid + `","ttlMs":1000,"key":""}`, `"k4"`},
	} {
		mustFail(t, ws.roundTrip(tc.frame), command.CodeBadRequest, tc.id)
	}
	if n := h.fake.Count(); n != 1 {
		t.Fatalf("%d resources after the refused frames, want 1", n)
	}
	r = ws.roundTrip(`{"id":"g","op":"get","rid":"` + rid + `"}`)
	mustOK(t, r, "g")
	if r.Reply.Resource.Version != 1 || string(r.Reply.Resource.Data) != "1" {
		t.Fatalf("refused frames changed the resource: %+v", r.Reply.Resource)
	}
	// A one-character key is fine.
	mustOK(t, ws.roundTrip(`{"id":"k5","op":"create","type":"t","data":1,"key":"x"}`), "k5")
}

func TestRESTTrailingBytesAndEmptyKeyAreRefused(t *testing.T) {
	h := newHarness(t, Options{})
	for _, tc := range []struct {
		name, body string
		header     http.Header
	}{
		{"trailing brace", `{"type":"t","data":1}}`, nil},
		{"empty key in the body", `{"type":"t","data":1,"key":""}`, nil},
		{"empty Idempotency-Key", `{"type":"t","data":1}`, http.Header{"Idempotency-Key": {""}}},
	} {
		code, _, r := h.call("POST", "/v1/resources", tc.body, tc.header)
		wantStatus(t, tc.name, code, http.StatusBadRequest, r)
	}
	if n := h.fake.Count(); n != 0 {
		t.Fatalf("%d resources after refused creates, want 0", n)
	}
}

// tokenBackend records the Bearer of every admin request that reaches the backend.
type tokenBackend struct {
	fakeBackend
	mu     *sync.Mutex
	tokens *[]string
}

func (b tokenBackend) NewSession(out Outbox) Session {
	return tokenSession{Session: b.fakeBackend.NewSession(out), b: b}
}

type tokenSession struct {
	Session
	b tokenBackend
}

func (s tokenSession) Start(ctx context.Context, req *command.Request, admin bool) func() (*command.Reply, error) {
	if isAdminOp(req.Op) {
		s.b.mu.Lock()
		*s.b.tokens = append(*s.b.tokens, req.Bearer)
		s.b.mu.Unlock()
	}
	return s.Session.Start(ctx, req, admin)
}

// An admin call reaches the backend with the token its caller authenticated with (on the
// upgrade, by hello, or on a REST call) as its Bearer, whatever token field the frame
// carried: the node passes it on to the controllers.
func TestAdminCallsCarryTheCallersToken(t *testing.T) {
	fb := fake.New()
	var mu sync.Mutex
	var tokens []string
	h := newHarnessFor(t, tokenBackend{fakeBackend{fb}, &mu, &tokens}, fb, Options{AdminTokens: []string{"admin1", "admin2"}})
	ws := h.dial(bearerHeader("admin1"))
	mustOK(t, ws.roundTrip(`{"id":"p","op":"promote","server":1,"node":2,"token":"forged"}`), "p")
	ws2 := h.dial(nil)
	mustOK(t, ws2.roundTrip(`{"id":"h","op":"hello","token":"admin2"}`), "h")
	mustOK(t, ws2.roundTrip(`{"id":"d","op":"drain","node":2}`), "d")
	code, _, r := h.call("POST", "/v1/admin/promote", `{"server":1,"node":2,"token":"forged"}`, bearerHeader("admin2"))
	wantStatus(t, "REST promote", code, http.StatusOK, r)
	mu.Lock()
	defer mu.Unlock()
	want := []string{"admin1", "admin2", "admin2"}
	if len(tokens) != len(want) {
		t.Fatalf("admin calls reached the backend with tokens %q, want %q", tokens, want)
	}
	for i := range want {
		if tokens[i] != want[i] {
			t.Fatalf("admin calls reached the backend with tokens %q, want %q", tokens, want)
		}
	}
}
