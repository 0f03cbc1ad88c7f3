package scenarios

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sibylhq/sibyl/command"
)

// rawWS is a WebSocket connection to a node for exact frames.
type rawWS struct {
	t  *testing.T
	ws *websocket.Conn
}

// wireFrame is a reply or event frame as the tests read it.
type wireFrame struct {
	ID       *string           `json:"id"`
	OK       bool              `json:"ok"`
	Error    *command.Error    `json:"error"`
	Sub      string            `json:"sub"`
	Event    string            `json:"event"`
	Resource *command.Resource `json:"resource"`
}

func dialWS(t *testing.T, addr, token string) *rawWS {
	t.Helper()
	var h http.Header
	if token != "" {
		h = http.Header{"Authorization": {"Bearer " + token}}
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/ws", h)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { ws.Close() })
	return &rawWS{t: t, ws: ws}
}

// read returns the next frame, or the error that ended the connection.
func (w *rawWS) read(within time.Duration) (wireFrame, error) {
	var f wireFrame
	w.ws.SetReadDeadline(time.Now().Add(within))
	_, b, err := w.ws.ReadMessage()
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(b, &f); err != nil {
		w.t.Fatalf("frame %s: %v", b, err)
	}
	return f, nil
}

// call sends frame (its id must be "c") and returns the reply, skipping event frames.
func (w *rawWS) call(frame string) wireFrame {
	w.t.Helper()
	if err := w.ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		w.t.Fatalf("send %s: %v", frame, err)
	}
	for {
		f, err := w.read(20 * time.Second)
		if err != nil {
			w.t.Fatalf("reply to %s: %v", frame, err)
		}
		if f.ID != nil {
			return f
		}
	}
}

// codeOf is "" for a success, else the error's code.
func (f wireFrame) codeOf() command.Code {
	if f.OK {
		return ""
	}
	if f.Error == nil {
		return "no error object"
	}
	return f.Error.Code
}

// TestRolesAndTokens runs on one cluster with the cluster secret and an admin token, where
// an admin makes roles and tokens: every op kind called with no token, an unknown one, a
// revoked one, one whose role lacks the grant and one that has it gives the exact code and
// a refusal changes nothing; a revocation closes open connections on every node within
// 2 s; subscriptions deliver only the types the token may see; and every HTTP and
// WebSocket endpoint of nodes and controllers refuses callers without the credentials it
// needs.
func TestRolesAndTokens(t *testing.T) {
	c := StartCluster(t, Options{Nodes: 4, ClusterSecret: "tokens-s3cret", AdminToken: "tokens-adm1n"})
	for g := uint16(1); g <= 4; g++ {
		c.WaitVoting(g, 3)
	}
	reader := c.CreateRoleToken("job-reader", command.Grant{Types: []string{"job"}, Ops: []string{command.KindRead, command.KindSubscribe}})
	writer := c.CreateRoleToken("job-writer", command.Grant{Types: []string{"job*"},
		Ops: []string{command.KindRead, command.KindWrite, command.KindTicket, command.KindSubscribe}})
	revoked := c.CreateRoleToken("job-writer2", command.Grant{Types: []string{"*"}, Ops: []string{command.KindRead, command.KindWrite}})
	revoke(t, c, revoked)
	c.WaitTokenAccepted(revoked, false)

	t.Run("ops", func(t *testing.T) { testTokenOps(t, c, reader, writer, revoked) })
	t.Run("subscriptions", func(t *testing.T) { testTokenSubscriptions(t, c, reader) })
	t.Run("endpoints", func(t *testing.T) { testEndpointsNeedCredentials(t, c, reader) })
	t.Run("revocation", func(t *testing.T) { testRevocationEverywhere(t, c, writer) })
}

func revoke(t *testing.T, c *Cluster, token string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Admin(1).Do(ctx, &command.Request{Op: command.OpRevokeToken, Token: token}); err != nil {
		t.Fatalf("revokeToken: %v", err)
	}
}

