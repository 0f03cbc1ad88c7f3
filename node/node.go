package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/oklog/ulid/v2"
	"github.com/rs/zerolog"
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/node/wal"
	"github.com/sibylhq/sibyl/tlsconf"
)

// Config configures one node process.
type Config struct {
	ID          command.ServerID
	HTTPAddr    string   // host:port this node listens on and advertises
	DataDir     string   // holds sibyl.db (bbolt) and the incarnation counter
	Controllers []string // HTTP host:port (or http:// URL) of the location's controllers
	Location    string
	// WriteTimeout bounds a write from arrival to answer (default 5 s).
	WriteTimeout time.Duration
	// DownAfter is the failure-detection period; heartbeats go every DownAfter/4 (default 1 s).
	DownAfter time.Duration
	// MaxClockDrift is ρ, the declared bound on clock rate drift: the main expires a ticket
	// ttl·(1+ρ) after granting it (default DefaultMaxClockDrift, 1e-3).
	MaxClockDrift float64
	// MaxSubs bounds the subscriptions one client connection has open (default 1000);
	// one more gets rate_limited.
	MaxSubs int
	// ClusterSecret, when set, is presented on every call this node makes to other nodes
	// and to the controllers, and required on every call to its /v1/internal/ endpoints.
	ClusterSecret string
	Logger        zerolog.Logger
	// Store, when set, is used instead of the durable store in DataDir (tests); DataDir,
	// when set, still holds the incarnation counter.
	Store store.Store
	// FlushBytes and FlushEvery set when the store moves its write-ahead log into bbolt
	// (DefaultFlushBytes, DefaultFlushEvery): FlushBytes also bounds the log a restart
	// replays.
	FlushBytes int64
	FlushEvery time.Duration
	// WALSegmentBytes is the size of each preallocated log segment (default
	// wal.DefaultSegmentBytes, 64 MiB; smaller for a small disk).
	WALSegmentBytes int64
	// SyncRate caps a snapshot transfer to a sibling, in bytes per second (0: no cap).
	SyncRate int64
	// LogKeep is how many applied entries a copy keeps behind its applied seq (default
	// 10,000); a main keeps more for a sibling that lags, up to LogKeepMax (default
	// 1,000,000), past which the sibling is rebuilt from a snapshot instead.
	LogKeep, LogKeepMax uint64
	// RegisterHoldBytes and RegisterHoldTime bound what a main keeps of its log for a copy
	// being registered, which is held until the copy votes whatever LogKeep and LogKeepMax
	// say: bytes logged after the copy's position (default 1 GiB) and time since the main
	// started holding (default 10 minutes). Past either the registration is aborted
	// (register_hold.go).
	RegisterHoldBytes uint64
	RegisterHoldTime  time.Duration
	// VacuumEvery is how often a main writes a vacuum entry (default 30 s); tombstones and
	// dedupe records older than TombstoneRetention and DedupeRetention (default 10 min
	// each) go with it.
	VacuumEvery                         time.Duration
	TombstoneRetention, DedupeRetention time.Duration
	// Dial, when set, opens every connection the node makes to another process (nil: TCP).
	// Tests run whole clusters on an in-memory network through it.
	Dial DialFunc
	// ClientTLS, when set, makes every call to another node or a controller https or wss,
	// verified with it (tlsconf.Settings.Client); nil calls in plaintext.
	ClientTLS *tls.Config
}

// DialFunc opens a connection to addr, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// HTTPTransport is the round tripper for requests dialled by dial and, with tlsConf,
// verified with it: http.DefaultTransport when both are nil.
func HTTPTransport(dial DialFunc, tlsConf *tls.Config) http.RoundTripper {
	if dial == nil && tlsConf == nil {
		return http.DefaultTransport
	}
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	return &http.Transport{DialContext: dial, TLSClientConfig: tlsConf,
		TLSHandshakeTimeout: 10 * time.Second, MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second}
}

// wsDialer is a WebSocket dialer that connects through the node's Dial, with its TLS.
func (n *Node) wsDialer(handshake time.Duration) websocket.Dialer {
	return websocket.Dialer{HandshakeTimeout: handshake, NetDialContext: n.cfg.Dial, TLSClientConfig: n.cfg.ClientTLS}
}

