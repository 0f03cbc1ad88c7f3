package location

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"

	"github.com/sibylhq/sibyl/api/statuspage"
	"github.com/sibylhq/sibyl/command"
)

const (
	testSecret     = "s3cret"
	testAdminToken = "adm1n"
)

// callAuth sends one request with the given secret and bearer token (empty: none) and
// returns the status code, the error code of a refusal and the body.
func callAuth(method, addr, path, secret, token string, in any) (int, command.Code, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, "", nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+addr+path, body)
	if err != nil {
		return 0, "", nil, err
	}
	if secret != "" {
		req.Header.Set(command.SecretHeader, secret)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	var eb errorBody
	_ = json.Unmarshal(b, &eb)
	var code command.Code
	if eb.Error != nil {
		code = eb.Error.Code
	}
	return resp.StatusCode, code, b, err
}

// A location whose controllers share a cluster secret and an admin token: raft (which
// needs the preamble), the controllers' registrations and the node protocol all work with
// the secret; every internal endpoint refuses a call without it or with a wrong one, and
// an admin call without the admin token, with unauthorized and no change to the directory.
func TestControllerEndpointsNeedTheClusterSecret(t *testing.T) {
	tc := newTestCluster(t, 3, func(c *Config) { c.ClusterSecret, c.AdminTokens = testSecret, []string{testAdminToken} })
	lead := tc.leader(15 * time.Second)
	// Followers register their HTTP addresses with the leader over HTTP, with the secret.
	eventuallyOK(t, 10*time.Second, "every controller registered", func() error {
		for _, id := range tc.ids {
			if _, ok := lead.c.fsm.controller(id); !ok {
				return fmt.Errorf("%s not registered", id)
			}
		}
		return nil
	})
	join := command.JoinRequest{ID: 1, Addr: "127.0.0.1:9001", Instance: "i1", Incarnation: 1}
	eventuallyOK(t, 10*time.Second, "a join with the secret", func() error {
		lead = tc.leader(10 * time.Second)
		if status, _, body, err := callAuth(http.MethodPost, lead.httpAddr, pathJoin, testSecret, "", join); err != nil || status != http.StatusOK {
			return fmt.Errorf("join: HTTP %d %s %v", status, body, err)
		}
		return nil
	})
	before := lead.c.fsm.index()

	type endpoint struct {
		method, path string
		body         any
	}
	self := lead.c.selfRecord()
	one := int64(1)
	endpoints := []endpoint{
		{http.MethodPost, pathJoin, command.JoinRequest{ID: 2, Addr: "127.0.0.1:9002", Instance: "i2", Incarnation: 1}},
		{http.MethodPost, pathHeartbeat, command.Heartbeat{Node: 1, Instance: "i1", Incarnation: 1, Generation: 1}},
		{http.MethodGet, pathDirectory + "?after=0", nil},
		{http.MethodPost, pathController, self},
		{http.MethodPost, pathSuspect, command.Suspect{Node: 2, Server: 1, Main: 1}},
		{http.MethodPost, "/v1/internal/admin/" + command.OpPromote, command.Request{Op: command.OpPromote, Server: &one, Node: &one}},
		{http.MethodPost, "/v1/internal/admin/" + command.OpDrain, command.Request{Op: command.OpDrain, Node: &one}},
		{http.MethodPost, pathAbandon, HandoverRequest{Server: 1, Epoch: 9}},
	}
	for _, ctl := range tc.running() { // followers refuse too, before hinting the leader
		for _, e := range endpoints {
			for _, secret := range []string{"", "wrong", testSecret + "x", strings.ToUpper(testSecret)} {
				status, code, body, err := callAuth(e.method, ctl.httpAddr, e.path, secret, testAdminToken, e.body)
				if err != nil || status != http.StatusUnauthorized || code != command.CodeUnauthorized {
					t.Errorf("%s %s %s with secret %q: HTTP %d %s %v, want 401 unauthorized", ctl.id, e.method, e.path, secret, status, body, err)
				}
			}
		}
	}
	// Admin calls need the admin token as well as the secret.
	for _, token := range []string{"", "wrong", testAdminToken + "x"} {
		status, code, body, err := callAuth(http.MethodPost, lead.httpAddr, "/v1/internal/admin/"+command.OpDrain, testSecret, token,
			command.Request{Op: command.OpDrain, Node: &one})
		if err != nil || status != http.StatusUnauthorized || code != command.CodeUnauthorized {
			t.Errorf("admin drain with token %q: HTTP %d %s %v, want 401 unauthorized", token, status, body, err)
		}
	}
	if after := lead.c.fsm.index(); after != before {
		t.Fatalf("refused calls changed the directory: index %d before, %d after", before, after)
	}
	if d := lead.c.Directory(); d.NodeByID(2) != nil || d.NodeByID(1).State == command.NodeSpare {
		t.Fatalf("refused calls changed the directory: %+v", d.Nodes)
	}

	// With the secret (and the token for admin), each endpoint does its work.
	var d command.Directory
	if status, _, body, err := callAuth(http.MethodGet, lead.httpAddr, pathDirectory+"?after=0", testSecret, "", nil); err != nil ||
		status != http.StatusOK || json.Unmarshal(body, &d) != nil || d.NodeByID(1) == nil {
		t.Fatalf("directory with the secret: HTTP %d %s %v", status, body, err)
	}
	if status, _, body, err := callAuth(http.MethodPost, lead.httpAddr, pathHeartbeat, testSecret, "",
		command.Heartbeat{Node: 1, Instance: "i1", Incarnation: 1, Generation: 1}); err != nil || status != http.StatusOK {
		t.Fatalf("heartbeat with the secret: HTTP %d %s %v", status, body, err)
	}
	if status, _, body, err := callAuth(http.MethodPost, lead.httpAddr, pathSuspect, testSecret, "",
		command.Suspect{Node: 2, Server: 1, Main: 3}); err != nil || status != http.StatusOK {
		t.Fatalf("suspect with the secret: HTTP %d %s %v", status, body, err)
	}
	// A drain of an unknown node reaches the admin logic: not_found, not unauthorized.
	nine := int64(9)
	if status, code, body, err := callAuth(http.MethodPost, lead.httpAddr, "/v1/internal/admin/"+command.OpDrain, testSecret, testAdminToken,
		command.Request{Op: command.OpDrain, Node: &nine}); err != nil || status == http.StatusUnauthorized || code != command.CodeNotFound {
		t.Fatalf("admin drain of node 9 with secret and token: HTTP %d %s %v, want not_found", status, body, err)
	}
	// The health and metrics endpoints need neither; the status and its page any valid
	// token, or the secret.
	for _, path := range []string{"/healthz", "/metrics"} {
		if status, _, body, err := callAuth(http.MethodGet, lead.httpAddr, path, "", "", nil); err != nil || status != http.StatusOK {
			t.Errorf("GET %s without credentials: HTTP %d %.200s %v, want 200", path, status, body, err)
		}
	}
	for _, path := range []string{pathStatus, "/"} {
		if status, code, body, err := callAuth(http.MethodGet, lead.httpAddr, path, "", "wrong", nil); err != nil ||
			status != http.StatusUnauthorized || code != command.CodeUnauthorized {
			t.Errorf("GET %s with a wrong token: HTTP %d %.200s %v, want 401 unauthorized", path, status, body, err)
		}
		for _, cred := range [][2]string{{testSecret, ""}, {"", testAdminToken}} {
			if status, _, body, err := callAuth(http.MethodGet, lead.httpAddr, path, cred[0], cred[1], nil); err != nil || status != http.StatusOK {
				t.Errorf("GET %s with secret %q token %q: HTTP %d %.200s %v, want 200", path, cred[0], cred[1], status, body, err)
			}
		}
	}
	// The page's stream follows the same rule; a browser passes the token as ?token=.
	for _, tc := range []struct {
		query, secret, token string
		want                 int
	}{
		{"", "", "", http.StatusUnauthorized}, {"?token=wrong", "", "", http.StatusUnauthorized},
		{"", "", "wrong", http.StatusUnauthorized}, {"?token=" + testAdminToken, "", "", http.StatusOK},
		{"", "", testAdminToken, http.StatusOK}, {"", testSecret, "", http.StatusOK},
	} {
		if got := streamStatus(t, lead.httpAddr, statuspage.Path+tc.query, tc.secret, tc.token); got != tc.want {
			t.Errorf("GET %s%s with secret %q token %q: HTTP %d, want %d", statuspage.Path, tc.query, tc.secret, tc.token, got, tc.want)
		}
	}
}

