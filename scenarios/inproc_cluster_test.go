package scenarios

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sibylhq/sibyl/api"
	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/location"
	"github.com/sibylhq/sibyl/node"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/node/wal"
	"github.com/sibylhq/sibyl/scenarios/memnet"
)

// memCluster is a whole Sibyl location in this test process: real controllers (raft over
// raft-boltdb files) and real nodes (bbolt files), each serving HTTP on its own host of a
// memnet network. It runs inside a testing/synctest bubble, so every timer in it (raft's,
// the nodes' heartbeats and failure detection, the clients') runs on the bubble's
// virtual clock, and faults are memnet's partitions and crashes.
type memCluster struct {
	t    *testing.T
	net  *memnet.Network
	dir  string
	logs *lockedBuffer
	// logFile is SIBYL_INPROC_LOG, opened by the first logger.
	logFileOnce sync.Once
	logFile     io.Writer
	testLog     zerolog.Logger
	ctrls       []*memCtrl
	nodes       []*memNode
	// bolt: nodes keep their data in bbolt files, as the binary does. Otherwise in
	// node's memory store (same group logic and encoding, no fsync): a schedule then
	// costs CPU, not disk flushes, as virtual time stands still during an fsync.
	bolt bool
	// home is the location of node 1, whose group the schedules load: leader, directory
	// and group answer for its controllers ("" with one location).
	home string
}

type memCtrl struct {
	id, host string
	loc      string // "" with one location
	c        *location.Controller
	srv      *http.Server
}

type memNode struct {
	id    int
	host  string
	loc   string      // "" with one location
	store store.Store // the node's memory store, kept across its restarts (nil: bbolt)
	// disk fails the node's store where it says (faultyStore over the memory store, or
	// the durable store's injected faults), across its restarts.
	disk *wal.Faults
	n    *node.Node
	api  *api.Server
	srv  *http.Server
}

func (m *memCtrl) httpAddr() string { return m.host + ":80" }
func (m *memCtrl) raftAddr() string { return m.host + ":81" }
func (m *memNode) addr() string     { return m.host + ":80" }

// startMemCluster starts controllers c1..cC and nodes 1..N and waits until every node's
// group has a main. Call it inside synctest.Test.
func startMemCluster(t *testing.T, net *memnet.Network, controllers, nodes int) *memCluster {
	return startMemClusterWith(t, net, controllers, nodes, os.Getenv("SIBYL_INPROC_STORE") == "bolt")
}

// startMemClusterWith is startMemCluster with the nodes' stores chosen: bolt for the
// durable store (write-ahead log and bbolt files), else the memory store.
func startMemClusterWith(t *testing.T, net *memnet.Network, controllers, nodes int, bolt bool) *memCluster {
	return startMemLocations(t, net, 1, controllers, nodes, bolt)
}

// startMemLocations starts locs locations loc1..locN (one location, unnamed, when locs is
// 1), each with controllers of its own (raft among themselves, the other locations'
// addresses given as --locations), and nodes 1..N spread over them in turn (node k in
// loc((k-1) mod locs + 1)), each following its own location's controllers; it waits until
// every node's group has a main at its home.
func startMemLocations(t *testing.T, net *memnet.Network, locs, controllers, nodes int, bolt bool) *memCluster {
	m := &memCluster{t: t, net: net, dir: t.TempDir(), logs: &lockedBuffer{}, bolt: bolt}
	locOf := func(i int) string { // of the i-th (from 0) location
		if locs == 1 {
			return ""
		}
		return fmt.Sprintf("loc%d", i%locs+1)
	}
	for l := 0; l < locs; l++ {
		for i := 1; i <= controllers; i++ {
			k := l*controllers + i
			m.ctrls = append(m.ctrls, &memCtrl{id: fmt.Sprintf("c%d", k), host: fmt.Sprintf("10.0.1.%d", k), loc: locOf(l)})
		}
	}
	for i := 1; i <= nodes; i++ {
		m.nodes = append(m.nodes, &memNode{id: i, host: fmt.Sprintf("10.0.0.%d", i), loc: locOf(i - 1)})
	}
	m.home = m.nodes[0].loc
	m.testLog = m.logger("test")
	for _, c := range m.ctrls {
		m.startCtrl(c)
	}
	for _, n := range m.nodes {
		m.startNode(n)
	}
	m.waitFor(30*time.Second, "every group with a main at its home", func() bool {
		for _, n := range m.nodes {
			if g := m.groupAt(n.loc, uint16(n.id)); g == nil || g.Main == 0 {
				return false
			}
		}
		return true
	})
	return m
}

