package location

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node"
)

// Moving a group's home (docs/locations.md "Moving a home", docs/replication.md case 6),
// with real controllers on raft in two locations and real nodes: two nodes per location,
// group 1 homed in loc1 with its main on node 1.

const rehomeSecret = "rehome-secret"

type rehomeWorld struct {
	t     *testing.T
	locs  map[string]*testCluster
	nodes map[uint16]*rehomeNode
}

type rehomeNode struct {
	addr string
	cfg  node.Config
	n    *node.Node
	srv  *http.Server
	s    *node.Session

	stopped bool
}

// start runs the node of cfg on addr (its data directory as it was left).
func startRehomeNode(t *testing.T, addr string, cfg node.Config) *rehomeNode {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTPAddr = ln.Addr().String()
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: n.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	rn := &rehomeNode{addr: ln.Addr().String(), cfg: cfg, n: n, srv: srv, s: n.NewSession()}
	t.Cleanup(rn.stop)
	return rn
}

func (rn *rehomeNode) stop() {
	if rn.stopped {
		return
	}
	rn.stopped = true
	rn.s.Close()
	_ = rn.srv.Close()
	_ = rn.n.Close()
}

func newRehomeWorld(t *testing.T) *rehomeWorld {
	t.Helper()
	return newRehomeWorldWith(t, nil)
}

// newRehomeWorldWith is newRehomeWorld with prepare (if set) run on each node's data
// directory before the node starts.
func newRehomeWorldWith(t *testing.T, prepare func(id uint16, dataDir string)) *rehomeWorld {
	t.Helper()
	w := &rehomeWorld{t: t, locs: newTestLocations(t, []string{"loc1", "loc2"}, 3, rehomeSecret), nodes: map[uint16]*rehomeNode{}}
	base := t.TempDir()
	for id := uint16(1); id <= 4; id++ {
		loc := "loc1"
		if id > 2 {
			loc = "loc2"
		}
		if prepare != nil {
			dir := filepath.Join(base, fmt.Sprint(id))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			prepare(id, dir)
		}
		w.nodes[id] = startRehomeNode(t, "127.0.0.1:0", node.Config{ID: command.ServerID(id), Location: loc,
			DataDir: filepath.Join(base, fmt.Sprint(id)), Controllers: w.locs[loc].httpAddrs(), ClusterSecret: rehomeSecret,
			DownAfter: testDownAfter, WriteTimeout: 2 * time.Second, Logger: newTestLogger(t)})
	}
	// Group 1 gets three voting siblings, two of them in loc2 (placement); so does group 3,
	// homed in loc2, whose leader then serves.
	eventuallyOK(t, 30*time.Second, "groups 1 and 3 with three voting siblings each", func() error {
		for _, want := range []struct {
			loc    string
			server uint16
		}{{"loc1", 1}, {"loc2", 3}} {
			g := w.group(want.loc, want.server)
			// Group 1's main is node 1, which the tests stop; group 3's may have moved
			// already under a loaded machine's slow heartbeats.
			if g == nil || g.Main == 0 || (want.server == 1 && g.Main != 1) || len(g.Active.Voters) != 3 || g.Pending != nil {
				return fmt.Errorf("group %d in %s: %+v", want.server, want.loc, g)
			}
		}
		return nil
	})
	return w
}

// group returns loc's record of group server as its leader holds it (nil: none).
func (w *rehomeWorld) group(loc string, server uint16) *command.GroupInfo {
	l := w.locs[loc].currentLeader()
	if l == nil {
		return nil
	}
	d := l.c.Directory()
	return d.Group(server)
}

// do runs req through node id (admin).
func (w *rehomeWorld) do(id uint16, req command.Request) (*command.Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return w.nodes[id].s.Start(ctx, &req, true)()
}

func rehomeReq(server int64, loc string) command.Request {
	return command.Request{Op: command.OpRehome, Server: &server, Location: loc}
}

// write updates rid to data through node id and returns its version.
func (w *rehomeWorld) write(id uint16, rid, data string) (uint64, error) {
	rep, err := w.do(id, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(data)})
	if err != nil {
		return 0, err
	}
	return rep.Resource.Version, nil
}