// streamStatus opens the status stream at path and returns the HTTP status of its answer,
// closing the stream at once.
func streamStatus(t *testing.T, addr, path, secret, token string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set(command.SecretHeader, secret)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Without AdminTokens, an admin call needs only the cluster secret.
func TestControllerAdminWithoutTokensNeedsOnlyTheSecret(t *testing.T) {
	c := &Controller{cfg: Config{ClusterSecret: testSecret}}
	reached := 0
	h := c.adminOnly(func(w http.ResponseWriter, r *http.Request) { reached++ })
	for _, tc := range []struct {
		secret string
		want   int
	}{{"", 0}, {"nope", 0}, {testSecret, 1}} {
		reached = 0
		req := httptest.NewRequest(http.MethodPost, "/v1/internal/admin/drain", strings.NewReader("{}"))
		if tc.secret != "" {
			req.Header.Set(command.SecretHeader, tc.secret)
		}
		rec := httptest.NewRecorder()
		h(rec, req)
		if reached != tc.want {
			t.Errorf("secret %q: handler reached %d times (HTTP %d), want %d", tc.secret, reached, rec.Code, tc.want)
		}
	}
}

// Every call a controller makes to a node or another controller carries the secret: the
// seal and hand-over of a promotion, the registration with the leader, the status proxy,
// ad batches, the locations proxy.
func TestControllerPresentsTheSecret(t *testing.T) {
	var mu sync.Mutex
	got := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.URL.Path] = r.Header.Get(command.SecretHeader)
		mu.Unlock()
		switch r.URL.Path {
		case pathStatus:
			_, _ = w.Write([]byte(`{}`))
		case "/v1/internal/seal":
			_, _ = w.Write([]byte(`{"node":2}`))
		default:
			_, _ = w.Write([]byte(`{"ok":true}`))
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	c := &Controller{cfg: Config{ID: "c1", ClusterSecret: testSecret}, ctx: context.Background()}
	c.client = &http.Client{Timeout: 2 * time.Second, Transport: withSecret(httpTransport(nil, nil), testSecret)}
	c.long = &http.Client{Transport: withSecret(httpTransport(nil, nil), testSecret)}
	c.fsm = newFSM()
	ctx := context.Background()
	if _, err := c.sendSeal(ctx, addr, command.SealRequest{Server: 1, Epoch: 2}); err != nil {
		t.Fatalf("seal: %v", err)
	}
	if err := c.postNode(ctx, addr, "/v1/internal/handover", HandoverRequest{Server: 1, Target: 2, Epoch: 2}, time.Second); err != nil {
		t.Fatalf("handover: %v", err)
	}
	if err := c.registerWith(addr); err != nil {
		t.Fatalf("register: %v", err)
	}
	if _, err := c.fetchStatus(ctx, addr); err != nil {
		t.Fatalf("status: %v", err)
	}
	if _, err := c.postAds(addr, []byte(`{"from":{},"ads":[]}`)); err != nil {
		t.Fatalf("ads: %v", err)
	}
	var lr command.LocationsReply
	if err := c.getFrom(ctx, addr, pathLocations, &lr); err != nil {
		t.Fatalf("locations: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, path := range []string{"/v1/internal/seal", "/v1/internal/handover", pathController, pathStatus, pathInternalAds, pathLocations} {
		if s, ok := got[path]; !ok || s != testSecret {
			t.Errorf("%s reached the server with secret %q (called: %v), want %q", path, s, ok, testSecret)
		}
	}
}

// A raft listener with a secret hands raft only connections that open with the secret's
// preamble; the others are closed without reaching raft.
func TestRaftConnectionsNeedTheClusterSecret(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl := newGuardedListener(ln, nil, testSecret, zerolog.Nop())
	defer sl.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := sl.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	layer := func(secret string) *streamLayer {
		s := &streamLayer{Listener: ln}
		if secret != "" {
			s.preamble = raftPreamble(secret)
		}
		return s
	}
	// Refused: no preamble (raft's own first byte), a wrong secret, garbage.
	for _, tc := range []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"no secret", func() (net.Conn, error) {
			c, err := layer("").Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
			if err == nil {
				_, err = c.Write(append([]byte{0}, make([]byte, 64)...)) // what raft would send
			}
			return c, err
		}},
		{"wrong secret", func() (net.Conn, error) {
			return layer("other").Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
		}},
	} {
		c, err := tc.dial()
		if err != nil {
			t.Fatalf("%s: dial: %v", tc.name, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("%s: the listener kept the connection (read %d bytes)", tc.name, n)
		}
		c.Close()
	}
	select {
	case c := <-accepted:
		t.Fatalf("a connection without the secret reached raft: %v", c.RemoteAddr())
	default:
	}
	// Accepted: the right preamble; raft's bytes follow it untouched.
	c, err := layer(testSecret).Dial(raft.ServerAddress(ln.Addr().String()), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("raft")); err != nil {
		t.Fatal(err)
	}
	select {
	case sc := <-accepted:
		defer sc.Close()
		buf := make([]byte, 4)
		_ = sc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "raft" {
			t.Fatalf("after the preamble: %q %v, want raft", buf, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a connection with the secret was not accepted")
	}
	// Close ends Accept.
	sl.Close()
	select {
	case _, open := <-accepted:
		if open {
			t.Fatal("a connection was accepted after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}