// locOfHost is the location of a host of the cluster ("" for a client's host).
func (m *memCluster) locOfHost(h string) string {
	for _, c := range m.ctrls {
		if c.host == h {
			return c.loc
		}
	}
	for _, n := range m.nodes {
		if n.host == h {
			return n.loc
		}
	}
	return ""
}

// ctrlsOf are the controllers of location loc.
func (m *memCluster) ctrlsOf(loc string) []*memCtrl {
	var out []*memCtrl
	for _, c := range m.ctrls {
		if c.loc == loc {
			out = append(out, c)
		}
	}
	return out
}

// logger logs warnings and errors into m.logs (printed when a schedule fails), or
// everything from info up into the file SIBYL_INPROC_LOG names, to follow a replay.
func (m *memCluster) logger(name string) zerolog.Logger {
	var w io.Writer = m.logs
	level := zerolog.WarnLevel
	if path := os.Getenv("SIBYL_INPROC_LOG"); path != "" {
		m.logFileOnce.Do(func() {
			f, err := os.Create(path)
			if err != nil {
				m.t.Fatal(err)
			}
			m.t.Cleanup(func() { f.Close() })
			m.logFile = zerolog.SyncWriter(f)
		})
		w, level = m.logFile, zerolog.DebugLevel
	}
	return zerolog.New(w).Level(level).With().Timestamp().Str("proc", name).Logger()
}

// note writes a line of the test's own (a fault injected, healed) among the processes' logs.
func (m *memCluster) note(msg string) { m.testLog.Warn().Msg(msg) }

func (m *memCluster) startCtrl(c *memCtrl) {
	peers := map[string]string{}
	others := map[string][]string{}
	for _, o := range m.ctrls {
		if o.loc == c.loc {
			peers[o.id] = o.raftAddr()
		} else {
			others[o.loc] = append(others[o.loc], o.httpAddr())
		}
	}
	ln, err := m.net.Listen(c.httpAddr())
	if err != nil {
		m.t.Fatal(err)
	}
	rl, err := m.net.Listen(c.raftAddr())
	if err != nil {
		m.t.Fatal(err)
	}
	c.c, err = location.New(location.Config{
		ID: c.id, HTTPAddr: c.httpAddr(), RaftAddr: c.raftAddr(), RaftListener: rl, Peers: peers,
		Location: c.loc, Locations: others,
		DataDir: filepath.Join(m.dir, c.id), Logger: m.logger(c.id), Dial: m.net.Dialer(c.host),
	})
	if err != nil {
		m.t.Fatalf("controller %s: %v", c.id, err)
	}
	c.srv = &http.Server{Handler: c.c.Handler()}
	go c.srv.Serve(ln)
}

func (m *memCluster) startNode(n *memNode) {
	var ctrlAddrs []string
	for _, c := range m.ctrlsOf(n.loc) {
		ctrlAddrs = append(ctrlAddrs, c.httpAddr())
	}
	ln, err := m.net.Listen(n.addr())
	if err != nil {
		m.t.Fatal(err)
	}
	if n.disk == nil {
		n.disk = &wal.Faults{}
	}
	// A node (re)started works on a disk that works: a full disk's fault ends with it.
	n.disk.Heal()
	dataDir := filepath.Join(m.dir, fmt.Sprintf("node%d", n.id))
	var st store.Store
	if !m.bolt {
		if n.store == nil {
			n.store = store.NewMemStore()
		} else {
			n.store = store.ReopenMemStore(n.store)
		}
		st = newFaultyStore(n.store, n.disk)
	} else {
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			m.t.Fatal(err)
		}
		// No gather (node/wal/gather.go): its wait is a timer, and the bubble's clock stands
		// still while a goroutine waits for a mutex the appender holds (a group's lock),
		// so a timed gather would never end. Virtual time stands still during a durable
		// write too, so there would be nothing to gather.
		opts := wal.Options{Faults: n.disk, GatherDelay: -1}
		st, err = store.OpenDurable(dataDir, store.DurableOptions{HealEvery: retryEvery, WAL: opts})
		if err != nil {
			m.t.Fatalf("node %d: %v", n.id, err)
		}
	}
	n.n, err = node.New(node.Config{
		Store: st,
		ID:    command.ServerID(n.id), HTTPAddr: n.addr(), DataDir: dataDir,
		Controllers: ctrlAddrs, Location: n.loc, Logger: m.logger(fmt.Sprintf("node%d", n.id)), Dial: m.net.Dialer(n.host),
		WriteTimeout: time.Second,
	})
	if err != nil {
		m.t.Fatalf("node %d: %v", n.id, err)
	}
	n.api = api.NewServer(memBackend{n.n}, api.Options{Logger: m.logger(fmt.Sprintf("api%d", n.id))})
	mux := http.NewServeMux()
	mux.Handle("/v1/internal/", n.n.Handler())
	mux.Handle("/", n.api.Handler())
	n.srv = &http.Server{Handler: mux}
	go n.srv.Serve(ln)
}