func TestRehomeRefusedWhileTheHomeAnswers(t *testing.T) {
	w := newRehomeWorld(t)
	before := w.group("loc1", 1)
	cases := []struct {
		name string
		req  command.Request
		code command.Code
	}{
		{"home answers", rehomeReq(1, "loc2"), command.CodeConflict},
		{"already homed there", rehomeReq(3, "loc2"), command.CodeConflict},
		{"unknown location", rehomeReq(1, "loc9"), command.CodeBadRequest},
		{"bad server", rehomeReq(0, "loc2"), command.CodeBadRequest},
		{"no location", command.Request{Op: command.OpRehome, Server: i64p(1)}, command.CodeBadRequest},
		{"unknown group", rehomeReq(77, "loc2"), command.CodeNotFound},
	}
	for _, c := range cases {
		_, err := w.do(3, c.req)
		if got := command.CodeOf(err); got != c.code {
			t.Fatalf("%s: rehome %+v answered %v, want %s", c.name, c.req, err, c.code)
		}
	}
	// The direct call at a controller of another location than the one named.
	code, body, err := secretCall(rehomeSecret, http.MethodPost, w.locs["loc1"].leader(5*time.Second).httpAddr,
		"/v1/internal/admin/rehome", rehomeReq(1, "loc2"), nil)
	if err != nil || code != http.StatusUnprocessableEntity {
		t.Fatalf("rehome to loc2 sent to loc1's leader: %d %s %v, want 422 bad_request", code, body, err)
	}
	after := w.group("loc1", 1)
	if after == nil || after.Epoch != before.Epoch || after.Main != before.Main || w.group("loc2", 1) != nil {
		t.Fatalf("group 1 after refused rehomes: loc1 %+v, loc2 %+v; want it unchanged in loc1 alone", after, w.group("loc2", 1))
	}
}

