package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api"
	"github.com/sibylhq/sibyl/api/internal/fake"
	"github.com/sibylhq/sibyl/command"
)

// countingBackend is one node over the shared fake backend, like one node of a cluster
// whose groups all live in one place: it counts the requests its connections start (by
// op), the status calls it answers and its open sessions.
type countingBackend struct {
	*fake.Backend
	mu       sync.Mutex
	ops      map[string]int
	statuses int
	open     int
}

func (b *countingBackend) NewSession(out api.Outbox) api.Session {
	b.mu.Lock()
	b.open++
	b.mu.Unlock()
	return &countingSession{Session: b.Backend.NewSession(out), b: b}
}

func (b *countingBackend) Status(ctx context.Context) (*command.Status, error) {
	b.mu.Lock()
	b.statuses++
	b.mu.Unlock()
	return b.Backend.Status(ctx)
}

type countingSession struct {
	*fake.Session
	b *countingBackend
}

func (s *countingSession) Start(ctx context.Context, req *command.Request, admin bool) func() (*command.Reply, error) {
	s.b.mu.Lock()
	s.b.ops[req.Op]++
	s.b.mu.Unlock()
	return s.Session.Start(ctx, req, admin)
}

func (s *countingSession) Close() {
	s.b.mu.Lock()
	s.b.open--
	s.b.mu.Unlock()
	s.Session.Close()
}

// routeNode is a node with counters and the node ID the cluster status gives it.
type routeNode struct {
	*node
	b  *countingBackend
	id uint16
}

func startRouteNode(t *testing.T, fb *fake.Backend, id uint16) *routeNode {
	t.Helper()
	b := &countingBackend{Backend: fb, ops: map[string]int{}}
	s := api.NewServer(b, api.Options{})
	n := &node{srv: s, http: httptest.NewServer(s.Handler())}
	t.Cleanup(n.stop)
	return &routeNode{node: n, b: b, id: id}
}

func (n *routeNode) url() string { return "ws://" + n.addr() + "/v1/ws" }

func (n *routeNode) count(op string) int {
	n.b.mu.Lock()
	defer n.b.mu.Unlock()
	return n.b.ops[op]
}

func (n *routeNode) sessions() int {
	n.b.mu.Lock()
	defer n.b.mu.Unlock()
	return n.b.open
}

func (n *routeNode) statuses() int {
	n.b.mu.Lock()
	defer n.b.mu.Unlock()
	return n.b.statuses
}

// clusterStatus lists the nodes and makes main the main of the fake's group at epoch.
func clusterStatus(main *routeNode, epoch uint64, nodes ...*routeNode) *command.Status {
	st := &command.Status{}
	for _, n := range nodes {
		st.Nodes = append(st.Nodes, command.StatusNode{ID: n.id, Addr: n.addr(), State: command.NodeUp})
	}
	id := main.id
	st.Groups = []command.StatusGroup{{Server: fake.Group, Main: &id, Epoch: epoch}}
	return st
}

// waitRoute waits until the client sends the fake group's requests straight to want. It
// asks for the route the way a request does, which starts the dial of the main.
func waitRoute(t *testing.T, c *Client, want string) {
	t.Helper()
	waitFor(t, "requests of group 1 to go straight to "+want, func() bool {
		c.routes.connFor(fake.Group, c.defaultURL())
		return c.Route(fake.Group) == want
	})
}

// updates sends n updates of rid, failing the test on an error.
func updates(t *testing.T, c *Client, rid string, n int) {
	t.Helper()
	for i := range n {
		if _, err := c.Update(testCtx(t), rid, json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))); err != nil {
			t.Fatalf("update %d of %s: %v", i, rid, err)
		}
	}
}

