package api

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sibylhq/sibyl/api/internal/fake"
	"github.com/sibylhq/sibyl/command"
)

// bookSource is a TokenSource a test changes: set replaces the book and wakes the server.
type bookSource struct {
	mu      sync.Mutex
	book    *command.Book
	changed chan struct{}
}

func newBookSource(roles []command.Role, tokens []command.TokenInfo) *bookSource {
	return &bookSource{book: command.NewBook(roles, tokens), changed: make(chan struct{})}
}

func (b *bookSource) Tokens() (*command.Book, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.book, b.changed
}

func (b *bookSource) set(roles []command.Role, tokens []command.TokenInfo) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.book = command.NewBook(roles, tokens)
	close(b.changed)
	b.changed = make(chan struct{})
}

// scopeBackend records the Scope of every request that reaches the backend.
type scopeBackend struct {
	fakeBackend
	mu     *sync.Mutex
	scopes map[string][]string
}

func (b scopeBackend) NewSession(out Outbox) Session {
	return scopeSession{Session: b.fakeBackend.NewSession(out), b: b}
}

type scopeSession struct {
	Session
	b scopeBackend
}

func (s scopeSession) Start(ctx context.Context, req *command.Request, admin bool) func() (*command.Reply, error) {
	s.b.mu.Lock()
	s.b.scopes[req.Op] = req.Scope
	s.b.mu.Unlock()
	return s.Session.Start(ctx, req, admin)
}

var (
	jobReader = command.Role{Name: "job-reader", Grants: []command.Grant{
		{Types: []string{"job"}, Ops: []string{command.KindRead, command.KindSubscribe}}}}
	jobWriter = command.Role{Name: "job-writer", Grants: []command.Grant{
		{Types: []string{"job*"}, Ops: []string{command.KindRead, command.KindWrite, command.KindTicket, command.KindSubscribe}}}}
)

// authHarness is a server with a static admin token and a directory holding two roles and
// a token of each, and one admin token.
func authHarness(t *testing.T) (*harness, *bookSource, map[string][]string) {
	t.Helper()
	src := newBookSource([]command.Role{jobReader, jobWriter}, []command.TokenInfo{
		{Hash: command.HashToken("reader"), Role: jobReader.Name},
		{Hash: command.HashToken("writer"), Role: jobWriter.Name},
		{Hash: command.HashToken("dyn-admin"), Role: command.AdminRole},
	})
	fb := fake.New()
	var mu sync.Mutex
	scopes := map[string][]string{}
	h := newHarnessFor(t, scopeBackend{fakeBackend{fb}, &mu, scopes}, fb, Options{AdminTokens: []string{"static-admin"}, Tokens: src})
	return h, src, scopes
}