// The whole move: loc1 loses every controller and group 1's main; the group has no main
// and nobody may promote it. Rehomed to loc2, a copy is promoted, no acknowledged write is
// lost and writes flow. loc1's controllers come back with their raft state and never act
// for the group again: they drop it as moved.
func TestRehomeAfterTheHomeIsGonePromotesAndFencesTheOldHome(t *testing.T) {
	w := newRehomeWorld(t)
	rep, err := w.do(3, command.Request{Op: command.OpCreate, Type: "doc", Data: json.RawMessage(`"v0"`), Server: i64p(1)})
	if err != nil {
		t.Fatal(err)
	}
	rid := rep.Resource.ID
	var acked uint64
	for i := 1; i <= 20; i++ {
		v, err := w.write(3, rid, fmt.Sprintf(`"v%d"`, i))
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		acked = v
	}
	before := w.group("loc1", 1)

	for _, id := range w.locs["loc1"].ids {
		w.locs["loc1"].stop(id)
	}
	w.nodes[1].stop()
	if _, err := w.write(3, rid, `"lost main"`); err == nil {
		t.Fatal("a write was acknowledged with group 1's main gone")
	}

	start := time.Now()
	if _, err := w.do(3, rehomeReq(1, "loc2")); err != nil {
		t.Fatalf("rehome of group 1 to loc2: %v", err)
	}
	g := w.group("loc2", 1)
	if g == nil || g.Home != "loc2" || g.HomeGen != 1 || g.RehomedFrom != "loc1" || g.Main == 1 || g.Main == 0 ||
		g.Epoch < command.EpochBand(1) || !slices.Contains(before.Active.Voters, g.Main) {
		t.Fatalf("group 1 in loc2 after the rehome: %+v; want a former voter as main at generation 1's band", g)
	}
	var v uint64
	eventuallyOK(t, 15*time.Second, "a write acknowledged after the rehome", func() error {
		v, err = w.write(4, rid, `"after"`)
		return err
	})
	t.Logf("rehome call to first acknowledged write: %v (main %d, epoch %d)", time.Since(start).Round(time.Millisecond), g.Main, g.Epoch)
	if v != acked+1 {
		t.Fatalf("version after the rehome %d, want %d: an acknowledged write was lost", v, acked+1)
	}
	eventuallyOK(t, 10*time.Second, "the rehome in loc2's promotion history", func() error {
		st, _ := w.locs["loc2"].currentLeader().c.fsm.view()
		for _, p := range st.Promotions {
			if p.Server == 1 && p.Reason == command.ReasonRehome && p.To == g.Main {
				return nil
			}
		}
		return fmt.Errorf("promotions %+v", st.Promotions)
	})

	// The old home's ballot is below the new one's: whatever epoch it would seal at, the
	// copies that promised loc2 refuse, and too few are left for R of its last config.
	r := len(before.Active.Voters) - (len(before.Active.Voters)/2 + 1) + 1
	took := 0
	for _, v := range before.Active.Voters {
		req := command.SealRequest{Server: 1, Epoch: before.NextEpoch() + 1000, From: before.Main, Home: "loc1"}
		if code, _, err := secretCall(rehomeSecret, http.MethodPost, w.nodes[v].addr, "/v1/internal/seal", req, nil); err == nil && code == http.StatusOK {
			took++
		}
	}
	if took >= r {
		t.Fatalf("%d of voters %v took a seal of the old home, which needs %d: it could promote", took, before.Active.Voters, r)
	}

	for _, id := range w.locs["loc1"].ids {
		w.locs["loc1"].restart(id)
	}
	// loc1 never opens an epoch of group 1 again: until it drops the group, its record is
	// the one it had when it went away.
	unchanged := func() error {
		l := w.locs["loc1"].currentLeader()
		if l == nil {
			return fmt.Errorf("no leader in loc1")
		}
		st, _ := l.c.fsm.view()
		if old, ok := st.Groups[1]; ok {
			if old.Epoch != before.Epoch || old.Main != before.Main || (old.Promotion != nil && old.Promotion.Epoch > before.NextEpoch()-1) {
				w.t.Fatalf("loc1 acted for group 1 after the rehome: %+v (before: %+v)", old, before)
			}
			return fmt.Errorf("loc1 still lists group 1")
		}
		if m, ok := st.Moved[1]; !ok || m.Home != "loc2" || m.HomeGen != 1 {
			w.t.Fatalf("loc1 dropped group 1 without a moved note: %+v", st.Moved)
		}
		return nil
	}
	eventuallyOK(t, 20*time.Second, "loc1 drops group 1 as moved to loc2", unchanged)
	// Writes go on through every node, loc1's included, while loc1 is back; it never takes
	// the group again, in its directory or at the nodes.
	for i := 0; i < 10; i++ {
		if v, err = w.write(uint16(2+i%3), rid, fmt.Sprintf(`"back%d"`, i)); err != nil {
			t.Fatalf("write %d with loc1 back: %v", i, err)
		}
		if err := unchanged(); err != nil {
			t.Fatal(err)
		}
		for id, rn := range w.nodes {
			if id == 1 {
				continue
			}
			var view command.GroupView
			if code, body, err := secretCall(rehomeSecret, http.MethodGet, rn.addr, "/v1/internal/group?server=1", nil, &view); err != nil || code != http.StatusOK {
				t.Fatalf("group view of node %d: %d %s %v", id, code, body, err)
			}
			if view.Group == nil || view.Group.Home != "loc2" {
				t.Fatalf("node %d sees group 1 as %+v, want homed in loc2", id, view.Group)
			}
		}
	}
	if v != acked+11 {
		t.Fatalf("version %d after 11 writes since %d", v, acked)
	}
	st, err := w.nodes[3].n.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, sg := range st.Groups {
		if sg.Server == 1 && sg.Home != "loc2" {
			t.Fatalf("status names group 1's home %q, want loc2", sg.Home)
		}
	}
}

func i64p(v int64) *int64 { return &v }

