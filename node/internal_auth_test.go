package node

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/sibylhq/sibyl/command"
)

var internalPaths = []string{"/v1/internal/repl", "/v1/internal/resync", "/v1/internal/fwd", "/v1/internal/feed",
	"/v1/internal/snapshot", "/v1/internal/seal", "/v1/internal/handover", "/v1/internal/metrics", "/v1/internal/debug/pprof/"}

// Every node-to-node endpoint refuses a request without the cluster secret, or with a wrong
// one, with unauthorized, before its handler runs.
func TestInternalEndpointsNeedTheClusterSecret(t *testing.T) {
	n := &Node{cfg: Config{ClusterSecret: "s3cret"}, metrics: newMetrics()}
	h := n.Handler()
	for _, path := range internalPaths {
		for _, secret := range []string{"", "wrong", "s3cre", "s3cret ", "S3CRET"} {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader("{"))
			if secret != "" {
				req.Header.Set(secretHeader, secret)
			}
			h.ServeHTTP(rec, req)
			var eb struct {
				Error *command.Error `json:"error"`
			}
			if rec.Code != http.StatusUnauthorized || json.Unmarshal(rec.Body.Bytes(), &eb) != nil || eb.Error == nil ||
				eb.Error.Code != command.CodeUnauthorized {
				t.Errorf("%s with secret %q: HTTP %d %s, want 401 unauthorized", path, secret, rec.Code, rec.Body.Bytes())
			}
		}
	}
	// The right secret reaches the handler: a seal with a bad body is bad_request.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/internal/seal", strings.NewReader("{"))
	req.Header.Set(secretHeader, "s3cret")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("seal with the secret and a bad body: HTTP %d, want 400", rec.Code)
	}
	rec = httptest.NewRecorder()
	req = httptest.NewRequest(http.MethodGet, "/v1/internal/metrics", nil)
	req.Header.Set(secretHeader, "s3cret")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("metrics with the secret: HTTP %d, want 200", rec.Code)
	}
}

// A node without a secret serves its internal endpoints to anyone (a cluster without one).
func TestInternalEndpointsWithoutASecret(t *testing.T) {
	n := &Node{metrics: newMetrics()}
	rec := httptest.NewRecorder()
	n.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/internal/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("metrics on a node without a secret: HTTP %d, want 200", rec.Code)
	}
}

// Every call a node makes to the controllers carries the cluster secret; an admin call
// carries its caller's token as a bearer token, not in its body.
func TestNodePresentsTheSecretToControllers(t *testing.T) {
	type seen struct{ secret, auth, body string }
	var mu sync.Mutex
	got := map[string]seen{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[r.URL.Path] = seen{r.Header.Get(command.SecretHeader), r.Header.Get("Authorization"), string(b)}
		mu.Unlock()
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	c := newCtrlClient([]string{srv.URL}, zerolog.Nop(), nil, nil, "s3cret")
	ctx := context.Background()
	var out map[string]any
	for _, call := range []struct{ method, path string }{
		{http.MethodPost, "/v1/internal/join"}, {http.MethodPost, "/v1/internal/heartbeat"},
		{http.MethodPost, "/v1/internal/suspect"}, {http.MethodGet, "/v1/internal/directory?after=3"},
		{http.MethodPost, "/v1/internal/abandon"}, {http.MethodGet, "/v1/status"},
	} {
		if err := c.do(ctx, call.method, call.path, nil, &out); err != nil {
			t.Fatalf("%s %s: %v", call.method, call.path, err)
		}
	}
	srvID, node := int64(1), int64(2)
	req := &command.Request{Op: command.OpPromote, Server: &srvID, Node: &node, Token: "forged", Bearer: "adm1n"}
	if _, err := c.admin(ctx, req); err != nil {
		t.Fatalf("admin: %v", err)
	}
	if req.Token != "forged" {
		t.Errorf("admin changed the caller's request: token %q", req.Token)
	}
	// revokeToken's token field is its subject: it goes in the body, the bearer not.
	if _, err := c.admin(ctx, &command.Request{Op: command.OpRevokeToken, Token: "sbt_old", Bearer: "adm1n"}); err != nil {
		t.Fatalf("admin revokeToken: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, path := range []string{"/v1/internal/join", "/v1/internal/heartbeat", "/v1/internal/suspect",
		"/v1/internal/directory", "/v1/internal/abandon", "/v1/status", "/v1/internal/admin/promote"} {
		if s, ok := got[path]; !ok || s.secret != "s3cret" {
			t.Errorf("%s reached the controller with secret %q (called: %v), want s3cret", path, s.secret, ok)
		}
	}
	a := got["/v1/internal/admin/promote"]
	if a.auth != "Bearer adm1n" || strings.Contains(a.body, "adm1n") || strings.Contains(a.body, "forged") {
		t.Errorf("admin call: Authorization %q, body %s; want the token as bearer only", a.auth, a.body)
	}
	if r := got["/v1/internal/admin/revokeToken"]; r.auth != "Bearer adm1n" || !strings.Contains(r.body, `"token":"sbt_old"`) || strings.Contains(r.body, "adm1n") {
		t.Errorf("revokeToken call: Authorization %q, body %s; want the bearer as bearer and the revoked token in the body", r.auth, r.body)
	}
	if s := got["/v1/internal/join"]; s.auth != "" {
		t.Errorf("join carried Authorization %q, want none", s.auth)
	}
}

// A controller's refusal of the secret reaches the caller as unauthorized, at once: the
// client does not go on to another controller.
func TestControllerRefusalIsUnauthorized(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":"unauthorized","message":"needs the cluster secret"}}`))
	}))
	defer srv.Close()
	c := newCtrlClient([]string{srv.URL}, zerolog.Nop(), nil, nil, "wrong")
	var out map[string]any
	err := c.do(context.Background(), http.MethodPost, "/v1/internal/join", nil, &out)
	if command.CodeOf(err) != command.CodeUnauthorized || calls != 1 {
		t.Fatalf("join refused by the controller: %v after %d calls, want unauthorized after 1", err, calls)
	}
}