// peerURL is the URL of path (with its query) on the process at addr, over TLS when the
// node has it: scheme is "http" or "ws".
func (n *Node) peerURL(scheme, addr, path string) string {
	return tlsconf.Scheme(n.cfg.ClientTLS, scheme) + "://" + addr + path
}

// Node is one running node.
type Node struct {
	cfg   Config
	log   zerolog.Logger
	store store.Store
	// instance and incarnation name this life of the process to the controllers: the
	// incarnation is raised by adoptIncarnation, both change with a new life after a disk
	// fault (newLife); both under incMu, read with identity.
	instance    string
	incarnation atomic.Uint64
	incMu       sync.Mutex
	// adopted: this instance took a recorded incarnation above its own (adoptIncarnation),
	// which every later join says (JoinRequest.Wiped); under incMu
	adopted    string
	generation atomic.Uint64
	ids        *command.IDGen
	joins      atomic.Int64 // successful joins (a restart of the controllers' state forces another)
	ctrl       *ctrlClient
	peerHTTP   *http.Client // requests to other nodes (bounded by their contexts)
	fwd        *forwarder
	metrics    *metrics
	subs       *subManager
	disk       *diskState
	tokens     tokenBook
	// refusals logs internal calls refused for their secret, a few per period, so a
	// caller hammering the port cannot flood the log.
	refusals zerolog.Logger

	connMu sync.Mutex
	conns  map[*websocket.Conn]struct{} // node-to-node connections this node accepted

	streamMu sync.Mutex
	streams  map[command.ServerID]int // open replication connections from mains, by group

	// applyMu serialises applyDirectory (taken before mu and every group's mu).
	applyMu sync.Mutex
	mu      sync.RWMutex
	// own is the link to this node's location's controllers, links every location's by
	// name (locations.go); dir is their directories merged.
	own   *link
	links map[string]*link
	dir   *command.Directory
	// knownWritten is what locations.json last got (known_locations.go); only the
	// discovery loop uses it.
	knownWritten []byte
	// homes are the homes this node's copies promised (homes.go).
	homes *homes
	// configs are the highest config versions this node's copies followed (configs.go).
	configs *configsSeen
	groups  map[command.ServerID]*group
	joined  bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New opens the node's store and starts its loops (join, heartbeats, directory watch). The
// node serves a group only once the controller leader confirmed its role.
func New(cfg Config) (*Node, error) {
	if cfg.ID == 0 {
		return nil, fmt.Errorf("node: server ID must be in 1..65535")
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	if cfg.DownAfter <= 0 {
		cfg.DownAfter = time.Second
	}
	if cfg.Location == "" {
		cfg.Location = "default"
	}
	if cfg.LogKeep == 0 {
		cfg.LogKeep = 10_000
	}
	if cfg.LogKeepMax < cfg.LogKeep {
		cfg.LogKeepMax = max(cfg.LogKeep, 1_000_000)
	}
	if cfg.RegisterHoldBytes == 0 {
		cfg.RegisterHoldBytes = DefaultRegisterHoldBytes
	}
	if cfg.RegisterHoldTime <= 0 {
		cfg.RegisterHoldTime = DefaultRegisterHoldTime
	}
	if cfg.VacuumEvery <= 0 {
		cfg.VacuumEvery = 30 * time.Second
	}
	if cfg.TombstoneRetention <= 0 {
		cfg.TombstoneRetention = 10 * time.Minute
	}
	if cfg.DedupeRetention <= 0 {
		cfg.DedupeRetention = 10 * time.Minute
	}
	if cfg.MaxSubs <= 0 {
		cfg.MaxSubs = maxSubsPerSession
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With().Uint16("node", uint16(cfg.ID)).Logger(),
		instance: ulid.Make().String(), groups: map[command.ServerID]*group{}, metrics: newMetrics(),
		conns: map[*websocket.Conn]struct{}{}, streams: map[command.ServerID]int{}, disk: newDiskState()}
	n.tokens.own = cfg.Location
	n.ids = command.NewIDGen(cfg.ID, rand.Reader)
	n.refusals = n.log.Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second})
	n.subs = newSubManager(n)
	n.metrics.reg.MustRegister(newStateCollector(n))
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("node: data directory %s: %w", cfg.DataDir, err)
		}
		inc, err := bumpIncarnation(filepath.Join(cfg.DataDir, "incarnation"))
		if err != nil {
			return nil, err
		}
		n.incarnation.Store(inc)
	}
	hs, err := loadHomes(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n.homes = hs
	cs, err := loadConfigsSeen(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n.configs = cs
	if cfg.Store != nil {
		n.store = cfg.Store
	} else {
		st, err := store.OpenDurable(cfg.DataDir, store.DurableOptions{FlushBytes: cfg.FlushBytes, FlushEvery: cfg.FlushEvery,
			WAL: wal.Options{SegmentBytes: cfg.WALSegmentBytes}})
		if err != nil {
			return nil, fmt.Errorf("node: opening store: %w", err)
		}
		n.store = st
	}
	held, err := n.store.Groups()
	if err != nil {
		return nil, err
	}
	for _, id := range held {
		gs, err := n.store.Group(id)
		if err != nil {
			return nil, err
		}
		g, err := newGroup(n, id, gs)
		if err != nil {
			return nil, fmt.Errorf("node: recovering group %d: %w", id, err)
		}
		n.groups[id] = g
	}
	n.fwd = newForwarder(n)
	n.ctrl = newCtrlClient(cfg.Controllers, n.log, cfg.Dial, cfg.ClientTLS, cfg.ClusterSecret)
	n.own = &link{loc: cfg.Location, own: true, ctrl: n.ctrl}
	n.links = map[string]*link{cfg.Location: n.own}
	known, err := loadKnownLocations(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n.startKnownLocations(known)
	n.peerHTTP = &http.Client{Transport: HTTPTransport(cfg.Dial, cfg.ClientTLS)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	// Logged before run starts: run may adopt another incarnation (adoptIncarnation).
	n.log.Info().Str("addr", cfg.HTTPAddr).Str("instance", n.instance).Uint64("incarnation", n.incarnation.Load()).
		Int("groups", len(held)).Msg("node started")
	n.wg.Add(2)
	go n.run()
	go n.diskLoop()
	return n, nil
}

// bumpIncarnation raises and persists the counter that orders this process's ads across
// restarts (docs/replication.md case 14f).
func bumpIncarnation(path string) (uint64, error) {
	var inc uint64
	if b, err := os.ReadFile(path); err == nil {
		inc, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	inc++
	return inc, writeIncarnation(path, inc)
}

// writeIncarnation stores inc at path durably (write to a temporary file, fsync, rename).
func writeIncarnation(path string, inc uint64) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write incarnation %d to %s: %w", inc, tmp, err)
	}
	if _, err := fmt.Fprintln(f, inc); err != nil {
		f.Close()
		return fmt.Errorf("write incarnation %d to %s: %w", inc, tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync incarnation file %s: %w", tmp, err)
	}
	f.Close()
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	return nil
}

// Handler serves the node-to-node endpoints under /v1/internal/, all behind the cluster
// secret.
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/internal/repl", n.serveRepl)
	mux.HandleFunc("/v1/internal/resync", n.serveResync)
	mux.HandleFunc("/v1/internal/fwd", n.serveFwd)
	mux.HandleFunc("/v1/internal/feed", n.serveFeed)
	mux.HandleFunc("/v1/internal/snapshot", n.serveSnapshot)
	mux.HandleFunc("/v1/internal/seal", n.serveSeal)
	mux.HandleFunc("/v1/internal/group", n.serveGroupView)
	mux.HandleFunc("/v1/internal/handover", n.serveHandover)
	mux.Handle("/v1/internal/metrics", n.metrics.handler())
	// Profiles for operators, behind the same cluster secret as the rest of /v1/internal/.
	mux.HandleFunc("/v1/internal/debug/pprof/", func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "/v1/internal")
		switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
		case "profile":
			pprof.Profile(w, r)
		case "trace":
			pprof.Trace(w, r)
		default:
			pprof.Index(w, r)
		}
	})
	// Every node-to-node endpoint needs the cluster secret (when one is set): checked
	// once here, not by each handler.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !n.internalAuthorized(r) {
			n.refusals.Warn().Str("path", r.URL.Path).Str("remote", r.RemoteAddr).
				Msg("internal call refused: no cluster secret or a wrong one")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write(unauthorizedBody)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// publish hands committed entries of group g, just applied, to subscriptions. It is called