// A rehome that seals too few copies (two of group 1's three voters are down with its
// main and every loc1 controller) answers unavailable but keeps the group in its new home
// with the attempt abandoned: no location is left without the group. When the copies come
// back, the new home's own promotion rounds give it a main, no acknowledged write is lost,
// and loc1, back too, drops the group as moved instead of taking it again.
func TestRehomeThatSealsTooFewKeepsTheGroupAtItsNewHome(t *testing.T) {
	w := newRehomeWorld(t)
	rep, err := w.do(3, command.Request{Op: command.OpCreate, Type: "doc", Data: json.RawMessage(`"v0"`), Server: i64p(1)})
	if err != nil {
		t.Fatal(err)
	}
	rid := rep.Resource.ID
	acked := rep.Resource.Version
	for i := 1; i <= 10; i++ {
		if acked, err = w.write(3, rid, fmt.Sprintf(`"v%d"`, i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	before := w.group("loc1", 1)
	var down []uint16 // two voters of group 1 other than node 3, which the calls go through
	for _, v := range before.Active.Voters {
		if v != 3 && len(down) < 2 {
			down = append(down, v)
		}
	}
	if len(down) != 2 {
		t.Fatalf("group 1's voters %v: want two besides node 3", before.Active.Voters)
	}
	for _, id := range w.locs["loc1"].ids {
		w.locs["loc1"].stop(id)
	}
	w.nodes[1].stop()
	for _, id := range down {
		w.nodes[id].stop()
	}

	_, err = w.do(3, rehomeReq(1, "loc2"))
	if command.CodeOf(err) != command.CodeUnavailable {
		t.Fatalf("rehome with one of three voters up: %v, want unavailable", err)
	}
	g := w.group("loc2", 1)
	if g == nil || g.Home != "loc2" || g.HomeGen != 1 || g.Promotion == nil || g.Promotion.Phase != command.PromotionAbandoned {
		t.Fatalf("group 1 in loc2 after a rehome that sealed too few: %+v; want it kept there with the attempt abandoned", g)
	}

	// loc1 comes back while group 1 has no main: a copy's report names generation 1, which
	// loc2 lists, so loc1 drops the group as moved rather than take it again.
	for _, id := range w.locs["loc1"].ids {
		w.locs["loc1"].restart(id)
	}
	eventuallyOK(t, 20*time.Second, "loc1 drops group 1 as moved to loc2", func() error {
		l := w.locs["loc1"].currentLeader()
		if l == nil {
			return fmt.Errorf("no leader in loc1")
		}
		st, _ := l.c.fsm.view()
		if old, ok := st.Groups[1]; ok {
			if old.Epoch != before.Epoch || old.Main != before.Main {
				t.Fatalf("loc1 acted for group 1 after the rehome: %+v (before: %+v)", old, before)
			}
			return fmt.Errorf("loc1 still lists group 1")
		}
		if m, ok := st.Moved[1]; !ok || m.Home != "loc2" {
			return fmt.Errorf("moved notes %+v", st.Moved)
		}
		return nil
	})

	// The copies come back: loc2's own promotion rounds give the group a main. The write
	// is retried under one idempotency key, so an attempt that timed out but took effect
	// is not applied twice.
	for _, id := range down {
		old := w.nodes[id]
		w.nodes[id] = startRehomeNode(t, old.addr, old.cfg)
	}
	var v uint64
	eventuallyOK(t, 30*time.Second, "a write acknowledged once the copies are back", func() error {
		rep, err := w.do(3, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`"after"`), Key: "after-the-rehome"})
		if err != nil {
			return err
		}
		v = rep.Resource.Version
		return nil
	})
	if v != acked+1 {
		t.Fatalf("version after the promotion %d, want %d: an acknowledged write was lost", v, acked+1)
	}
	g = w.group("loc2", 1)
	if g == nil || g.Main == 0 || g.Main == 1 || g.Epoch < command.EpochBand(1) {
		t.Fatalf("group 1 in loc2: %+v; want a main of generation 1's band", g)
	}
	if g := w.group("loc2", 1); g == nil {
		t.Fatal("loc2 no longer lists group 1")
	}
	if v, err = w.write(4, rid, `"with loc1 back"`); err != nil || v != acked+2 {
		t.Fatalf("write with loc1 back: version %d, %v; want %d", v, err, acked+2)
	}
}
