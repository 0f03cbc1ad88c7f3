package api

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sibylhq/sibyl/api/internal/fake"
	"github.com/sibylhq/sibyl/command"
)

// call makes one HTTP request and returns the status, headers and decoded body.
func (h *harness) call(method, path, body string, header http.Header) (int, http.Header, testReply) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.http.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, decodeTestReply(h.t, data)
}

func wantStatus(t *testing.T, what string, got, want int, r testReply) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: HTTP %d, want %d (body %v)", what, got, want, r.Fields)
	}
	if _, hasID := r.Fields["id"]; hasID {
		t.Fatalf("%s: REST body carries an id: %v", what, r.Fields)
	}
	if want < 300 && !r.OK {
		t.Fatalf("%s: success body lacks ok:true: %v", what, r.Fields)
	}
	if want >= 400 && (r.Error == nil || statusOf(r.Error) != want) {
		t.Fatalf("%s: error body %v does not match HTTP %d", what, r.Fields, want)
	}
}

func TestRESTResourceLifecycle(t *testing.T) {
	h := newHarness(t, Options{})
	code, hdr, r := h.call("POST", "/v1/resources", `{"type":"doc","data":{"a":1}}`, nil)
	wantStatus(t, "create", code, http.StatusCreated, r)
	rid := r.Reply.Resource.ID
	if hdr.Get("ETag") != `"1"` || r.Reply.Seq == 0 || r.Reply.Epoch == 0 {
		t.Fatalf("create: ETag %q, reply %+v", hdr.Get("ETag"), r.Reply)
	}

	code, _, r = h.call("GET", "/v1/resources/"+rid+"?consistency=sibling", "", nil)
	wantStatus(t, "get", code, http.StatusOK, r)
	if r.Reply.Resource.ID != rid {
		t.Fatalf("get returned %+v", r.Reply.Resource)
	}

	ifMatch := http.Header{"If-Match": {`"1"`}}
	code, _, r = h.call("PUT", "/v1/resources/"+rid, `{"data":{"b":2}}`, ifMatch)
	wantStatus(t, "update", code, http.StatusOK, r)
	if r.Reply.Resource.Version != 2 || string(r.Reply.Resource.Data) != `{"b":2}` {
		t.Fatalf("update returned %+v", r.Reply.Resource)
	}
	code, _, r = h.call("PUT", "/v1/resources/"+rid, `{"data":{"b":3}}`, ifMatch)
	wantStatus(t, "stale If-Match", code, http.StatusConflict, r)

	mergePatch := http.Header{"Content-Type": {"application/merge-patch+json"}}
	code, _, r = h.call("PATCH", "/v1/resources/"+rid, `{"c":3,"b":null}`, mergePatch)
	wantStatus(t, "merge patch", code, http.StatusOK, r)
	if string(r.Reply.Resource.Data) != `{"c":3}` {
		t.Fatalf("merge patch gave data %s", r.Reply.Resource.Data)
	}
	code, _, r = h.call("PATCH", "/v1/resources/"+rid, `{"patch":{"d":4}}`, nil)
	wantStatus(t, "patch with fields", code, http.StatusOK, r)
	if string(r.Reply.Resource.Data) != `{"c":3,"d":4}` {
		t.Fatalf("patch gave data %s", r.Reply.Resource.Data)
	}
	code, _, r = h.call("PATCH", "/v1/resources/"+rid, `{"c":`, mergePatch)
	wantStatus(t, "broken merge patch", code, http.StatusBadRequest, r)

	code, _, r = h.call("GET", "/v1/resources?limit=1", "", nil)
	wantStatus(t, "list", code, http.StatusOK, r)
	if len(r.Reply.Resources) != 1 {
		t.Fatalf("list returned %+v", r.Reply)
	}

	code, _, r = h.call("DELETE", "/v1/resources/"+rid, "", nil)
	wantStatus(t, "delete", code, http.StatusOK, r)
	if _, has := r.Fields["resource"]; has {
		t.Fatalf("delete reply has a resource: %v", r.Fields)
	}
	code, _, r = h.call("GET", "/v1/resources/"+rid, "", nil)
	wantStatus(t, "get deleted", code, http.StatusNotFound, r)
	code, _, r = h.call("GET", "/v1/resources/not-a-rid", "", nil)
	wantStatus(t, "get bad rid", code, http.StatusBadRequest, r)
}

func TestRESTIdempotencyKeyHeader(t *testing.T) {
	h := newHarness(t, Options{})
	key := http.Header{"Idempotency-Key": {"k-1"}}
	code, _, first := h.call("POST", "/v1/resources", `{"type":"doc","data":1}`, key)
	wantStatus(t, "first create", code, http.StatusCreated, first)
	code, _, again := h.call("POST", "/v1/resources", `{"type":"doc","data":1}`, key)
	wantStatus(t, "repeat create", code, http.StatusCreated, again)
	if !again.Reply.Duplicate || again.Reply.Resource.ID != first.Reply.Resource.ID || again.Reply.Seq != first.Reply.Seq {
		t.Fatalf("repeat gave %+v, want duplicate of %+v", again.Reply, first.Reply)
	}
	if _, has := first.Fields["duplicate"]; has {
		t.Fatalf("first write carries duplicate: %v", first.Fields)
	}
	if h.fake.Count() != 1 {
		t.Fatalf("%d resources after a repeated keyed create, want 1", h.fake.Count())
	}
	code, _, r := h.call("POST", "/v1/resources", `{"type":"doc","data":2}`, key)
	wantStatus(t, "key reused for another request", code, http.StatusConflict, r)
}