// adminCreate creates a resource of typ in group g as the admin and returns it.
func adminCreate(t *testing.T, c *Cluster, g int64, typ string) *command.Resource {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := c.Admin(1).DoRetry(ctx, &command.Request{Op: command.OpCreate, Type: typ, Server: &g,
		Data: json.RawMessage(`{"n":1}`), Key: fmt.Sprintf("admin-%s-%d-%d", typ, g, time.Now().UnixNano())})
	if err != nil {
		t.Fatalf("create %s in group %d: %v", typ, g, err)
	}
	return rep.Resource
}

// snapshotResources lists every resource as the admin sees it: rid -> version.
func snapshotResources(t *testing.T, c *Cluster) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := map[string]uint64{}
	after := ""
	for {
		rep, err := c.Admin(1).Do(ctx, &command.Request{Op: command.OpList, After: after, Limit: 1000})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		for _, r := range rep.Resources {
			out[r.ID] = r.Version
		}
		if rep.Next == "" {
			return out
		}
		after = rep.Next
	}
}

func testTokenOps(t *testing.T, c *Cluster, reader, writer, revoked string) {
	// Resources in group 2, reached through node 1: writes are forwarded to group 2's main,
	// which checks the type of the resource a rid names.
	job := adminCreate(t, c, 2, "job")
	doc := adminCreate(t, c, 2, "doc")
	calls := []struct{ name, frame string }{
		{"create job", `{"id":"c","op":"create","type":"job","server":2,"data":1}`},
		{"create doc", `{"id":"c","op":"create","type":"doc","server":2,"data":1}`},
		{"get job", `{"id":"c","op":"get","rid":"` + job.ID + `"}`},
		{"get doc", `{"id":"c","op":"get","rid":"` + doc.ID + `"}`},
		{"get doc (sibling)", `{"id":"c","op":"get","rid":"` + doc.ID + `","consistency":"sibling"}`},
		{"update doc", `{"id":"c","op":"update","rid":"` + doc.ID + `","data":2}`},
		{"patch doc", `{"id":"c","op":"patch","rid":"` + doc.ID + `","patch":{"x":1}}`},
		{"delete doc", `{"id":"c","op":"delete","rid":"` + doc.ID + `"}`},
		{"ticket on doc", `{"id":"c","op":"acquireTicket","rid":"` + doc.ID + `","ttlMs":1000}`},
		{"list doc", `{"id":"c","op":"list","type":"doc"}`},
		{"subscribe doc", `{"id":"c","op":"subscribe","type":"doc"}`},
		{"list job", `{"id":"c","op":"list","type":"job"}`},
		{"subscribe job", `{"id":"c","op":"subscribe","type":"job"}`},
		{"status", `{"id":"c","op":"status"}`},
		{"update job", `{"id":"c","op":"update","rid":"` + job.ID + `","data":2}`},
		{"ticket on job", `{"id":"c","op":"acquireTicket","rid":"` + job.ID + `","ttlMs":1000}`},
		{"promote", `{"id":"c","op":"promote","server":2,"node":2}`},
		{"createToken", `{"id":"c","op":"createToken","role":"job-reader"}`},
	}
	const (
		U  = command.CodeUnauthorized
		F  = command.CodeForbidden
		OK = command.Code("")
	)
	// The first eleven calls change or show what no caller here may; the writer may do
	// the next five; the last two are admin ops.
	callers := []struct {
		name, token string
		want        []command.Code
	}{
		{"no token", "", []command.Code{U, U, U, U, U, U, U, U, U, U, U, U, U, U, U, U, U, U}},
		{"unknown token", "sbt_never-made", []command.Code{U, U, U, U, U, U, U, U, U, U, U, U, U, U, U, U, U, U}},
		{"revoked token", revoked, []command.Code{U, U, U, U, U, U, U, U, U, U, U, U, U, U, U, U, U, U}},
		{"reader (no grant)", reader, []command.Code{F, F, OK, F, F, F, F, F, F, F, F, OK, OK, OK, F, F, F, F}},
		{"writer (grant)", writer, []command.Code{OK, F, OK, F, F, F, F, F, F, F, F, OK, OK, OK, OK, OK, F, F}},
	}
	before := snapshotResources(t, c)
	refused := 0
	for _, who := range callers {
		ws := dialWS(t, c.Node(1).HTTP, who.token)
		for i, call := range calls {
			got := ws.call(call.frame).codeOf()
			if got != who.want[i] {
				t.Errorf("%s, %s: code %q, want %q", who.name, call.name, got, who.want[i])
			}
			if got != "" {
				refused++
			}
		}
	}
	after := snapshotResources(t, c)
	// What may differ: the writer's create of a job, its update of the job (a ticket op
	// leaves the version alone).
	delete(after, job.ID)
	created := 0
	for rid, v := range after {
		if old, ok := before[rid]; !ok {
			created++
		} else if old != v && rid != job.ID {
			t.Errorf("resource %s changed from version %d to %d by refused calls", rid, old, v)
		}
	}
	if created != 1 || before[doc.ID] != after[doc.ID] {
		t.Errorf("after the table: %d resources created (want the writer's one job), doc version %d -> %d", created, before[doc.ID], after[doc.ID])
	}
	t.Logf("%d callers x %d calls through node 1 (writes forwarded to group 2's main): %d refused with the expected code, nothing changed by a refusal",
		len(callers), len(calls), refused)
}

