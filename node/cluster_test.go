package node

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sibylhq/sibyl/command"
)

// fakeController serves a fixed directory over the node <-> controller protocol, so node
// tests run without raft. The real controller is tested in location/.
type fakeController struct {
	mu      sync.Mutex
	dir     command.Directory
	changed chan struct{}
	reports map[uint16]command.Heartbeat
	joined  map[uint16]bool
	srv     *http.Server
	mux     *http.ServeMux
	addr    string
}

func newFakeController(t testing.TB, dir command.Directory) *fakeController {
	f := &fakeController{dir: dir, changed: make(chan struct{}), reports: map[uint16]command.Heartbeat{},
		joined: map[uint16]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/internal/join", func(w http.ResponseWriter, r *http.Request) {
		var jr command.JoinRequest
		_ = json.NewDecoder(r.Body).Decode(&jr)
		f.mu.Lock()
		f.joined[jr.ID] = true
		f.mu.Unlock()
		f.reply(w)
	})
	mux.HandleFunc("/v1/internal/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		var hb command.Heartbeat
		_ = json.NewDecoder(r.Body).Decode(&hb)
		f.mu.Lock()
		known := f.joined[hb.Node]
		if known {
			f.reports[hb.Node] = hb
		}
		f.mu.Unlock()
		if !known {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]*command.Error{"error": command.Errorf(command.CodeNotFound, "node %d has not joined", hb.Node)})
			return
		}
		f.reply(w)
	})
	mux.HandleFunc("/v1/internal/directory", func(w http.ResponseWriter, r *http.Request) {
		after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
		f.mu.Lock()
		idx, ch := f.dir.Index, f.changed
		f.mu.Unlock()
		if idx <= after {
			select {
			case <-ch:
			case <-time.After(time.Second):
			case <-r.Context().Done():
			}
		}
		f.reply(w)
	})
	f.mux = mux
	f.srv = &http.Server{Handler: mux}
	go f.srv.Serve(ln)
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func (f *fakeController) reply(w http.ResponseWriter) {
	f.mu.Lock()
	b, _ := json.Marshal(f.dir)
	f.mu.Unlock()
	w.Write(b)
}

func (f *fakeController) update(fn func(d *command.Directory)) {
	f.mu.Lock()
	fn(&f.dir)
	f.dir.Index++
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// testNode is a real node (bbolt store on disk, real listener) in this process.
type testNode struct {
	n   *Node
	srv *http.Server
	cfg Config
}

func startTestNode(t testing.TB, cfg Config) *testNode {
	t.Helper()
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: n.Handler()}
	go srv.Serve(ln)
	return &testNode{n: n, srv: srv, cfg: cfg}
}

func (tn *testNode) stop() {
	tn.srv.Close()
	tn.n.Close()
}

// freeAddr returns a loopback address free now, for a node that listens on it later (and
// again after a restart). Its port comes from 5000-9999: below the kernel's ephemeral
// range (32768 and up), so no outgoing connection of another test process takes it
// between the check and the listen, and below the ranges the end-to-end tests of
// cmd/sibyl and scenarios/ use (10000 and up). Ports are handed out in turn from a start
// that differs per process.
func freeAddr(t testing.TB) string {
	for range portSpan {
		p := portBase + int(nextPort.Add(1))%portSpan
		addr := "127.0.0.1:" + strconv.Itoa(p)
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port in 5000-9999")
	return ""
}

const portBase, portSpan = 5000, 5000

var nextPort atomic.Int64

func init() { nextPort.Store(int64(os.Getpid() * 97 % portSpan)) }

// testCluster: four nodes; group 1 has main 1 and voting siblings 2, 3, 4; groups 2..4 have
// their node as main and no siblings.
func testCluster(t *testing.T) (*fakeController, []*testNode) {
	t.Helper()
	return testClusterWith(t, nil)
}

// testClusterWith is testCluster with each node's config passed through tune first.
func testClusterWith(t testing.TB, tune func(*Config)) (*fakeController, []*testNode) {
	t.Helper()
	dir := command.Directory{Index: 1}
	addrs := map[uint16]string{}
	for id := uint16(1); id <= 4; id++ {
		addrs[id] = freeAddr(t)
		dir.Nodes = append(dir.Nodes, command.NodeInfo{ID: id, Addr: addrs[id], State: command.NodeUp})
		gi := command.GroupInfo{Server: id, Epoch: 1, Main: id, Active: command.Config{Version: 1}}
		if id == 1 {
			gi.Active.Voters = []uint16{2, 3, 4}
			for _, s := range []uint16{2, 3, 4} {
				gi.Siblings = append(gi.Siblings, command.Member{Node: s, State: command.SiblingVoting})
			}
		}
		dir.Groups = append(dir.Groups, gi)
	}
	fc := newFakeController(t, dir)
	base := t.TempDir()
	var nodes []*testNode
	for id := uint16(1); id <= 4; id++ {
		cfg := Config{ID: command.ServerID(id), HTTPAddr: addrs[id],
			DataDir: filepath.Join(base, strconv.Itoa(int(id))), Controllers: []string{fc.addr},
			WriteTimeout: 700 * time.Millisecond, DownAfter: 400 * time.Millisecond, Logger: testLogger()}
		if tune != nil {
			tune(&cfg)
		}
		nodes = append(nodes, startTestNode(t, cfg))
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.stop()
		}
	})
	for _, n := range nodes {
		waitUntil(t, 10*time.Second, "node joined", n.n.Healthy)
	}
	return fc, nodes
}