func TestRESTBadInput(t *testing.T) {
	h := newHarness(t, Options{MaxFrameBytes: 1024})
	cases := []struct {
		name, method, path, body string
		header                   http.Header
		want                     int
	}{
		{"malformed body", "POST", "/v1/resources", `{"type":`, nil, 400},
		{"wrong field type", "POST", "/v1/resources", `{"type":5,"data":1}`, nil, 400},
		{"too deep", "POST", "/v1/resources", `{"type":"t","data":` + strings.Repeat("[", 80) + strings.Repeat("]", 80) + `}`, nil, 400},
		{"too large", "POST", "/v1/resources", `{"type":"t","data":"` + strings.Repeat("x", 2000) + `"}`, nil, 413},
		{"bad If-Match", "PUT", "/v1/resources/1-01JDQ8T5Z8K3N2M4P6R8S0V2X4", `{"data":1}`, http.Header{"If-Match": {"abc"}}, 400},
		{"bad minSeq", "GET", "/v1/resources/1-01JDQ8T5Z8K3N2M4P6R8S0V2X4?minSeq=-1", "", nil, 400},
		{"unknown admin op", "POST", "/v1/admin/explode", `{}`, nil, 404},
	}
	for _, tc := range cases {
		code, _, r := h.call(tc.method, tc.path, tc.body, tc.header)
		wantStatus(t, tc.name, code, tc.want, r)
	}
}

func TestRESTAuth(t *testing.T) {
	h := newHarness(t, Options{ClientTokens: []string{"client"}, AdminTokens: []string{"admin"}})
	code, hdr, r := h.call("GET", "/v1/resources", "", nil)
	wantStatus(t, "no token", code, http.StatusUnauthorized, r)
	if !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("401 without WWW-Authenticate: %v", hdr)
	}
	code, _, r = h.call("GET", "/v1/resources", "", bearerHeader("nope"))
	wantStatus(t, "bad token", code, http.StatusUnauthorized, r)
	code, _, r = h.call("GET", "/v1/resources", "", bearerHeader("client"))
	wantStatus(t, "client token", code, http.StatusOK, r)
	code, _, r = h.call("POST", "/v1/admin/promote", `{"server":1,"node":2}`, bearerHeader("client"))
	wantStatus(t, "admin op with client token", code, http.StatusForbidden, r)
	code, _, r = h.call("POST", "/v1/admin/promote", `{"server":1,"node":2}`, bearerHeader("admin"))
	wantStatus(t, "admin op with admin token", code, http.StatusOK, r)
}

// Every protocol code maps to its HTTP status of docs/protocol.md §4.
func TestRESTErrorStatuses(t *testing.T) {
	h := newHarness(t, Options{})
	want := map[command.Code]int{
		command.CodeBadRequest: 400, command.CodeUnauthorized: 401, command.CodeForbidden: 403,
		command.CodeNotFound: 404, command.CodeConflict: 409, command.CodeTicketHeld: 409,
		command.CodeTooLarge: 413, command.CodeRateLimited: 429, command.CodeInternal: 500,
		command.CodeQuorumUnavailable: 503, command.CodeNoMain: 503, command.CodeUnavailable: 503,
		command.CodeTimeout: 504,
	}
	for code, status := range want {
		h.fake.FailNext(command.OpList, fake.Failure{Err: command.Errorf(code, "injected %s", code)})
		got, _, r := h.call("GET", "/v1/resources", "", nil)
		wantStatus(t, string(code), got, status, r)
		if r.Error.Code != code || r.Error.Retryable != code.Retryable() {
			t.Fatalf("%s: error body %+v", code, r.Error)
		}
		if _, hasOK := r.Fields["ok"]; hasOK || len(r.Fields) != 1 {
			t.Fatalf("%s: error body is %v, want only {\"error\":...}", code, r.Fields)
		}
	}
}

func TestHealthStatusMetricsAndPage(t *testing.T) {
	h := newHarness(t, Options{})
	get := func(path string) (int, string) {
		resp, err := http.Get(h.http.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d, want 200", code)
	}
	h.fake.SetHealthy(false)
	if code, _ := get("/healthz"); code != 503 {
		t.Fatalf("/healthz of an unhealthy node = %d, want 503", code)
	}

	code, _, st := h.call("GET", "/v1/status", "", nil)
	if code != 200 || st.Fields["groups"] == nil || string(st.Fields["locations"]) != "[]" || string(st.Fields["controllers"]) != "[]" {
		t.Fatalf("/v1/status = %d %v", code, st.Fields)
	}

	ws := h.dial(nil)
	ws.createOne("c")
	mustOK(t, ws.roundTrip(`{"id":"l","op":"list"}`), "l")
	ws.send(`{"id":"bad","op":"bogus"}`)
	ws.recv()
	_, metrics := get("/metrics")
	for _, want := range []string{
		`sibyl_requests_total{op="create",code="ok"} 1`,
		`sibyl_requests_total{op="invalid",code="bad_request"} 1`,
		`sibyl_request_seconds_count{op="list"} 1`,
		`sibyl_connections 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, metrics)
		}
	}

	code, page := get("/")
	if code != 200 || !strings.Contains(page, "/v1/status") || strings.Contains(page, "src=\"http") {
		t.Fatalf("GET / = %d, page does not poll /v1/status or loads external assets", code)
	}
}