// Every op kind with no token, an unknown token, a token whose role lacks the grant and
// one that has it: the exact codes, and a refusal changes nothing.
func TestRolesByOpKind(t *testing.T) {
	h, _, scopes := authHarness(t)
	admin := h.dial(bearerHeader("static-admin"))
	jobRID := mustCreate(t, admin, "j", "job")
	docRID := mustCreate(t, admin, "d", "doc")
	type call struct {
		name, frame string
	}
	calls := []call{
		{"create job", `{"id":"x","op":"create","type":"job","data":1}`},
		{"create doc", `{"id":"x","op":"create","type":"doc","data":1}`},
		{"update job", `{"id":"x","op":"update","rid":"` + jobRID + `","data":2}`},
		{"get job", `{"id":"x","op":"get","rid":"` + jobRID + `"}`},
		{"get doc", `{"id":"x","op":"get","rid":"` + docRID + `"}`},
		{"list job", `{"id":"x","op":"list","type":"job"}`},
		{"list doc", `{"id":"x","op":"list","type":"doc"}`},
		{"subscribe job", `{"id":"x","op":"subscribe","type":"job"}`},
		{"subscribe doc", `{"id":"x","op":"subscribe","type":"doc"}`},
		{"acquireTicket job", `{"id":"x","op":"acquireTicket","rid":"` + jobRID + `","ttlMs":1000}`},
		{"status", `{"id":"x","op":"status"}`},
		{"promote", `{"id":"x","op":"promote","server":1,"node":1}`},
		{"createToken", `{"id":"x","op":"createToken","role":"job-reader"}`},
	}
	const (
		U  = command.CodeUnauthorized
		F  = command.CodeForbidden
		OK = command.Code("")
	)
	// want[caller][call]
	want := map[string][]command.Code{
		"":        {U, U, U, U, U, U, U, U, U, U, U, U, U},
		"unknown": {U, U, U, U, U, U, U, U, U, U, U, U, U},
		"reader":  {F, F, F, OK, F, OK, F, OK, F, F, OK, F, F},
		"writer":  {OK, F, OK, OK, F, OK, F, OK, F, OK, OK, F, F},
	}
	for who, codes := range want {
		var ws *wsClient
		if who == "" {
			ws = h.dial(nil)
		} else {
			ws = h.dial(bearerHeader(who))
		}
		for i, c := range calls {
			before := h.fake.Count()
			r := ws.roundTrip(strings.Replace(c.frame, `"id":"x"`, `"id":"`+c.name+`"`, 1))
			if codes[i] == OK {
				mustOK(t, r, c.name)
				continue
			}
			if r.OK || r.Error == nil || r.Error.Code != codes[i] {
				t.Errorf("token %q, %s: %+v, want %s", who, c.name, r.Error, codes[i])
			}
			if h.fake.Count() != before {
				t.Errorf("token %q, %s: refused, yet the resources went from %d to %d", who, c.name, before, h.fake.Count())
			}
		}
	}
	// A reader's list shows only its types; its requests carry its scope to the backend
	// (where the main checks the type of a rid's resource).
	ws := h.dial(bearerHeader("reader"))
	r := ws.roundTrip(`{"id":"l","op":"list"}`)
	mustOK(t, r, "l")
	if len(r.Reply.Resources) != 2 || r.Reply.Resources[0].Type != "job" || r.Reply.Resources[1].Type != "job" {
		t.Fatalf("reader's list of every type: %+v, want the two jobs and no doc", r.Reply.Resources)
	}
	mustOK(t, h.dial(bearerHeader("writer")).roundTrip(`{"id":"u","op":"update","rid":"`+jobRID+`","data":3}`), "u")
	if s := scopes[command.OpUpdate]; strings.Join(s, ",") != "job*" {
		t.Fatalf("writer's update reached the backend with scope %q, want [job*]", s)
	}
	mustOK(t, h.dial(bearerHeader("dyn-admin")).roundTrip(`{"id":"u","op":"update","rid":"`+docRID+`","data":3}`), "u")
	if s := scopes[command.OpUpdate]; s != nil {
		t.Fatalf("an admin's update reached the backend with scope %q, want none", s)
	}
	// A client-sent "scope" is not a field of the protocol: it cannot widen anything.
	r = h.dial(bearerHeader("reader")).roundTrip(`{"id":"s","op":"get","rid":"` + docRID + `","scope":["*"]}`)
	mustFail(t, r, command.CodeForbidden, `"s"`)
}

func mustCreate(t *testing.T, ws *wsClient, id, typ string) string {
	t.Helper()
	r := ws.roundTrip(`{"id":"` + id + `","op":"create","type":"` + typ + `","data":1}`)
	mustOK(t, r, id)
	return r.Reply.Resource.ID
}

// A revoked token is refused on the next frame of a connection it opened, and the server
// closes such a connection with 1008 as soon as its book changes; the other tokens go on.
func TestRevokedTokenOnAnOpenConnection(t *testing.T) {
	h, src, _ := authHarness(t)
	reader := h.dial(bearerHeader("reader"))
	idle := h.dial(bearerHeader("reader"))
	writer := h.dial(bearerHeader("writer"))
	mustOK(t, reader.roundTrip(`{"id":"1","op":"list","type":"job"}`), "1")
	mustOK(t, idle.roundTrip(`{"id":"1","op":"subscribe","type":"job"}`), "1")

	start := time.Now()
	src.set([]command.Role{jobReader, jobWriter}, []command.TokenInfo{{Hash: command.HashToken("writer"), Role: jobWriter.Name}})
	// The idle subscriber's connection is closed with 1008.
	idle.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		_, _, err := idle.c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != closePolicyViolation {
			t.Fatalf("revoked subscriber's connection ended with %v, want close 1008", err)
		}
		break
	}
	t.Logf("connection of a revoked token closed %v after the revocation", time.Since(start).Round(time.Millisecond))
	// The other reader connection is refused or closed too; the writer goes on.
	reader.send(`{"id":"2","op":"list","type":"job"}`)
	reader.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, data, err := reader.c.ReadMessage(); err == nil {
		if r := decodeTestReply(t, data); r.Error == nil || r.Error.Code != command.CodeUnauthorized {
			t.Fatalf("a revoked token's next frame: %s, want unauthorized", data)
		}
	}
	mustOK(t, writer.roundTrip(`{"id":"3","op":"list","type":"job"}`), "3")
	if code, _, r := h.call("GET", "/v1/resources?type=job", "", bearerHeader("reader")); code != http.StatusUnauthorized {
		t.Fatalf("REST with a revoked token: HTTP %d %+v", code, r)
	}
	if h.srv.metrics.revoked.Load() == 0 {
		t.Fatal("sibyl_connections_revoked_total did not count the closed connection")
	}
}

