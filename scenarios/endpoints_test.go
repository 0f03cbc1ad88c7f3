package scenarios

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/tlsconf"
)

// TestEndpointsRefuseIntruders (docs/protocol.md §7, docs/security.md): a cluster of two
// locations with TLS, the cluster secret and an admin token on every process. Every
// endpoint its nodes and controllers serve, as their routers register them
// (routerPatterns), is called
//
//   - in plaintext on its TLS port: as an HTTP request, and as a WebSocket upgrade for a
//     GET; and every controller's raft port in plaintext, and over TLS without the secret;
//   - over TLS without the cluster secret and with a wrong one, for every internal
//     endpoint (/v1/internal/ of nodes and controllers, and the controllers' membership
//     views /v1/ads and /v1/locations), again as HTTP and as a WebSocket upgrade.
//
// The bodies are ones that would change the cluster if they were served (a seal in a far
// epoch, a drain, a join of an unknown node, writes to an existing resource). None is
// accepted, and the membership, the groups and the resource are the same afterwards.
func TestEndpointsRefuseIntruders(t *testing.T) {
	const secret = "endpoints-s3cret"
	// A down-after well above the time the probes take: no node of a loaded machine misses
	// heartbeats long enough to be replaced meanwhile, which would change the groups too.
	c := StartCluster(t, Options{Locations: 2, Controllers: 1, Nodes: 4, DownAfter: 5 * time.Second,
		ClusterSecret: secret, AdminToken: "endpoints-adm1n", TLS: true})
	ctrlRoutes := routerPatterns(t, "../location")
	nodeRoutes := slices.Concat(routerPatterns(t, "../node"), routerPatterns(t, "../api"), routerPatterns(t, "../cmd/sibyl"))
	for _, want := range []string{"POST /v1/internal/join", "POST /v1/internal/admin/{op}", "GET /v1/ads"} {
		if !slices.Contains(ctrlRoutes, want) {
			t.Fatalf("controller routes %v lack %q: the route listing is broken", ctrlRoutes, want)
		}
	}
	for _, want := range []string{"/v1/internal/seal", "/v1/internal/repl", "GET /v1/ws", "POST /v1/resources"} {
		if !slices.Contains(nodeRoutes, want) {
			t.Fatalf("node routes %v lack %q: the route listing is broken", nodeRoutes, want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	created, err := c.Client(1).DoRetry(ctx, &command.Request{Op: command.OpCreate, Type: "probe", Data: json.RawMessage(`{"v":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	rid := created.Resource.ID
	// The cluster may still be settling after dev's readiness (copies becoming voting, the
	// other location's controllers and nodes arriving in ads): the state before lists every
	// process and held still for a second.
	var before, last []string
	var lastChange time.Time
	waitFor(t, 60*time.Second, "a settled cluster", func() bool {
		st, settled := clusterState(t, c, rid)
		if !settled || !slices.Equal(st, last) {
			last, lastChange = st, time.Now()
			return false
		}
		before = st
		return time.Since(lastChange) >= time.Second
	})

	plain := &http.Client{Timeout: 5 * time.Second}
	plainWS := &websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	var calls, accepted int
	refuse := func(what string, ok bool, got string) {
		t.Helper()
		calls++
		if !ok {
			accepted++
			t.Errorf("%s: %s", what, got)
		}
	}
	probe := func(kind string, procs []*Proc, routes []string) {
		for _, p := range procs {
			for _, route := range routes {
				for _, r := range concreteRequests(t, route, rid) {
					what := fmt.Sprintf("%s %s %s %s", kind, p.Name(), r.method, r.path)
					// Plaintext on the TLS port.
					status, body, err := send(plain, r.method, "http://"+p.HTTP+r.path, nil, r.body)
					refuse(what+" in plaintext", err != nil || plaintextRefused(status, body), fmt.Sprintf("HTTP %d %.80q", status, body))
					if r.method == http.MethodGet {
						ok, got := wsRefused(plainWS, "ws://"+p.HTTP+r.path, nil, 0)
						refuse(what+" as a plaintext WebSocket", ok, got)
					}
					if !internalPath(r.path) {
						continue
					}
					// Over TLS, without the secret and with wrong ones.
					for _, h := range []http.Header{{}, {command.SecretHeader: {"wrong"}}, {command.SecretHeader: {strings.ToUpper(secret)}}} {
						status, body, err := send(c.HTTP(), r.method, c.URL(p, r.path), h, r.body)
						refuse(fmt.Sprintf("%s with secret %q", what, h.Get(command.SecretHeader)),
							err == nil && status == http.StatusUnauthorized && bytes.Contains(body, []byte(command.CodeUnauthorized)),
							fmt.Sprintf("HTTP %d %.80q %v", status, body, err))
						if r.method == http.MethodGet {
							ok, got := wsRefused(c.WSDialer(), c.WSURL(p, r.path), h, http.StatusUnauthorized)
							refuse(fmt.Sprintf("%s as a WebSocket with secret %q", what, h.Get(command.SecretHeader)), ok, got)
						}
					}
				}
			}
		}
	}
	probe("controller", c.Controllers, ctrlRoutes)
	probe("node", c.Nodes, nodeRoutes)
	for _, p := range c.Controllers {
		ok, got := raftRefused(p.Raft, nil)
		refuse("raft of "+p.Name()+" in plaintext", ok, got)
		ok, got = raftRefused(p.Raft, c.tls)
		refuse("raft of "+p.Name()+" over TLS without the secret", ok, got)
	}

	after, _ := clusterState(t, c, rid)
	gone, came := diffLines(before, after)
	if len(gone) > 0 || len(came) > 0 {
		t.Errorf("refused calls changed the cluster: before %q, after %q", gone, came)
	}
	t.Logf("%d controller and %d node routes; %d intruder calls, %d accepted; cluster unchanged: %v",
		len(ctrlRoutes), len(nodeRoutes), calls, accepted, len(gone)+len(came) == 0)
}

// probeRequest is one concrete request for a route.
type probeRequest struct {
	method, path string
	body         any
}

// concreteRequests turns a route pattern into requests: every method for a pattern without
// one, its wildcards filled in (rid an existing resource, op every admin op that changes
// the cluster), and a body that would change the cluster if it were served.
func concreteRequests(t *testing.T, pattern, rid string) []probeRequest {
	t.Helper()
	method, path := splitPattern(pattern)
	methods := []string{method}
	if method == "" {
		methods = []string{http.MethodGet, http.MethodPost}
	}
	path = strings.ReplaceAll(path, "{$}", "")
	path = strings.ReplaceAll(path, "{rid}", rid)
	paths := []string{path}
	if strings.Contains(path, "{op}") {
		paths = nil
		for _, op := range []string{command.OpDrain, command.OpPromote, command.OpRemoveSibling, command.OpRemoveNode} {
			paths = append(paths, strings.ReplaceAll(path, "{op}", op))
		}
	}
	var out []probeRequest
	for _, p := range paths {
		if strings.Contains(p, "{") {
			t.Fatalf("route %q has a wildcard this test does not fill in", pattern)
		}
		for _, m := range methods {
			out = append(out, probeRequest{method: m, path: p, body: intruderBody(m, p)})
		}
	}
	return out
}

// intruderBody is what an intruder would send to path to change the cluster.
func intruderBody(method, path string) any {
	if method == http.MethodGet || method == http.MethodDelete {
		return nil
	}
	switch {
	case strings.HasSuffix(path, "/join"):
		return command.JoinRequest{ID: 99, Addr: "127.0.0.1:1", Instance: "intruder", Incarnation: 1}
	case strings.HasSuffix(path, "/heartbeat"):
		return command.Heartbeat{Node: 1, Instance: "intruder", Incarnation: 1 << 40, Generation: 1 << 40}
	case strings.HasSuffix(path, "/suspect"):
		return command.Suspect{Node: 2, Server: 1, Main: 1}
	case strings.HasSuffix(path, "/seal"):
		return command.SealRequest{Server: 1, Epoch: 1 << 40, From: 2}
	case strings.Contains(path, "/admin/"):
		return map[string]any{"op": path[strings.LastIndex(path, "/")+1:], "server": 1, "node": 1}
	case strings.HasPrefix(path, "/v1/resources"):
		return map[string]any{"type": "intruder", "data": map[string]string{"by": "intruder"}}
	}
	return map[string]any{"id": "c99", "server": 1, "node": 1, "epoch": 1 << 40, "addr": "127.0.0.1:1"}
}

// internalPath reports whether path needs the cluster secret: /v1/internal/ of nodes and
// controllers, and the controllers' membership views.
func internalPath(path string) bool {
	return strings.HasPrefix(path, "/v1/internal/") || path == "/v1/ads" || path == "/v1/locations"
}

// send makes one request and returns the status and up to 4 KiB of the body.
func send(hc *http.Client, method, url string, header http.Header, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, b, nil
}

// plaintextRefused reports whether a plaintext answer is Go's refusal of plaintext on a
// TLS port: nothing was served.
func plaintextRefused(status int, body []byte) bool {
	return status == http.StatusBadRequest && bytes.Contains(body, []byte("HTTP request to an HTTPS server"))
}

// wsRefused dials a WebSocket and reports whether the upgrade failed: before any HTTP
// answer, with Go's plaintext refusal, or with status want (when not 0).
func wsRefused(d *websocket.Dialer, url string, header http.Header, want int) (bool, string) {
	conn, resp, err := d.Dial(url, header)
	if err == nil {
		conn.Close()
		return false, "upgraded"
	}
	if resp == nil {
		return want == 0, fmt.Sprintf("no HTTP answer: %v", err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if want != 0 {
		return resp.StatusCode == want, fmt.Sprintf("HTTP %d %.80q", resp.StatusCode, b)
	}
	return plaintextRefused(resp.StatusCode, b), fmt.Sprintf("HTTP %d %.80q", resp.StatusCode, b)
}

// raftRefused opens a connection to a raft port (TLS with conf, plaintext without),
// sends what raft would send first without the secret's preamble, and reports whether the
// controller closed it without answering.
func raftRefused(addr string, conf *tls.Config) (bool, string) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false, fmt.Sprintf("dial: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if conf != nil {
		tc := tls.Client(conn, tlsconf.ForHost(conf, addr))
		if err := tc.Handshake(); err != nil {
			return false, fmt.Sprintf("TLS handshake with the CA failed: %v", err)
		}
		conn = tc
	}
	if _, err := conn.Write(append([]byte{0}, make([]byte, 64)...)); err != nil {
		return true, ""
	}
	n, err := conn.Read(make([]byte, 1))
	if err == nil {
		return false, fmt.Sprintf("answered %d bytes", n)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false, "kept open for 10s"
	}
	return true, ""
}

// clusterState renders what a served intruder call would change: the membership (nodes
// with their addresses and lives, controllers), each group's main, epoch and copies, the
// resource rid and any resource of type intruder. settled reports whether it lists every
// node and controller, every node with a known life, and every group with a main and only
// voting copies.
func clusterState(t *testing.T, c *Cluster, rid string) (parts []string, settled bool) {
	t.Helper()
	// Always the same controller's view: another location's may differ in what it has
	// heard so far.
	var st command.Status
	waitFor(t, 20*time.Second, "the status of "+c.Controllers[0].Name(), func() bool {
		got, err := c.StatusFrom(c.Controllers[0])
		if err != nil {
			return false
		}
		st = *got
		return true
	})
	settled = len(st.Nodes) == len(c.Nodes) && len(st.Controllers) == len(c.Controllers) && len(st.Groups) > 0
	for _, n := range st.Nodes {
		settled = settled && n.Instance != ""
		parts = append(parts, fmt.Sprintf("node %d %s %s %s spare=%v", n.ID, n.Addr, n.Location, n.Instance, n.State == command.NodeSpare))
	}
	for _, ctl := range st.Controllers {
		parts = append(parts, fmt.Sprintf("controller %s %s %s", ctl.ID, ctl.Addr, ctl.Location))
	}
	for _, g := range st.Groups {
		main := "none"
		if g.Main != nil {
			main = fmt.Sprint(*g.Main)
		}
		settled = settled && g.Main != nil
		var sibs []string
		for _, s := range g.Siblings {
			sibs = append(sibs, fmt.Sprint(s.Node))
			settled = settled && s.State == command.SiblingVoting
		}
		parts = append(parts, fmt.Sprintf("group %d main %s epoch %d siblings %s", g.Server, main, g.Epoch, strings.Join(sibs, ",")))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := c.Client(1)
	r, err := cl.DoRetry(ctx, &command.Request{Op: command.OpGet, RID: rid})
	if err != nil {
		t.Fatalf("get %s: %v", rid, err)
	}
	parts = append(parts, fmt.Sprintf("resource %s version %d data %s", rid, r.Resource.Version, r.Resource.Data))
	l, err := cl.DoRetry(ctx, &command.Request{Op: command.OpList, Type: "intruder"})
	if err != nil {
		t.Fatalf("list intruder resources: %v", err)
	}
	parts = append(parts, fmt.Sprintf("intruder resources %d", len(l.Resources)))
	sort.Strings(parts)
	return parts, settled
}

// diffLines returns the lines of a missing from b, and those of b missing from a.
func diffLines(a, b []string) (gone, came []string) {
	for _, l := range a {
		if !slices.Contains(b, l) {
			gone = append(gone, l)
		}
	}
	for _, l := range b {
		if !slices.Contains(a, l) {
			came = append(came, l)
		}
	}
	return gone, came
}
