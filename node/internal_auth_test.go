package node

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Every node-to-node endpoint refuses a request without the cluster secret.
func TestInternalEndpointsNeedTheClusterSecret(t *testing.T) {
	n := &Node{cfg: Config{ClusterSecret: "s3cret"}, metrics: newMetrics()}
	h := n.Handler()
	for _, path := range []string{"/v1/internal/repl", "/v1/internal/fwd", "/v1/internal/feed", "/v1/internal/snapshot",
		"/v1/internal/seal", "/v1/internal/handover", "/v1/internal/metrics", "/v1/internal/debug/pprof/"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader("{")))
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s without the secret: HTTP %d, want 401", path, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/v1/internal/seal", strings.NewReader("{"))
	req.Header.Set(secretHeader, "s3cret")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("seal with the secret and a bad body: HTTP %d, want 400", rec.Code)
	}
}
