package location

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sibylhq/sibyl/api/statuspage"
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/tlsconf"
)

// Config configures one controller process.
type Config struct {
	ID       string            // e.g. "c1"
	HTTPAddr string            // host:port of the HTTP listener (status, node protocol)
	RaftAddr string            // host:port of the raft transport
	DataDir  string            // raft-boltdb files and snapshots
	Peers    map[string]string // id -> raft address of every controller of this location, self included
	Location string            // location name, "default" if empty
	// DownAfter is how long a node may be silent before it is marked down (default 1 s).
	DownAfter time.Duration
	// CopyTimeout is how long a voting copy may go unreported by its node's heartbeats
	// before it is demoted to stale (default DefaultCopyTimeout, 10 minutes). Shorter values
	// are allowed (tests) but undercut the idempotency retention; New logs a warning.
	CopyTimeout time.Duration
	Logger      zerolog.Logger
	// ClusterSecret, when set, is required on every call to the controller's
	// /v1/internal/ endpoints and on every raft connection, and presented on every call it
	// makes to nodes and other controllers (auth.go, raft_auth.go). Every node and
	// controller of a cluster is given the same one.
	ClusterSecret string
	// AdminTokens, when set, are the tokens an admin call (/v1/internal/admin/{op}) must
	// carry; nodes pass on the token their caller authenticated with.
	AdminTokens []string
	// ServerTLS, when set, serves the raft transport over TLS (the HTTP listener is the
	// caller's: it wraps it with the same settings). ClientTLS, when set, makes every call
	// to nodes and controllers https and every raft connection TLS, verified with it.
	// tlsconf.Load makes both.
	ServerTLS, ClientTLS *tls.Config

	// RaftListener, when set, is used for the raft transport instead of listening on
	// RaftAddr (an empty RaftAddr then becomes the listener's address). The controller
	// closes it. It lets a caller bind an ephemeral port before the controller starts.
	RaftListener net.Listener
	// LongPoll is how long GET /v1/internal/directory waits for a change (default 5 s).
	LongPoll time.Duration
	// RaftTimeout is raft's heartbeat and election timeout (default 500 ms, tuned for a
	// LAN or loopback); the leader lease is half of it. Raise it on a loaded host.
	RaftTimeout time.Duration
	// Dial, when set, opens every connection the controller makes (raft's to other
	// controllers, HTTP to nodes and controllers); nil dials TCP. With RaftListener it lets
	// tests run a location on an in-memory network.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Locations are the other locations' controllers, location name -> HTTP addresses
	// (--locations NAME=HOST:PORT,...): where this location's leader sends its ads. Entries
	// naming this controller's own location are ignored. Locations are also learnt from the
	// ads that arrive (docs/locations.md).
	Locations map[string][]string
	// AdEvery is how often the controller advertises itself (default 1 s); the leader passes
	// a node's unchanged ad on at most this often too.
	AdEvery time.Duration
	// AdTTL is how long an ad of another location lives without a newer one (default 10 s).
	AdTTL time.Duration
}

// Controller is one location controller process.
type Controller struct {
	cfg    Config
	log    zerolog.Logger
	fsm    *fsm
	cons   consensus
	raft   *raftNode
	now    func() time.Time
	client *http.Client // short requests: seals, status, forwarding to the leader
	long   *http.Client // requests bounded only by their context (handover, registration)
	mux    *http.ServeMux
	// refusals logs calls refused for their secret or token, a few per period, so a caller
	// hammering the port cannot flood the log.
	refusals zerolog.Logger
	// adFailures logs undelivered ad batches, a few per period.
	adFailures zerolog.Logger
	gossip     *gossip

	term  atomic.Pointer[leaderTerm] // non-nil while this controller leads
	polls atomic.Int32               // directory long polls waiting for a change
	// disowning: groups with a disownGroup in flight (rehome.go).
	disowning sync.Map
	// promoStats counts the promotions this controller completed as leader (/metrics).
	promoStats promotionStats
	// ops are the admin calls this controller runs as leader (the page's progress bars).
	ops operations
	// stream pushes the status to open status pages (GET /v1/status/stream).
	stream *statuspage.Stream
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
	err    error
}

const (
	defaultLocation  = "default"
	defaultDownAfter = time.Second
	defaultLongPoll  = 5 * time.Second
	// defaultRaftTimeout makes a location fail over in about a second.
	defaultRaftTimeout = 500 * time.Millisecond
	registerEvery      = 200 * time.Millisecond
)