// memBackend adapts *node.Node to api.Backend, as cmd/sibyl does.
type memBackend struct{ *node.Node }

func (b memBackend) NewSession(out api.Outbox) api.Session { return b.Node.NewEventSession(out) }

// crashNode ends node n as kill -9 does: the network sees it die first, then its
// goroutines stop. Its data directory stays.
func (m *memCluster) crashNode(n *memNode) {
	m.net.Crash(n.host)
	n.srv.Close()
	n.api.Close()
	n.n.Close()
	n.n = nil
}

// wipeNode removes node n's data directory and store (it must be down): a disk loss.
func (m *memCluster) wipeNode(n *memNode) {
	n.store = nil
	if err := os.RemoveAll(filepath.Join(m.dir, fmt.Sprintf("node%d", n.id))); err != nil {
		m.t.Fatal(err)
	}
}

func (m *memCluster) crashCtrl(c *memCtrl) {
	m.net.Crash(c.host)
	c.srv.Close()
	c.c.Close()
	c.c = nil
}

// stop ends every process and the network; every goroutine of the cluster returns.
func (m *memCluster) stop() {
	for _, n := range m.nodes {
		if n.n != nil {
			m.crashNode(n)
		}
	}
	for _, c := range m.ctrls {
		if c.c != nil {
			m.crashCtrl(c)
		}
	}
	m.net.Close()
}

// leader returns the controller that leads the home location, or nil.
func (m *memCluster) leader() *memCtrl { return m.leaderOf(m.home) }

func (m *memCluster) leaderOf(loc string) *memCtrl {
	for _, c := range m.ctrlsOf(loc) {
		if c.c != nil && c.c.IsLeader() {
			return c
		}
	}
	return nil
}

// directory is the home location leader's directory, or nil when no controller leads.
func (m *memCluster) directory() *command.Directory {
	if l := m.leader(); l != nil {
		d := l.c.Directory()
		return &d
	}
	return nil
}

// group returns the home location leader's record of group g, or nil.
func (m *memCluster) group(g uint16) *command.GroupInfo { return m.groupAt(m.home, g) }

// groupAt returns location loc's leader's record of group g, or nil.
func (m *memCluster) groupAt(loc string, g uint16) *command.GroupInfo {
	if l := m.leaderOf(loc); l != nil {
		d := l.c.Directory()
		return d.Group(g)
	}
	return nil
}

// client connects from host h to the given nodes, in order of preference.
func (m *memCluster) client(h string, seed uint64, nodes ...int) *client.Client {
	var addrs []string
	for _, id := range nodes {
		addrs = append(addrs, m.nodes[id-1].addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.Options{Addrs: addrs, Dial: m.net.Dialer(h), Seed: seed, RequestTimeout: 3 * time.Second})
	if err != nil {
		m.t.Fatalf("dial %v: %v", addrs, err)
	}
	return cl
}

// waitFor polls cond every 10 ms of virtual time until it holds, failing after d.
func (m *memCluster) waitFor(d time.Duration, what string, cond func() bool) {
	m.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			m.t.Fatalf("timed out after %v waiting for %s\n%s", d, what, m.logTail(60))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logTail is the last n lines the processes logged (warnings and errors).
func (m *memCluster) logTail(n int) string {
	lines := strings.Split(strings.TrimSpace(m.logs.String()), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
