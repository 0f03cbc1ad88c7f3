package location

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sibylhq/sibyl/command"
)

// Harness for tests with real raft: controllers on 127.0.0.1 ephemeral ports and fake nodes
// speaking the node protocol over HTTP.

// testLog forwards log lines to t.Log until the test ends (raft goroutines may outlive it).
type testLog struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func newTestLogger(t *testing.T) zerolog.Logger {
	l := &testLog{t: t}
	t.Cleanup(func() { l.mu.Lock(); l.done = true; l.mu.Unlock() })
	return zerolog.New(l).Level(zerolog.InfoLevel).With().Timestamp().Logger()
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

// eventuallyOK polls check until it returns nil or the deadline passes, then fails with
// the last error.
func eventuallyOK(t *testing.T, within time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", within, what, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

type testCtl struct {
	id, httpAddr, raftAddr, dir string
	c                           *Controller
	srv                         *http.Server
}

type testCluster struct {
	t     *testing.T
	log   zerolog.Logger
	peers map[string]string
	ctls  map[string]*testCtl
	ids   []string
	opts  []func(*Config) // applied to every controller's Config at each start
}

const testDownAfter = 600 * time.Millisecond

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	// A just-closed port can take a moment to be free again; retry briefly.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("listen on %s: %v", addr, err)
	return nil
}

// newTestCluster starts n controllers bootstrapped as one location; opts adjust their Config.
func newTestCluster(t *testing.T, n int, opts ...func(*Config)) *testCluster {
	tc := &testCluster{t: t, log: newTestLogger(t), peers: map[string]string{}, ctls: map[string]*testCtl{}, opts: opts}
	base := t.TempDir()
	raftLns := map[string]net.Listener{}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("c%d", i)
		ln := listen(t, "127.0.0.1:0")
		raftLns[id] = ln
		tc.peers[id] = ln.Addr().String()
		tc.ids = append(tc.ids, id)
		tc.ctls[id] = &testCtl{id: id, raftAddr: ln.Addr().String(), dir: filepath.Join(base, id)}
	}
	for _, id := range tc.ids {
		tc.start(id, raftLns[id], listen(t, "127.0.0.1:0"))
	}
	t.Cleanup(func() {
		for _, id := range tc.ids {
			tc.stop(id)
		}
	})
	return tc
}

// start runs controller id on the given listeners (its data directory may hold state).
func (tc *testCluster) start(id string, raftLn, httpLn net.Listener) {
	tc.t.Helper()
	x := tc.ctls[id]
	x.httpAddr = httpLn.Addr().String()
	cfg := Config{
		ID: id, HTTPAddr: x.httpAddr, RaftAddr: x.raftAddr, RaftListener: raftLn, DataDir: x.dir,
		Peers: tc.peers, DownAfter: testDownAfter, LongPoll: time.Second, Logger: tc.log,
		// Other test binaries may load the host; a longer raft timeout keeps leadership steady.
		RaftTimeout: time.Second,
	}
	for _, o := range tc.opts {
		o(&cfg)
	}
	if cfg.ServerTLS != nil {
		httpLn = tls.NewListener(httpLn, cfg.ServerTLS) // as cmd/sibyl serves it
	}
	c, err := New(cfg)
	if err != nil {
		tc.t.Fatalf("start controller %s: %v", id, err)
	}
	x.c = c
	x.srv = &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = x.srv.Serve(httpLn) }()
}

// restart starts a stopped controller again on its addresses and data directory.
func (tc *testCluster) restart(id string) {
	x := tc.ctls[id]
	tc.start(id, listen(tc.t, x.raftAddr), listen(tc.t, x.httpAddr))
}

func (tc *testCluster) stop(id string) {
	x := tc.ctls[id]
	if x.c == nil {
		return
	}
	_ = x.srv.Close()
	if err := x.c.Close(); err != nil {
		tc.t.Errorf("close controller %s: %v", id, err)
	}
	x.c = nil
}

// running returns the controllers that are not stopped.
func (tc *testCluster) running() []*testCtl {
	var out []*testCtl
	for _, id := range tc.ids {
		if x := tc.ctls[id]; x.c != nil {
			out = append(out, x)
		}
	}
	return out
}

// currentLeader returns the one running controller that leads, or nil.
func (tc *testCluster) currentLeader() *testCtl {
	var l *testCtl
	for _, x := range tc.running() {
		if x.c.IsLeader() {
			if l != nil {
				return nil
			}
			l = x
		}
	}
	return l
}

// directory fetches the directory from the current leader over HTTP.
func (tc *testCluster) directory() (command.Directory, error) {
	var d command.Directory
	l := tc.currentLeader()
	if l == nil {
		return d, fmt.Errorf("no leader")
	}
	code, body, err := call(http.MethodGet, l.httpAddr, pathDirectory+"?after=0", nil, &d)
	if err != nil || code != http.StatusOK {
		return d, fmt.Errorf("directory from %s: %d %s %v", l.id, code, body, err)
	}
	return d, nil
}

// leader waits for exactly one running controller to lead and returns it.
func (tc *testCluster) leader(within time.Duration) *testCtl {
	tc.t.Helper()
	var l *testCtl
	eventually(tc.t, within, "a single ready leader", func() bool {
		l = tc.currentLeader()
		return l != nil
	})
	return l
}