// New starts raft (bootstrapping the cluster from Peers when the data directory is new)
// and the controller's background loops.
func New(cfg Config) (*Controller, error) {
	if cfg.ID == "" || cfg.HTTPAddr == "" || cfg.DataDir == "" {
		return nil, fmt.Errorf("location controller config: id (%q), http address (%q) and data directory (%q) are required",
			cfg.ID, cfg.HTTPAddr, cfg.DataDir)
	}
	if cfg.Location == "" {
		cfg.Location = defaultLocation
	}
	if cfg.DownAfter <= 0 {
		cfg.DownAfter = defaultDownAfter
	}
	if cfg.CopyTimeout <= 0 {
		cfg.CopyTimeout = DefaultCopyTimeout
	}
	if cfg.LongPoll <= 0 {
		cfg.LongPoll = defaultLongPoll
	}
	if cfg.RaftTimeout <= 0 {
		cfg.RaftTimeout = defaultRaftTimeout
	}
	if cfg.AdEvery <= 0 {
		cfg.AdEvery = defaultAdEvery
	}
	if cfg.AdTTL <= 0 {
		cfg.AdTTL = defaultAdTTL
	}
	if cfg.AdTTL < 3*cfg.AdEvery {
		return nil, fmt.Errorf("location controller %s: ad TTL %v must be at least 3 ad periods (%v)", cfg.ID, cfg.AdTTL, cfg.AdEvery)
	}
	ln := cfg.RaftListener
	if ln == nil {
		if cfg.RaftAddr == "" {
			return nil, fmt.Errorf("location controller %s: a raft address or listener is required", cfg.ID)
		}
		var err error
		if ln, err = net.Listen("tcp", cfg.RaftAddr); err != nil {
			return nil, fmt.Errorf("location controller %s: listen for raft on %s: %w", cfg.ID, cfg.RaftAddr, err)
		}
	}
	if _, port, err := net.SplitHostPort(cfg.RaftAddr); err != nil || port == "0" {
		cfg.RaftAddr = ln.Addr().String() // nothing (or an ephemeral port) configured: advertise what was bound
	}
	peers := map[string]string{}
	for id, addr := range cfg.Peers {
		peers[id] = addr
	}
	if len(peers) == 0 {
		peers[cfg.ID] = cfg.RaftAddr
	}
	if addr, ok := peers[cfg.ID]; !ok || addr != cfg.RaftAddr {
		_ = ln.Close()
		return nil, fmt.Errorf("location controller %s: peers %v must give this controller its raft address %s", cfg.ID, peers, cfg.RaftAddr)
	}
	cfg.Peers = peers

	log := cfg.Logger.With().Str("controller", cfg.ID).Str("location", cfg.Location).Logger()
	if cfg.CopyTimeout < DefaultCopyTimeout {
		log.Warn().Dur("copyTimeout", cfg.CopyTimeout).Dur("idempotencyRetention", DefaultCopyTimeout).
			Msg("copy-timeout is below the idempotency retention: a copy demoted that early may miss keys it must dedupe")
	}
	// The incarnation orders this process's ads after every ad of its earlier lives, so it is
	// raised and made durable before the process says anything.
	incarnation, err := bumpIncarnation(cfg.DataDir)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("location controller %s: %w", cfg.ID, err)
	}
	f := newFSM()
	rn, err := openRaft(raftSetup{
		ID: cfg.ID, RaftAddr: cfg.RaftAddr, Listener: ln, Dial: cfg.Dial, Peers: peers, DataDir: cfg.DataDir,
		Timeout: cfg.RaftTimeout, Logger: newHclogAdapter(log), Secret: cfg.ClusterSecret, Log: log,
		ServerTLS: cfg.ServerTLS, ClientTLS: cfg.ClientTLS,
	}, f)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("location controller %s: %w", cfg.ID, err)
	}
	c := &Controller{
		cfg: cfg, log: log, fsm: f, cons: rn, raft: rn, now: time.Now,
		client:     &http.Client{Timeout: 2 * time.Second, Transport: withSecret(httpTransport(cfg.Dial, cfg.ClientTLS), cfg.ClusterSecret)},
		long:       &http.Client{Transport: withSecret(httpTransport(cfg.Dial, cfg.ClientTLS), cfg.ClusterSecret)},
		refusals:   log.Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second}),
		adFailures: log.Sample(&zerolog.BurstSampler{Burst: 3, Period: 10 * time.Second}),
	}
	c.initGossip(incarnation)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.stream = statuspage.NewStream(c.pageStatus, statuspage.StreamOptions{
		Served: statuspage.Served{Kind: "controller", ID: cfg.ID, Location: cfg.Location}})
	c.mux = c.routes()
	log.Info().Str("http", cfg.HTTPAddr).Str("raft", cfg.RaftAddr).Str("dir", cfg.DataDir).
		Bool("bootstrapped", rn.bootstrapped).Bool("clusterSecret", cfg.ClusterSecret != "").Bool("tls", cfg.ServerTLS != nil).
		Int("adminTokens", len(cfg.AdminTokens)).Str("instance", c.Instance()).Uint64("incarnation", c.Incarnation()).
		Int("otherLocations", len(c.gossip.book.cfg.Seeds)).Msg("controller started")
	c.wg.Add(4)
	go c.pokeStreamLoop()
	go c.leadershipLoop()
	go c.registerLoop()
	go c.gossipLoop()
	return c, nil
}

