package client

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api"
	"github.com/sibylhq/sibyl/api/internal/fake"
	"github.com/sibylhq/sibyl/tlsconf"
)

// A client with the cluster's CA talks to a node serving TLS; without the CA, or in
// plaintext, it cannot connect at all.
func TestClientOverTLS(t *testing.T) {
	files, err := tlsconf.WriteDev(filepath.Join(t.TempDir(), "tls"), []string{"n1"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := tlsconf.Load(files["n1"])
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewServer(fakeBackend{fake.New()}, api.Options{})
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.TLS = s.Server
	hs.StartTLS()
	t.Cleanup(func() { srv.Close(); hs.Close() })
	addr := hs.Listener.Addr().String()

	for _, a := range []string{addr, "wss://" + addr, "https://" + addr + "/v1/ws"} {
		c := dial(t, Options{Addrs: []string{a}, TLS: s.Client})
		created, err := c.Create(testCtx(t), "doc", json.RawMessage(`{"a":1}`))
		if err != nil || created.Resource == nil {
			t.Fatalf("create over TLS at %s: %v %v", a, created, err)
		}
		c.Close()
	}
	for name, opts := range map[string]Options{
		"plaintext":            {Addrs: []string{addr}},
		"TLS without the CA":   {Addrs: []string{"wss://" + addr}},
		"ws:// despite the CA": {Addrs: []string{"ws://" + addr}, TLS: s.Client},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		opts.RequestTimeout = 2 * time.Second
		c, err := Dial(ctx, opts)
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("%s: connected to a TLS node", name)
		} else if name != "TLS without the CA" && !strings.Contains(err.Error(), "serves TLS") {
			t.Errorf("%s: %v, want an error saying the node serves TLS", name, err)
		}
	}
}