func (tc *testCluster) httpAddrs() []string {
	var out []string
	for _, id := range tc.ids {
		out = append(out, tc.ctls[id].httpAddr)
	}
	return out
}

var testClient = &http.Client{Timeout: 2 * time.Second}

// call sends one request and decodes a 200 answer into out; it returns the status code.
func call(method, addr, path string, in, out any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+addr+path, body)
	if err != nil {
		return 0, nil, err
	}
	resp, err := testClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, b, fmt.Errorf("decode %s: %w", b, err)
		}
	}
	return resp.StatusCode, b, nil
}

// fakeNode speaks the node side of the protocol: it joins, heartbeats and, as main of its
// group, reports every sibling caught up and every pending config committed.
type fakeNode struct {
	id       uint16
	instance string
	ctls     []string

	mu     sync.Mutex
	target string // controller address to try first
	gen    uint64
	dir    command.Directory
	disk   string // suffix of the copy IDs this node reports: change it to simulate a wiped disk
	inc    uint64 // incarnation (1 when zero); raised to the one the controller records for it
	// aborts: as main, the registrations of these learners are reported given up.
	aborts map[uint16]*command.RegisterAbort
	// noBarrier: as a main chosen by a promotion, never report its barrier committed (it
	// is cut off from its new config).
	noBarrier bool
	// location, when set, is the node's own location (its join names it: a guest where the
	// controllers are of another one); addr, when set, its address (127.0.0.1:9000+id else).
	location, addr string
}

const fakeLastSeq = 1000

// send posts to the leader, following 421 hints and trying the other controllers when the
// one it used is unreachable or has no leader.
func (n *fakeNode) send(path string, in any) (command.Directory, error) {
	var d command.Directory
	n.mu.Lock()
	addr := n.target
	n.mu.Unlock()
	var last error
	for attempt := 0; attempt < 2*len(n.ctls)+2; attempt++ {
		if addr == "" {
			addr = n.ctls[attempt%len(n.ctls)]
		}
		code, body, err := call(http.MethodPost, addr, path, in, &d)
		switch {
		case err == nil && code == http.StatusOK:
			n.mu.Lock()
			n.target, n.dir = addr, d
			n.mu.Unlock()
			return d, nil
		case err == nil && code == http.StatusMisdirectedRequest:
			var hint command.LeaderHint
			_ = json.Unmarshal(body, &hint)
			last = fmt.Errorf("421 from %s, hint %q", addr, hint.Leader)
			addr = hint.Leader
		default:
			last = fmt.Errorf("%s %s: code %d err %v body %s", addr, path, code, err, body)
			addr = ""
		}
	}
	return d, last
}

func (n *fakeNode) incarnation() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return max(n.inc, 1)
}

func (n *fakeNode) join() error {
	addr := n.addr
	if addr == "" {
		addr = fmt.Sprintf("127.0.0.1:%d", 9000+int(n.id))
	}
	d, err := n.send(pathJoin, command.JoinRequest{ID: n.id, Addr: addr, Location: n.location, Instance: n.instance, Incarnation: n.incarnation()})
	if err == nil {
		// As node/ctrl.go's adoptIncarnation does.
		if me := d.NodeByID(n.id); me != nil && me.Instance == n.instance {
			n.mu.Lock()
			n.inc = max(n.inc, me.Incarnation)
			n.mu.Unlock()
		}
	}
	return err
}

func (n *fakeNode) heartbeat() error {
	n.mu.Lock()
	n.gen++
	hb := command.Heartbeat{Node: n.id, Instance: n.instance, Incarnation: max(n.inc, 1), Generation: n.gen}
	for _, g := range n.dir.Groups {
		if g.Main == n.id {
			rep := command.GroupReport{Server: g.Server, Role: command.RoleMain, Epoch: g.Epoch, LastEpoch: g.Epoch,
				LastSeq: fakeLastSeq, CommitSeq: fakeLastSeq, Applied: fakeLastSeq, CopyID: copyName(g.Server, n.id) + n.disk, Activated: g.Active.Version}
			if g.Pending != nil && !n.noBarrier {
				rep.Activated = g.Pending.Version
			}
			for _, m := range g.Siblings {
				p := command.SiblingProgress{Node: m.Node, Seq: fakeLastSeq - 10, Recent: true}
				if a := n.aborts[m.Node]; a != nil && m.State == command.SiblingSyncing {
					p.Seq, p.Aborted = 0, a
				}
				rep.Siblings = append(rep.Siblings, p)
			}
			hb.Groups = append(hb.Groups, rep)
		} else if siblingIndex(&g, n.id) >= 0 {
			hb.Groups = append(hb.Groups, command.GroupReport{Server: g.Server, Role: command.RoleSibling, Epoch: g.Epoch,
				LastEpoch: g.Epoch, LastSeq: fakeLastSeq - 5, CommitSeq: fakeLastSeq - 5, Applied: fakeLastSeq - 5, CopyID: copyName(g.Server, n.id) + n.disk})
		}
	}
	n.mu.Unlock()
	_, err := n.send(pathHeartbeat, hb)
	return err
}

func copyName(server, node uint16) string { return fmt.Sprintf("copy-%d-%d", server, node) }

// run heartbeats every 50 ms until stop is closed; errors (a controller going away) are
// retried at the next beat.
func (n *fakeNode) run(stop <-chan struct{}, done *sync.WaitGroup) {
	defer done.Done()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			_ = n.heartbeat()
		}
	}
}