// Handler serves GET /healthz, /metrics, /v1/status, / and the node protocol of
// command/directory.go.
func (c *Controller) Handler() http.Handler { return c.mux }

// Close stops the controller: its loops, raft, the raft transport and store. Requests
// still arriving on Handler get 503.
func (c *Controller) Close() error {
	c.closed.Do(func() {
		c.stream.Close()
		c.cancel()
		// Shutting raft down first fails any Apply or Barrier a loop is blocked in.
		c.err = c.cons.shutdown()
		c.wg.Wait()
		c.client.CloseIdleConnections()
		c.log.Info().Err(c.err).Msg("controller stopped")
	})
	return c.err
}

// ID returns the controller's ID.
func (c *Controller) ID() string { return c.cfg.ID }

// IsLeader reports whether this controller leads and is ready to serve the node protocol.
func (c *Controller) IsLeader() bool {
	t := c.term.Load()
	return t != nil && t.isReady()
}

// Leader returns the raft ID of the leader this controller knows ("" if none).
func (c *Controller) Leader() string { return c.cons.leaderID() }

// Directory returns this controller's copy of the directory. Node states are the leader's
// view on the leader; elsewhere nodes are reported down, as a follower cannot vouch for them.
func (c *Controller) Directory() command.Directory {
	if t := c.term.Load(); t != nil {
		return c.directoryFor(t)
	}
	st, _ := c.fsm.view()
	return c.stamped(st.directory(c.unknownState))
}

// leadershipLoop follows raft's leadership events: it starts a leaderTerm when this
// controller becomes leader and ends it when leadership is lost, and logs leader changes.
func (c *Controller) leadershipLoop() {
	defer c.wg.Done()
	defer c.stopTerm()
	events, changes := c.cons.leaderEvents(), c.cons.leaderChanges()
	for {
		select {
		case <-c.ctx.Done():
			return
		case leader := <-events:
			// A true while a term runs means a loss and regain raft coalesced: start afresh.
			c.stopTerm()
			if leader {
				t := newLeaderTerm(c.now())
				c.term.Store(t)
				c.wg.Add(1)
				go c.runTerm(t)
			}
		case id := <-changes:
			e := c.log.Info().Str("leader", id).Bool("self", id == c.cfg.ID).Uint64("term", c.cons.stats().Term)
			if rec, ok := c.fsm.controller(id); ok {
				e = e.Str("leaderHTTP", rec.HTTPAddr)
			}
			e.Msg("leader changed")
		}
	}
}

// stopTerm ends the current leaderTerm, if any, and waits for its loop.
func (c *Controller) stopTerm() {
	if t := c.term.Swap(nil); t != nil {
		close(t.stop)
		<-t.done
	}
}