// in commit order with the group's lock held, so it must not block.
func (n *Node) publish(g command.ServerID, applied []store.AppliedEffect) { n.subs.publish(g, applied) }

// Metrics returns the node's metrics registry handler (Prometheus text).
func (n *Node) Metrics() http.Handler { return n.metrics.handler() }

// Healthy reports whether the node has joined and serves: false while its disk fails.
func (n *Node) Healthy() bool {
	if n.diskFault() != nil {
		return false
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.joined && n.dir != nil
}

// Degraded is why the node's store cannot write or fsync now ("" while its disk works).
func (n *Node) Degraded() string {
	if f := n.diskFault(); f != nil {
		return f.Error()
	}
	return ""
}

// Status returns the cluster status from the controller leader.
func (n *Node) Status(ctx context.Context) (*command.Status, error) {
	return n.ctrl.status(ctx)
}

// Close stops the node and closes its store.
func (n *Node) Close() error {
	n.cancel()
	n.wg.Wait()
	// Accepted connections outlive the HTTP server that upgraded them; close them so peers
	// see this node go away.
	n.connMu.Lock()
	for c := range n.conns {
		c.Close()
	}
	n.connMu.Unlock()
	n.fwd.closeAll()
	// Groups are taken under Node.mu and locked after it: a group's mu is held when Node.mu
	// is taken (directoryGroup), never the other way round.
	n.mu.RLock()
	groups := make([]*group, 0, len(n.groups))
	for _, g := range n.groups {
		groups = append(groups, g)
	}
	n.mu.RUnlock()
	for _, g := range groups {
		g.mu.Lock()
		g.c.Stop(command.Errorf(command.CodeUnavailable, "node %d is shutting down", n.cfg.ID))
		g.drain()
		g.mu.Unlock()
	}
	return n.store.Close()
}

func (n *Node) directory() *command.Directory {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.dir
}

func (n *Node) directoryGroup(id command.ServerID) *command.GroupInfo {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.dir == nil {
		return nil
	}
	return n.dir.Group(uint16(id))
}

func (n *Node) nodeAddr(id uint16) string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.dir == nil {
		return ""
	}
	if ni := n.dir.NodeByID(id); ni != nil {
		return ni.Addr
	}
	return ""
}