// A reader's subscriptions never deliver a doc event: a server subscription gets the job
// events of its group, a rid subscription on a doc gets nothing, on any node.
func testTokenSubscriptions(t *testing.T, c *Cluster, reader string) {
	sub := dialWS(t, c.Node(3).HTTP, reader)
	if f := sub.call(`{"id":"all","op":"subscribe","server":1}`); !f.OK {
		t.Fatalf("reader's server subscription: %+v", f.Error)
	}
	doc := adminCreate(t, c, 1, "doc")
	if f := sub.call(`{"id":"one","op":"subscribe","rid":"` + doc.ID + `"}`); !f.OK {
		t.Fatalf("reader's rid subscription on a doc: %+v", f.Error)
	}
	const n = 20
	for i := 0; i < n; i++ {
		adminCreate(t, c, 1, "doc")
		adminCreate(t, c, 1, "job")
	}
	// The last write is a job: once its event is in, every doc event before it would be too.
	jobs := 0
	for jobs < n {
		f, err := sub.read(20 * time.Second)
		if err != nil {
			t.Fatalf("after %d job events: %v", jobs, err)
		}
		if f.Event == "" {
			continue
		}
		if f.Sub != "all" || f.Resource == nil || f.Resource.Type != "job" {
			t.Fatalf("reader's subscription delivered %+v: only job events may come", f)
		}
		jobs++
	}
	t.Logf("reader's server subscription on node 3: %d job events, 0 of the %d doc events (and none on its doc rid subscription)", jobs, n+1)
}