// runTerm is the leader's loop: a barrier first (so the FSM holds everything earlier
// leaders committed before this leader serves or plans anything), then a reconcile round
// every reconcileEvery and whenever a heartbeat asks for one.
func (c *Controller) runTerm(t *leaderTerm) {
	defer c.wg.Done()
	defer close(t.done)
	if err := c.cons.barrier(); err != nil {
		c.log.Warn().Err(err).Msg("new leader could not apply earlier entries; waiting for the next election")
		return
	}
	close(t.ready)
	c.log.Info().Uint64("index", c.fsm.index()).Uint64("term", c.cons.stats().Term).Msg("leading")
	c.registerSelf()
	tick := time.NewTicker(reconcileEvery)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-c.ctx.Done():
			return
		case <-tick.C:
		case <-t.kick:
		}
		c.reconcile(t)
	}
}

// selfRecord is this controller as registerController records it.
func (c *Controller) selfRecord() controllerRecord {
	return controllerRecord{ID: c.cfg.ID, HTTPAddr: c.cfg.HTTPAddr, RaftAddr: c.cfg.RaftAddr, Location: c.cfg.Location}
}

// registerLoop makes sure the directory holds this controller's current addresses, so
// that every controller can point nodes at the leader's HTTP address. The leader applies
// its own record; a follower asks the leader (whose address it learnt the same way).
func (c *Controller) registerLoop() {
	defer c.wg.Done()
	tick := time.NewTicker(registerEvery)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		if rec, ok := c.fsm.controller(c.cfg.ID); ok && rec == c.selfRecord() {
			continue
		}
		leader := c.cons.leaderID()
		if leader == "" {
			continue
		}
		if leader == c.cfg.ID {
			c.registerSelf()
			continue
		}
		if rec, ok := c.fsm.controller(leader); ok {
			if err := c.registerWith(rec.HTTPAddr); err != nil {
				c.log.Debug().Err(err).Str("leader", leader).Msg("controller registration failed; retrying")
				continue
			}
			c.log.Info().Str("leader", leader).Msg("controller registered")
		}
	}
}

// registerSelf applies this controller's record when it leads and the record differs.
func (c *Controller) registerSelf() {
	want := c.selfRecord()
	if rec, ok := c.fsm.controller(c.cfg.ID); ok && rec == want {
		return
	}
	if _, err := c.cons.propose(registerController{Controller: want}); err != nil {
		c.log.Warn().Err(err).Msg("registering this controller failed; retrying")
		return
	}
	c.log.Info().Str("http", want.HTTPAddr).Msg("controller registered")
}

// registerWith asks the leader at addr to apply registerController for this controller.
func (c *Controller) registerWith(addr string) error {
	body, err := json.Marshal(c.selfRecord())
	if err != nil {
		return fmt.Errorf("encode registration of %s: %w", c.cfg.ID, err)
	}
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(addr, pathController), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("register %s with leader at %s: %w", c.cfg.ID, addr, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("register %s with leader at %s: %w", c.cfg.ID, addr, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("register %s with leader at %s: HTTP %d: %s", c.cfg.ID, addr, resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// directoryFor renders the directory with leader t's node states.
func (c *Controller) directoryFor(t *leaderTerm) command.Directory {
	st, _ := c.fsm.view()
	now := c.now()
	return c.stamped(st.directory(func(n nodeRecord) (string, uint64) { return t.nodeState(n, now, c.cfg.DownAfter) }))
}

// stamped names this location on directory d and as the home of each of its groups.
func (c *Controller) stamped(d command.Directory) command.Directory {
	d.Location = c.cfg.Location
	for i := range d.Groups {
		d.Groups[i].Home = c.cfg.Location
	}
	return d
}

// unknownState is the node state a controller without leader memory reports: it cannot
// vouch for liveness, so it reports every node that is not spare as down.
func (c *Controller) unknownState(n nodeRecord) (string, uint64) {
	if n.Spare {
		return command.NodeSpare, 0
	}
	return command.NodeDown, 0
}

// errClosed is returned by requests served after Close.
var errClosed = errors.New("controller is closed")

// httpTransport is the round tripper for requests dialled by dial and, with tlsConf,
// verified with it: http.DefaultTransport when both are nil.
func httpTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error), tlsConf *tls.Config) http.RoundTripper {
	if dial == nil && tlsConf == nil {
		return http.DefaultTransport
	}
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	return &http.Transport{DialContext: dial, TLSClientConfig: tlsConf, TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 8, IdleConnTimeout: 90 * time.Second}
}

// url is the URL of path on the node or controller at addr: https with TLS.
func (c *Controller) url(addr, path string) string {
	return tlsconf.Scheme(c.cfg.ClientTLS, "http") + "://" + addr + path
}