// testLogger writes node logs to stderr when SIBYL_TEST_LOG is set.
func testLogger() zerolog.Logger {
	if os.Getenv("SIBYL_TEST_LOG") != "" {
		return zerolog.New(os.Stderr).With().Timestamp().Logger()
	}
	return zerolog.Nop()
}

func waitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func do(t *testing.T, s *Session, req command.Request) (*command.Reply, error) {
	t.Helper()
	return s.Start(context.Background(), &req, true)()
}

func i64(v int64) *int64 { return &v }

func TestClusterWriteForwardAndRead(t *testing.T) {
	_, nodes := testCluster(t)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	var created *command.Reply
	waitUntil(t, 5*time.Second, "first create on group 1", func() bool {
		r, err := do(t, s1, command.Request{Op: command.OpCreate, Type: "job", Data: json.RawMessage(`{"n":1}`), Server: i64(1)})
		created = r
		return err == nil
	})
	rid := created.Resource.ID
	if g, _ := command.GroupOf(rid); g != 1 {
		t.Fatalf("created %s outside group 1", rid)
	}
	// A write through node 2 is forwarded to the main, node 1.
	s2 := nodes[1].n.NewSession()
	defer s2.Close()
	up, err := do(t, s2, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`{"n":2}`)})
	if err != nil {
		t.Fatalf("forwarded update: %v", err)
	}
	if up.Resource.Version != 2 || up.Seq <= created.Seq {
		t.Fatalf("update reply %+v", up.Resource)
	}
	got, err := do(t, s2, command.Request{Op: command.OpGet, RID: rid})
	if err != nil || got.Resource.Version != 2 || string(got.Resource.Data) != `{"n":2}` {
		t.Fatalf("linearizable get after update: %+v %v", got, err)
	}
	// A sibling read on node 3 never goes backwards: with the floor of the update it waits
	// until its copy has applied it.
	s3 := nodes[2].n.NewSession()
	defer s3.Close()
	sg, err := do(t, s3, command.Request{Op: command.OpGet, RID: rid, Consistency: command.SiblingRead, MinSeq: up.Seq})
	if err != nil || sg.Resource.Version != 2 || sg.Seq < up.Seq {
		t.Fatalf("sibling get: %+v %v", sg, err)
	}
	// Idempotency: a keyed retry answers the first result.
	k1, err := do(t, s1, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`{"n":3}`), Key: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	k2, err := do(t, s2, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`{"n":3}`), Key: "k1"})
	if err != nil || !k2.Duplicate || k2.Seq != k1.Seq || k2.Resource.Version != 3 {
		t.Fatalf("keyed retry: %+v %v (first %+v)", k2, err, k1)
	}
	// list spans groups in rid order.
	if _, err := do(t, s1, command.Request{Op: command.OpCreate, Type: "job", Data: json.RawMessage(`1`), Server: i64(3)}); err != nil {
		t.Fatal(err)
	}
	l, err := do(t, s2, command.Request{Op: command.OpList, Type: "job"})
	if err != nil || len(l.Resources) != 2 {
		t.Fatalf("list: %+v %v", l, err)
	}
}