// A status stream opened with a token ends once that token is revoked; one of a token still
// valid goes on sending frames.
func TestRevokedTokenEndsTheStatusStream(t *testing.T) {
	h, src, _ := authHarness(t)
	open := func(token string) *bufio.Reader {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.http.URL+"/v1/status/stream?token="+token, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("open the stream with %q: %v %v", token, resp, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return bufio.NewReader(resp.Body)
	}
	// nextFrame reads up to the next event, false when the stream ends first.
	nextFrame := func(r *bufio.Reader) bool {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return false
			}
			if strings.HasPrefix(line, "data: ") {
				return true
			}
		}
	}
	reader, writer := open("reader"), open("writer")
	if !nextFrame(reader) || !nextFrame(writer) {
		t.Fatal("no first frame on the streams")
	}
	start := time.Now()
	src.set([]command.Role{jobReader, jobWriter}, []command.TokenInfo{{Hash: command.HashToken("writer"), Role: jobWriter.Name}})
	ended := make(chan struct{})
	go func() {
		for nextFrame(reader) {
		}
		close(ended)
	}()
	select {
	case <-ended:
		t.Logf("the revoked token's stream ended %v after the revocation", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked token's stream still runs 5 s after the revocation")
	}
	if !nextFrame(writer) {
		t.Fatal("the stream of a token still valid ended")
	}
}

// /healthz and /metrics need no token; /v1/status, the status page and its stream need any
// valid one (bearer, or ?token= for a browser); REST admin calls an admin token.
func TestHTTPEndpointsNeedTokens(t *testing.T) {
	h, _, _ := authHarness(t)
	for _, tc := range []struct {
		method, path string
		header       http.Header
		want         int
	}{
		{"GET", "/healthz", nil, 200},
		{"GET", "/metrics", nil, 200},
		{"GET", "/v1/status", nil, 401},
		{"GET", "/v1/status", bearerHeader("nope"), 401},
		{"GET", "/v1/status", bearerHeader("reader"), 200},
		{"GET", "/v1/status?token=reader", nil, 200},
		{"GET", "/", nil, 401},
		{"GET", "/?token=nope", nil, 401},
		{"GET", "/?token=reader", nil, 200},
		{"GET", "/v1/status/stream", nil, 401},
		{"GET", "/v1/status/stream?token=nope", nil, 401},
		{"GET", "/v1/status/stream?token=reader", nil, 200},
		{"GET", "/v1/status/stream", bearerHeader("reader"), 200},
		{"POST", "/v1/resources", bearerHeader("reader"), 403},
		{"POST", "/v1/admin/promote", bearerHeader("writer"), 403},
		{"POST", "/v1/admin/createRole", nil, 401},
		{"POST", "/v1/resources?token=writer", nil, 401},
	} {
		body := ""
		if tc.method == "POST" {
			body = `{"type":"job","data":1,"server":1,"node":1,"name":"r","grants":[{"types":["job"],"ops":["read"]}]}`
		}
		req, err := http.NewRequest(tc.method, h.http.URL+tc.path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range tc.header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s with %v: HTTP %d, want %d", tc.method, tc.path, tc.header, resp.StatusCode, tc.want)
		}
	}
	if h.fake.Count() != 0 {
		t.Fatalf("refused REST calls created %d resources", h.fake.Count())
	}
}