func (n *Node) localGroup(id command.ServerID) *group {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.groups[id]
}

// ensureGroup returns this node's copy of group id if the directory lists it as a holder.
func (n *Node) ensureGroup(id uint16) *group {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.groups[command.ServerID(id)]
}

func (g *group) isMain() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.c.Role() == core.Main
}

func (g *group) serving() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.c.Role() != core.None
}

// track registers an accepted node-to-node connection until it ends; false if closing.
func (n *Node) track(c *websocket.Conn) (untrack func(), ok bool) {
	n.connMu.Lock()
	defer n.connMu.Unlock()
	if n.ctx.Err() != nil {
		return nil, false
	}
	n.conns[c] = struct{}{}
	return func() {
		n.connMu.Lock()
		delete(n.conns, c)
		n.connMu.Unlock()
	}, true
}

// acceptInternal upgrades a node-to-node request to a WebSocket tracked until the returned
// release is called (it closes the connection too). ok is false when nothing was accepted
// (already answered, or the node is closing).
func (n *Node) acceptInternal(w http.ResponseWriter, r *http.Request, readLimit int64) (conn *websocket.Conn, release func(), ok bool) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return nil, nil, false
	}
	untrack, ok := n.track(conn)
	if !ok {
		conn.Close()
		return nil, nil, false
	}
	if readLimit > 0 {
		conn.SetReadLimit(readLimit)
	}
	return conn, func() { untrack(); conn.Close() }, true
}

const secretHeader = command.SecretHeader

// unauthorizedBody answers an internal call without the cluster secret (docs/protocol.md §7).
var unauthorizedBody = []byte(`{"error":{"code":"unauthorized","message":"this endpoint needs the cluster secret (` +
	secretHeader + `)","retryable":false}}` + "\n")

func (n *Node) internalHeader() http.Header {
	h := http.Header{}
	if n.cfg.ClusterSecret != "" {
		h.Set(secretHeader, n.cfg.ClusterSecret)
	}
	return h
}

// internalAuthorized checks the cluster secret of a call to /v1/internal/, in constant time.
func (n *Node) internalAuthorized(r *http.Request) bool {
	return command.SecretOK(r.Header.Get(secretHeader), n.cfg.ClusterSecret)
}