func TestClusterQuorumLossAndRecovery(t *testing.T) {
	_, nodes := testCluster(t)
	s := nodes[0].n.NewSession()
	defer s.Close()
	var rid string
	waitUntil(t, 5*time.Second, "create", func() bool {
		r, err := do(t, s, command.Request{Op: command.OpCreate, Type: "t", Data: json.RawMessage(`0`), Server: i64(1)})
		if err == nil {
			rid = r.Resource.ID
		}
		return err == nil
	})
	// One sibling down: writes still succeed (2 of 3).
	nodes[3].stop()
	if _, err := do(t, s, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`1`)}); err != nil {
		t.Fatalf("write with one sibling down: %v", err)
	}
	// Two down: writes fail with a retryable code within the write timeout.
	nodes[2].stop()
	start := time.Now()
	_, err := do(t, s, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`2`)})
	if c := command.CodeOf(err); c != command.CodeQuorumUnavailable && c != command.CodeTimeout {
		t.Fatalf("write with two siblings down: %v", err)
	}
	if el := time.Since(start); el > nodes[0].cfg.WriteTimeout+time.Second {
		t.Fatalf("write answered after %v", el)
	}
	// Node 3 restarts on its data: writes succeed again, and its copy catches up.
	nodes[2] = startTestNode(t, nodes[2].cfg)
	var last *command.Reply
	waitUntil(t, 10*time.Second, "write after restart", func() bool {
		r, err := do(t, s, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`3`)})
		last = r
		return err == nil
	})
	s3 := nodes[2].n.NewSession()
	defer s3.Close()
	got, err := do(t, s3, command.Request{Op: command.OpGet, RID: rid, Consistency: command.SiblingRead, MinSeq: last.Seq})
	if err != nil || got.Resource.Version != last.Resource.Version {
		t.Fatalf("restarted sibling read: %+v %v, want version %d", got, err, last.Resource.Version)
	}
}

// A main that restarts takes the new epoch the directory gives it, writes its barrier, and
// keeps every acknowledged write; its siblings adopt the epoch from the directory record.
func TestClusterMainRestartsInNewEpoch(t *testing.T) {
	fc, nodes := testCluster(t)
	s := nodes[0].n.NewSession()
	var rid string
	var last *command.Reply
	waitUntil(t, 5*time.Second, "create", func() bool {
		r, err := do(t, s, command.Request{Op: command.OpCreate, Type: "t", Data: json.RawMessage(`0`), Server: i64(1)})
		if err == nil {
			rid, last = r.Resource.ID, r
		}
		return err == nil
	})
	for i := 1; i <= 20; i++ {
		r, err := do(t, s, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(strconv.Itoa(i))})
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		last = r
	}
	s.Close()
	nodes[0].stop()
	fc.update(func(d *command.Directory) { d.Groups[0].Epoch = 2 })
	nodes[0] = startTestNode(t, nodes[0].cfg)
	s = nodes[0].n.NewSession()
	defer s.Close()
	var got *command.Reply
	waitUntil(t, 10*time.Second, "a write in epoch 2", func() bool {
		r, err := do(t, s, command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`"after"`)})
		got = r
		return err == nil
	})
	if got.Epoch != 2 || got.Resource.Version != last.Resource.Version+1 {
		t.Fatalf("write after restart: epoch %d version %d; want epoch 2, version %d", got.Epoch, got.Resource.Version, last.Resource.Version+1)
	}
	for _, tn := range nodes[1:] {
		g := tn.n.localGroup(1)
		waitUntil(t, 5*time.Second, "sibling in epoch 2", func() bool {
			g.mu.Lock()
			defer g.mu.Unlock()
			return g.c.Follower() != nil && g.c.Follower().Epoch() == 2 && g.applied >= got.Seq
		})
	}
}

// A controller that lost a node's record (its state was reset) refuses the node's
// heartbeats; the node joins again instead of heartbeating into a refusal forever.
func TestClusterRejoinsWhenTheControllerForgetsIt(t *testing.T) {
	fc, nodes := testCluster(t)
	for _, tn := range nodes {
		waitUntil(t, 5*time.Second, "first join", func() bool { return tn.n.joins.Load() >= 1 })
	}
	fc.mu.Lock()
	fc.joined = map[uint16]bool{}
	fc.mu.Unlock()
	for _, tn := range nodes {
		waitUntil(t, 5*time.Second, "a join after the controller forgot the node", func() bool { return tn.n.joins.Load() >= 2 })
	}
}