// A client on node a sends the writes and linearizable reads of a group whose main is
// node b over one connection to b; sibling reads and lists across groups stay on a.
func TestRoutesRequestsToTheGroupsMain(t *testing.T) {
	fb := fake.New()
	a, b := startRouteNode(t, fb, 1), startRouteNode(t, fb, 2)
	fb.SetStatus(clusterStatus(b, 1, a, b))
	c := dial(t, Options{Addrs: []string{a.addr()}})
	ctx := testCtx(t)
	rep, err := c.Create(ctx, "doc", json.RawMessage(`1`), WithKey("c1"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	rid := rep.Resource.ID
	waitRoute(t, c, b.url())

	aUpd, bUpd := a.count(command.OpUpdate), b.count(command.OpUpdate)
	const workers, each = 8, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := c.Patch(ctx, rid, json.RawMessage(`{"p":1}`)); err != nil {
					t.Errorf("patch of %s: %v", rid, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	updates(t, c, rid, 10)
	if got := b.count(command.OpPatch); got != workers*each {
		t.Errorf("main b got %d patches, want %d", got, workers*each)
	}
	if got := a.count(command.OpPatch); got != 0 {
		t.Errorf("default node a got %d patches, want none", got)
	}
	if da, db := a.count(command.OpUpdate)-aUpd, b.count(command.OpUpdate)-bUpd; da != 0 || db != 10 {
		t.Errorf("updates: %d on a, %d on main b; want 0 and 10", da, db)
	}

	aGet, bGet := a.count(command.OpGet), b.count(command.OpGet)
	if _, err := c.Get(ctx, rid, command.Linearizable); err != nil {
		t.Fatal(err)
	}
	sib, err := c.Get(ctx, rid, command.SiblingRead)
	if err != nil {
		t.Fatal(err)
	}
	if da, db := a.count(command.OpGet)-aGet, b.count(command.OpGet)-bGet; da != 1 || db != 1 {
		t.Errorf("gets: %d on a, %d on b; want the sibling read on a and the linearizable one on b", da, db)
	}
	if sib.Seq < c.Floor(fake.Group) || c.Floor(fake.Group) == 0 {
		t.Errorf("floor %d after routed writes, sibling read at seq %d", c.Floor(fake.Group), sib.Seq)
	}
	if _, err := c.List(ctx, ListOptions{Type: "doc"}); err != nil || a.count(command.OpList) != 1 {
		t.Errorf("list across groups: %v, %d on a; want it on a", err, a.count(command.OpList))
	}
	if sa, sb := a.sessions(), b.sessions(); sa != 1 || sb != 1 {
		t.Errorf("%d connections to a and %d to b, want one each", sa, sb)
	}
}

// When the status shows a new main, the client's requests follow it, and the connection
// to the old main, idle, is closed: on the timer, and after no_main with no timer due.
func TestRouteFollowsAMainThatMoved(t *testing.T) {
	for _, tc := range []struct {
		name    string
		refresh time.Duration
	}{{"timer", 20 * time.Millisecond}, {"no_main", time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			fb := fake.New()
			a, b, m := startRouteNode(t, fb, 1), startRouteNode(t, fb, 2), startRouteNode(t, fb, 3)
			fb.SetStatus(clusterStatus(b, 1, a, b, m))
			c := dial(t, Options{Addrs: []string{a.addr()}, RouteRefresh: tc.refresh, Seed: 3})
			ctx := testCtx(t)
			rep, err := c.Create(ctx, "doc", json.RawMessage(`1`))
			if err != nil {
				t.Fatal(err)
			}
			rid := rep.Resource.ID
			waitRoute(t, c, b.url())

			fb.SetStatus(clusterStatus(m, 2, a, b, m))
			if tc.name == "no_main" {
				fb.FailNext(command.OpUpdate, fake.Failure{Err: command.Errorf(command.CodeNoMain, "injected: b is no longer main")})
				bUpd := b.count(command.OpUpdate)
				if _, err := c.Update(ctx, rid, json.RawMessage(`0`), WithKey("k")); err != nil {
					t.Fatalf("keyed update through a main move: %v", err)
				}
				if b.count(command.OpUpdate) != bUpd+1 {
					t.Fatalf("the first attempt did not reach the old main b")
				}
			}
			waitRoute(t, c, m.url())
			bUpd, mUpd := b.count(command.OpUpdate), m.count(command.OpUpdate)
			updates(t, c, rid, 5)
			if db, dm := b.count(command.OpUpdate)-bUpd, m.count(command.OpUpdate)-mUpd; db != 0 || dm != 5 {
				t.Errorf("after the move: %d updates on b, %d on the new main; want 0 and 5", db, dm)
			}
			if tc.name == "timer" {
				waitFor(t, "the idle connection to the old main to close", func() bool { return b.sessions() == 0 })
			}
		})
	}
}

// A main whose connection drops is left alone: requests go through the default node
// (which forwards them) while the status still names the dead main, without waiting.
func TestDeadMainFallsBackToForwarding(t *testing.T) {
	fb := fake.New()
	a, b := startRouteNode(t, fb, 1), startRouteNode(t, fb, 2)
	fb.SetStatus(clusterStatus(b, 1, a, b))
	c := dial(t, Options{Addrs: []string{a.addr()}, RouteRefresh: 20 * time.Millisecond, Seed: 5})
	ctx := testCtx(t)
	rep, err := c.Create(ctx, "doc", json.RawMessage(`1`))
	if err != nil {
		t.Fatal(err)
	}
	rid := rep.Resource.ID
	waitRoute(t, c, b.url())

	b.stop()
	// Sent at once: it may meet the dying connection, and then its retry goes through a.
	if _, err := c.Update(ctx, rid, json.RawMessage(`0`), WithKey("k")); err != nil {
		t.Fatalf("keyed update as the main dies: %v", err)
	}
	waitFor(t, "the route to the dead main to go", func() bool { return c.Route(fake.Group) == "" })
	aUpd := a.count(command.OpUpdate)
	updates(t, c, rid, 10)
	if got := a.count(command.OpUpdate) - aUpd; got != 10 {
		t.Errorf("%d of 10 updates went through the default node", got)
	}
	if c.Route(fake.Group) != "" {
		t.Errorf("route to %q while the main is down", c.Route(fake.Group))
	}
}

func TestNoRoutingSendsEverythingToTheDefaultNode(t *testing.T) {
	fb := fake.New()
	a, b := startRouteNode(t, fb, 1), startRouteNode(t, fb, 2)
	fb.SetStatus(clusterStatus(b, 1, a, b))
	c := dial(t, Options{Addrs: []string{a.addr()}, NoRouting: true})
	ctx := testCtx(t)
	rep, err := c.Create(ctx, "doc", json.RawMessage(`1`), WithServer(fake.Group))
	if err != nil {
		t.Fatal(err)
	}
	updates(t, c, rep.Resource.ID, 5)
	if got := a.count(command.OpUpdate); got != 5 || b.sessions() != 0 || b.count(command.OpCreate) != 0 {
		t.Errorf("%d updates on a, %d connections to b; want 5 and none", got, b.sessions())
	}
	if a.statuses() != 0 || c.Route(fake.Group) != "" {
		t.Errorf("%d status calls, route %q; want none without routing", a.statuses(), c.Route(fake.Group))
	}
}

func TestCloseClosesTheMainsConnections(t *testing.T) {
	fb := fake.New()
	a, b := startRouteNode(t, fb, 1), startRouteNode(t, fb, 2)
	fb.SetStatus(clusterStatus(b, 1, a, b))
	c := dial(t, Options{Addrs: []string{a.addr()}})
	if _, err := c.Create(testCtx(t), "doc", json.RawMessage(`1`)); err != nil {
		t.Fatal(err)
	}
	waitRoute(t, c, b.url())
	c.Close()
	waitFor(t, "both connections to close", func() bool { return a.sessions() == 0 && b.sessions() == 0 })
	if _, err := c.Get(testCtx(t), "1-01JDQ8T5Z8K3N2M4P6R8S0V2X4", ""); err != ErrClosed {
		t.Fatalf("get after Close: %v, want ErrClosed", err)
	}
}

// A main on the client's default node is reached over the default connection, with no
// second connection to it.
func TestMainOnTheDefaultNodeUsesTheDefaultConnection(t *testing.T) {
	fb := fake.New()
	a, b := startRouteNode(t, fb, 1), startRouteNode(t, fb, 2)
	fb.SetStatus(clusterStatus(a, 1, a, b))
	c := dial(t, Options{Addrs: []string{a.addr()}})
	rep, err := c.Create(testCtx(t), "doc", json.RawMessage(`1`))
	if err != nil {
		t.Fatal(err)
	}
	waitRoute(t, c, a.url())
	updates(t, c, rep.Resource.ID, 3)
	if a.count(command.OpUpdate) != 3 || a.sessions() != 1 || b.sessions() != 0 {
		t.Errorf("%d updates on a over %d connections, %d connections to b; want 3 over 1, none",
			a.count(command.OpUpdate), a.sessions(), b.sessions())
	}
}

func TestRouteGroup(t *testing.T) {
	rid := "7-01JDQ8T5Z8K3N2M4P6R8S0V2X4"
	srv := func(s int64) *int64 { return &s }
	cases := []struct {
		req  command.Request
		want command.ServerID // 0: not routed
	}{
		{command.Request{Op: command.OpGet, RID: rid}, 7},
		{command.Request{Op: command.OpGet, RID: rid, Consistency: command.Linearizable}, 7},
		{command.Request{Op: command.OpGet, RID: rid, Consistency: command.SiblingRead}, 0},
		{command.Request{Op: command.OpUpdate, RID: rid}, 7},
		{command.Request{Op: command.OpPatch, RID: rid}, 7},
		{command.Request{Op: command.OpDelete, RID: rid}, 7},
		{command.Request{Op: command.OpAcquireTicket, RID: rid}, 7},
		{command.Request{Op: command.OpRenewTicket, RID: rid}, 7},
		{command.Request{Op: command.OpReleaseTicket, RID: rid}, 7},
		{command.Request{Op: command.OpUpdate, RID: "7-lowercase"}, 0},
		{command.Request{Op: command.OpCreate, Server: srv(3)}, 3},
		{command.Request{Op: command.OpCreate}, 0},
		{command.Request{Op: command.OpCreate, Server: srv(70000)}, 0},
		{command.Request{Op: command.OpList, Server: srv(4)}, 4},
		{command.Request{Op: command.OpList}, 0},
		{command.Request{Op: command.OpSubscribe, RID: rid}, 0},
		{command.Request{Op: command.OpStatus}, 0},
		{command.Request{Op: command.OpPromote, Server: srv(7)}, 0},
	}
	for _, tc := range cases {
		g, ok := routeGroup(&tc.req)
		if (tc.want == 0) == ok || g != tc.want {
			t.Errorf("%s %q server %v: group %d (%v), want %d", tc.req.Op, tc.req.RID, tc.req.Server, g, ok, tc.want)
		}
	}
}

func TestBuildView(t *testing.T) {
	main := func(n uint16) *uint16 { return &n }
	st := &command.Status{
		Nodes: []command.StatusNode{
			{ID: 1, Addr: "h1:7801", State: command.NodeUp},
			{ID: 2, Addr: "h2:7802", State: command.NodeDown},
			{ID: 3, Addr: "0.0.0.0:7803", State: command.NodeUp},
			{ID: 4, Addr: "h4:7804", State: "spare"},
			{ID: 5, Addr: "h5", State: command.NodeUp},
		},
		Groups: []command.StatusGroup{
			{Server: 1, Main: main(1), Epoch: 3},
			{Server: 2, Main: main(2), Epoch: 1}, // main down
			{Server: 3, Main: main(3), Epoch: 1}, // unspecified host
			{Server: 4, Main: nil, Epoch: 5},     // no main
			{Server: 5, Main: main(4), Epoch: 2},
			{Server: 6, Main: main(9), Epoch: 1}, // unknown node
			{Server: 7, Main: main(5), Epoch: 1}, // no port
		},
	}
	base, _ := url.Parse("wss://seed:1/v1/ws")
	got := buildView(st, base)
	want := map[command.ServerID]route{
		1: {node: 1, url: "wss://h1:7801/v1/ws", epoch: 3},
		5: {node: 4, url: "wss://h4:7804/v1/ws", epoch: 2},
	}
	if len(got) != len(want) {
		t.Fatalf("view %v, want %v", got, want)
	}
	for g, rt := range want {
		if got[g] != rt {
			t.Errorf("group %d: route %+v, want %+v", g, got[g], rt)
		}
	}
}

// Retryable errors and replies from a later epoch ask for a refresh; a retryable error of
// a routed request also drops the group's route, so that its retry is forwarded.
func TestAnsweredAsksForRefresh(t *testing.T) {
	base, _ := url.Parse("ws://seed:1/v1/ws")
	r := newRouter(nil, base)
	defer r.cancel()
	reset := func() {
		r.view = map[command.ServerID]route{1: {node: 2, url: "ws://h2:1/v1/ws", epoch: 4}}
		select {
		case <-r.kick:
		default:
		}
	}
	asked := func() bool { return len(r.kick) == 1 }
	cases := []struct {
		name    string
		routed  bool
		rep     *command.Reply
		err     error
		refresh bool
		kept    bool
	}{
		{"same epoch", true, &command.Reply{Epoch: 4}, nil, false, true},
		{"earlier epoch (a duplicate)", true, &command.Reply{Epoch: 3}, nil, false, true},
		{"later epoch", false, &command.Reply{Epoch: 5}, nil, true, true},
		{"no_main forwarded", false, nil, command.Errorf(command.CodeNoMain, "x"), true, true},
		{"timeout routed", true, nil, command.Errorf(command.CodeTimeout, "x"), true, false},
		{"conflict routed", true, nil, command.Errorf(command.CodeConflict, "x"), false, true},
		{"ctx ended", true, nil, context.Canceled, false, true},
	}
	for _, tc := range cases {
		reset()
		r.answered(1, tc.routed, tc.rep, tc.err)
		_, kept := r.view[1]
		if asked() != tc.refresh || kept != tc.kept {
			t.Errorf("%s: refresh %v, route kept %v; want %v, %v", tc.name, asked(), kept, tc.refresh, tc.kept)
		}
	}
}