// Every endpoint of nodes and controllers, called with no credentials, a wrong token,
// and a client token where an admin is needed: none is accepted, nothing changes.
func testEndpointsNeedCredentials(t *testing.T, c *Cluster, client string) {
	before := snapshotResources(t, c)
	stBefore, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	job := adminCreate(t, c, 1, "job")
	before[job.ID] = job.Version
	type ep struct{ method, path, body string }
	rid := job.ID
	nodePublic := []ep{
		{"GET", "/v1/status", ""}, {"GET", "/", ""}, {"GET", "/v1/status/stream", ""},
		{"POST", "/v1/resources", `{"type":"job","data":1}`}, {"GET", "/v1/resources", ""},
		{"GET", "/v1/resources/" + rid, ""}, {"PUT", "/v1/resources/" + rid, `{"data":9}`},
		{"PATCH", "/v1/resources/" + rid, `{"patch":{"x":9}}`}, {"DELETE", "/v1/resources/" + rid, ""},
	}
	var nodeAdmin []ep
	for _, op := range []string{command.OpRegisterSibling, command.OpRemoveSibling, command.OpPromote, command.OpDrain,
		command.OpRemoveNode, command.OpCreateRole, command.OpDeleteRole, command.OpListRoles, command.OpCreateToken, command.OpRevokeToken} {
		nodeAdmin = append(nodeAdmin, ep{"POST", "/v1/admin/" + op,
			`{"server":1,"node":2,"name":"job-reader","role":"admin","grants":[{"types":["*"],"ops":["write"]}],"token":"` + client + `"}`})
	}
	internal := []ep{}
	for _, p := range []string{"repl", "resync", "fwd", "feed", "snapshot?group=1&kind=2", "seal", "handover", "metrics", "debug/pprof/"} {
		internal = append(internal, ep{"POST", "/v1/internal/" + p, `{"server":1,"epoch":99999,"from":1,"target":2}`})
	}
	ctrlInternal := []ep{
		{"POST", "/v1/internal/join", `{"id":99,"addr":"127.0.0.1:1","instance":"x","incarnation":1}`},
		{"POST", "/v1/internal/heartbeat", `{"node":1}`}, {"GET", "/v1/internal/directory?after=0", ""},
		{"POST", "/v1/internal/controller", `{"id":"c9","httpAddr":"x","raftAddr":"y","location":"loc1"}`},
		{"POST", "/v1/internal/suspect", `{"node":2,"server":1,"main":1}`},
		{"POST", "/v1/internal/abandon", `{"server":1,"epoch":99999}`},
		{"POST", "/v1/internal/ads", `{"from":{},"ads":[]}`},
	}
	ctrlAdmin := []ep{}
	for _, e := range nodeAdmin {
		ctrlAdmin = append(ctrlAdmin, ep{"POST", "/v1/internal/admin/" + strings.TrimPrefix(e.path, "/v1/admin/"), e.body})
	}
	ctrlView := []ep{{"GET", "/v1/ads", ""}, {"GET", "/v1/locations", ""}, {"GET", "/v1/status", ""}, {"GET", "/", ""},
		{"GET", "/v1/status/stream", ""}}

	type probe struct {
		where  string
		addr   string
		e      ep
		header http.Header
	}
	var probes []probe
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	bad := []http.Header{{}, bearer("sbt_wrong")}
	for _, n := range c.Nodes {
		for _, h := range bad {
			for _, e := range append(append(append([]ep{}, nodePublic...), nodeAdmin...), internal...) {
				probes = append(probes, probe{"node " + n.Name(), n.HTTP, e, h})
			}
		}
		for _, e := range nodeAdmin {
			probes = append(probes, probe{"node " + n.Name() + " (client token)", n.HTTP, e, bearer(client)})
		}
		for _, e := range internal {
			probes = append(probes, probe{"node " + n.Name() + " (client token)", n.HTTP, e, bearer(client)})
		}
	}
	for _, p := range c.Controllers {
		for _, h := range bad {
			for _, e := range append(append(append([]ep{}, ctrlInternal...), ctrlAdmin...), ctrlView...) {
				probes = append(probes, probe{"controller " + p.Name(), p.HTTP, e, h})
			}
		}
		for _, e := range append(append([]ep{}, ctrlInternal...), ctrlAdmin...) {
			// A client token, also with the cluster secret on the admin calls: no admin.
			h := bearer(client)
			if strings.HasPrefix(e.path, "/v1/internal/admin/") {
				h.Set(command.SecretHeader, c.secret)
			}
			probes = append(probes, probe{"controller " + p.Name() + " (client token)", p.HTTP, e, h})
		}
		for _, e := range []ep{{"GET", "/v1/ads", ""}, {"GET", "/v1/locations", ""}} {
			probes = append(probes, probe{"controller " + p.Name() + " (client token)", p.HTTP, e, bearer(client)})
		}
	}
	accepted := 0
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, p := range probes {
		req, err := http.NewRequest(p.e.method, "http://"+p.addr+p.e.path, strings.NewReader(p.e.body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range p.header {
			req.Header[k] = v
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Errorf("%s %s %s: %v", p.where, p.e.method, p.e.path, err)
			continue
		}
		var eb struct {
			Error *command.Error `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		want := http.StatusUnauthorized
		if p.header.Get("Authorization") == "Bearer "+client && strings.HasPrefix(p.e.path, "/v1/admin/") {
			want = http.StatusForbidden
		}
		if resp.StatusCode < 300 || resp.StatusCode != want {
			if resp.StatusCode < 300 {
				accepted++
			}
			t.Errorf("%s %s %s with %v: HTTP %d %+v, want %d", p.where, p.e.method, p.e.path, p.header, resp.StatusCode, eb.Error, want)
		}
	}
	// The WebSocket endpoints: an upgrade without a valid token gets a connection, but no
	// op; the internal WebSockets refuse the upgrade itself.
	wsProbes := 0
	for _, n := range c.Nodes {
		for _, tok := range []string{"", "sbt_wrong"} {
			ws := dialWS(t, n.HTTP, tok)
			for _, frame := range []string{`{"id":"c","op":"list"}`, `{"id":"c","op":"subscribe","server":1}`,
				`{"id":"c","op":"hello","token":"sbt_wrong"}`, `{"id":"c","op":"update","rid":"` + rid + `","data":7}`} {
				if f := ws.call(frame); f.codeOf() != command.CodeUnauthorized {
					accepted++
					t.Errorf("node %s WebSocket with token %q, %s: %q, want unauthorized", n.Name(), tok, frame, f.codeOf())
				}
				wsProbes++
			}
		}
		ws := dialWS(t, n.HTTP, client)
		for _, op := range []string{command.OpPromote, command.OpCreateToken, command.OpRevokeToken, command.OpDeleteRole} {
			f := ws.call(`{"id":"c","op":"` + op + `","server":1,"node":2,"role":"admin","name":"job-reader","token":"x"}`)
			if f.codeOf() != command.CodeForbidden {
				accepted++
				t.Errorf("node %s WebSocket with a client token, %s: %q, want forbidden", n.Name(), op, f.codeOf())
			}
			wsProbes++
		}
		for _, p := range []string{"repl", "fwd", "feed", "resync"} {
			for _, h := range append(bad, bearer(client)) {
				if ws, resp, err := websocket.DefaultDialer.Dial("ws://"+n.HTTP+"/v1/internal/"+p+"?from=1&group=1", h); err == nil {
					ws.Close()
					accepted++
					t.Errorf("node %s internal WebSocket %s opened without the secret", n.Name(), p)
				} else if resp == nil || resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("node %s internal WebSocket %s: %v, want 401", n.Name(), p, err)
				}
				wsProbes++
			}
		}
	}
	after := snapshotResources(t, c)
	if len(after) != len(before) {
		t.Errorf("refused calls changed the resources: %d before, %d after", len(before), len(after))
	}
	for rid, v := range before {
		if after[rid] != v {
			t.Errorf("refused calls changed %s: version %d -> %d", rid, v, after[rid])
		}
	}
	stAfter, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(stAfter.Nodes) != len(stBefore.Nodes) || len(stAfter.Controllers) != len(stBefore.Controllers) {
		t.Errorf("refused calls changed the cluster: nodes %d -> %d, controllers %d -> %d",
			len(stBefore.Nodes), len(stAfter.Nodes), len(stBefore.Controllers), len(stAfter.Controllers))
	}
	for i, g := range stAfter.Groups {
		if g.Epoch != stBefore.Groups[i].Epoch || len(g.Siblings) != len(stBefore.Groups[i].Siblings) {
			t.Errorf("refused calls changed group %d: %+v -> %+v", g.Server, stBefore.Groups[i], g)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	roles, err := c.Admin(1).Do(ctx, &command.Request{Op: command.OpListRoles})
	if err != nil || len(roles.Roles) != 3 {
		t.Errorf("roles after the refused calls: %+v %v, want the three made", roles, err)
	}
	t.Logf("%d HTTP and %d WebSocket calls without the credentials they need: %d accepted; resources, groups, nodes and roles unchanged",
		len(probes), wsProbes, accepted)
}

// A revoked token stops working on every node within 2 s, on connections already open:
// a subscriber's connection is closed, an idle one refused at its next frame or closed.
func testRevocationEverywhere(t *testing.T, c *Cluster, token string) {
	type conn struct {
		node string
		ws   *rawWS
	}
	var subs, idle []conn
	for _, n := range c.Nodes {
		s := dialWS(t, n.HTTP, token)
		if f := s.call(`{"id":"c","op":"subscribe","type":"job"}`); !f.OK {
			t.Fatalf("node %s: subscribe with the token: %+v", n.Name(), f.Error)
		}
		subs = append(subs, conn{n.Name(), s})
		i := dialWS(t, n.HTTP, token)
		if f := i.call(`{"id":"c","op":"list","type":"job","limit":1}`); !f.OK {
			t.Fatalf("node %s: list with the token: %+v", n.Name(), f.Error)
		}
		idle = append(idle, conn{n.Name(), i})
	}
	revoke(t, c, token)
	revokedAt := time.Now()
	var worst time.Duration
	for _, s := range subs {
		for {
			_, err := s.ws.read(2*time.Second - time.Since(revokedAt))
			if err == nil {
				continue // an event written before the revocation arrived
			}
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != 1008 {
				t.Fatalf("node %s: the revoked token's subscriber connection: %v, want closed with 1008 within 2 s", s.node, err)
			}
			break
		}
		worst = max(worst, time.Since(revokedAt))
	}
	for _, i := range idle {
		for {
			if time.Since(revokedAt) > 2*time.Second {
				t.Fatalf("node %s: the revoked token still works on an open connection after 2 s", i.node)
			}
			err := i.ws.ws.WriteMessage(websocket.TextMessage, []byte(`{"id":"c","op":"list","type":"job","limit":1}`))
			if err != nil {
				break
			}
			f, err := i.ws.read(time.Second)
			if err != nil || f.codeOf() == command.CodeUnauthorized {
				break
			}
			time.Sleep(20 * time.Millisecond) // pace of the poll, not synchronisation
		}
		worst = max(worst, time.Since(revokedAt))
	}
	t.Logf("revocation: the token's %d open connections on %d nodes stopped working within %v of the revokeToken reply",
		len(subs)+len(idle), len(c.Nodes), worst.Round(time.Millisecond))
}

// TestTokensAcrossLocations: with `--locations 3 --nodes 6`, a role and its token made
// through a node of loc1 work at every node of every location (CreateRoleToken waits for
// all six to accept it), for writes to groups of every home, and a revocation at loc1
// closes the token's connections at the nodes of loc2 and loc3 too.
func TestTokensAcrossLocations(t *testing.T) {
	c := StartCluster(t, Options{Locations: 3, Nodes: 6, ClusterSecret: "tokens-s3cret", AdminToken: "tokens-adm1n"})
	where, at := nodesByLocation(t, c)
	homes := map[uint16]string{}
	for id, loc := range where {
		homes[id] = loc
	}
	waitGroupsServed(t, c, homes, 2, 90*time.Second)
	writer := c.CreateRoleToken("job-writer", command.Grant{Types: []string{"job"},
		Ops: []string{command.KindRead, command.KindWrite, command.KindSubscribe}})
	for _, loc := range []string{"loc2", "loc3"} {
		via := at[loc][0]
		cl := c.ClientWithToken(writer, via)
		for g := int64(1); g <= 6; g++ {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			_, err := cl.DoRetry(ctx, &command.Request{Op: command.OpCreate, Type: "job", Server: &g, Data: json.RawMessage(`{"n":1}`),
				Key: fmt.Sprintf("x-%s-%d", loc, g)})
			cancel()
			if err != nil {
				t.Fatalf("create in group %d (home %s) with loc1's token at node %d (%s): %v", g, homes[uint16(g)], via, loc, err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := cl.Do(ctx, &command.Request{Op: command.OpCreate, Type: "other", Data: json.RawMessage(`{"n":1}`)})
		cancel()
		if command.CodeOf(err) != command.CodeForbidden {
			t.Fatalf("create of a type the role does not grant, at node %d (%s): %v, want forbidden", via, loc, err)
		}
	}
	testRevocationEverywhere(t, c, writer)
}
