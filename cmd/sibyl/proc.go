package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/rs/zerolog"

	"github.com/sibylhq/sibyl/api"
	"github.com/sibylhq/sibyl/api/statuspage"
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/location"
	"github.com/sibylhq/sibyl/node"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/node/wal"
)

// secretUsage describes --cluster-secret, the same for nodes and controllers.
const secretUsage = "secret every node and controller presents to the others and requires on its internal endpoints " +
	"(give all of them the same one; prefer " + envPrefix + "CLUSTER_SECRET, which stays out of the process list)"

// shutdownGrace bounds how long a stopping process waits for in-flight HTTP requests.
const shutdownGrace = 5 * time.Second

func runLocation(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("location", "location --id ID --http ADDR --raft ADDR --data DIR [--peers ID=RAFTADDR,...] [--locations NAME=HOST:PORT,...] [flags]", stderr)
	id := fs.String("id", "", "controller ID, e.g. c1 (required)")
	httpAddr := fs.String("http", "", "host:port of the HTTP listener: status, metrics, node protocol (required)")
	raftAddr := fs.String("raft", "", "host:port of the raft transport (required)")
	dataDir := fs.String("data", "", "data directory for the raft log and snapshots (required)")
	peersFlag := fs.String("peers", "", "every controller of this location as ID=RAFTADDR,..., this one included (default: this one alone)")
	loc := fs.String("location", "", "location name (default \"default\")")
	locationsFlag := fs.String("locations", "", "the other locations' controllers as NAME=HOST:PORT,... (a name once per controller); "+
		"this location's leader sends its ads there (entries of this controller's own location are ignored)")
	downAfter := fs.Duration("down-after", time.Second, "silence after which a node is marked down")
	copyTimeout := fs.Duration("copy-timeout", location.DefaultCopyTimeout,
		"how long a voting copy may go unreported before it is demoted to stale (below 10m undercuts the idempotency retention: warned)")
	secret := fs.String("cluster-secret", "", secretUsage)
	var adminTokens listFlag
	fs.Var(&adminTokens, "admin-token", "admin token every admin call must carry (repeatable; none: any admin call with the cluster secret is accepted)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	tlsf := addTLSFlags(fs)
	wanDelay := fs.Duration("wan-delay", 0, wanDelayUsage)
	addConfigFlag(fs)
	if _, code, ok := parseOrExit(fs, args, stderr); !ok {
		return code
	}
	tlsSettings, err := tlsf.load()
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if *id == "" || *httpAddr == "" || *raftAddr == "" || *dataDir == "" {
		return usageError(fs, stderr, "--id, --http, --raft and --data are required")
	}
	if *copyTimeout <= 0 {
		return usageError(fs, stderr, "--copy-timeout %v: must be positive", *copyTimeout)
	}
	peers, err := parsePeers(*peersFlag)
	if err != nil {
		return usageError(fs, stderr, "--peers: %v", err)
	}
	if len(peers) == 0 {
		peers = map[string]string{*id: *raftAddr}
	}
	if addr, ok := peers[*id]; !ok || addr != *raftAddr {
		return usageError(fs, stderr, "--peers %s must include this controller as %s=%s", formatPeers(peers), *id, *raftAddr)
	}
	others, err := parseLocations(*locationsFlag)
	if err != nil {
		return usageError(fs, stderr, "--locations: %v", err)
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	logEffective(log, fs)

	// Listen before starting the controller: a busy port fails here, before raft opens its
	// files, and peers reach the HTTP side as soon as the controller advertises it.
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		log.Error().Err(err).Str("http", *httpAddr).Msg("cannot listen")
		return exitFail
	}
	var peerLocations lateLocator
	c, err := location.New(location.Config{
		ID: *id, HTTPAddr: *httpAddr, RaftAddr: *raftAddr, DataDir: *dataDir, Peers: peers,
		Location: *loc, DownAfter: *downAfter, CopyTimeout: *copyTimeout, Logger: log,
		ClusterSecret: *secret, AdminTokens: adminTokens, Locations: others,
		ServerTLS: tlsSettings.Server, ClientTLS: tlsSettings.Client,
		Dial: wanDialFor(locationOrDefault(*loc), *wanDelay, &peerLocations),
	})
	if err != nil {
		ln.Close()
		log.Error().Err(err).Msg("cannot start controller")
		return exitFail
	}
	peerLocations.set(c.LocationOf)
	return serveUntilSignal(log, listenerFor(ln, tlsSettings), c.Handler(), c.CloseStreams, c.Close)
}

func runNode(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("node", "node --id N --http ADDR --data DIR --controllers ADDR,... [flags]", stderr)
	id := fs.Uint("id", 0, "server ID 1..65535: names this node and its group (required)")
	httpAddr := fs.String("http", "", "host:port to listen on and advertise (required)")
	advertise := fs.String("advertise", "", "host:port other processes reach this node at, when not --http (a proxy, a NAT)")
	dataDir := fs.String("data", "", "data directory (required)")
	var controllers, tokens, adminTokens listFlag
	fs.Var(&controllers, "controllers", "HTTP addresses of this location's controllers, host:port or http://host:port, comma-separated (required)")
	loc := fs.String("location", "", "location name (default \"default\")")
	writeTimeout := fs.Duration("write-timeout", 5*time.Second, "bound on a write from arrival to answer")
	downAfter := fs.Duration("down-after", time.Second, "failure-detection period (heartbeats every down-after/4)")
	drift := fs.Float64("max-clock-drift", node.DefaultMaxClockDrift, "ρ, the declared bound on clock rate drift: a ticket expires ttl·(1+ρ) after the main grants it")
	fs.Var(&tokens, "token", "client token accepted from clients (repeatable; none and no admin token: everyone is admin)")
	fs.Var(&adminTokens, "admin-token", "admin token (repeatable)")
	secret := fs.String("cluster-secret", "", secretUsage)
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	syncRate := fs.Int64("sync-rate", 32<<20, "cap on a snapshot sent to a sibling, bytes per second (0: none); the default keeps writers' p99 within 1.5x during a registration on a small machine")
	logKeep := fs.Uint64("log-keep", 10_000, "applied log entries every copy keeps")
	logKeepMax := fs.Uint64("log-keep-max", 1_000_000, "applied entries a main keeps for a lagging sibling before it must be rebuilt from a snapshot")
	holdBytes := fs.Uint64("register-hold-bytes", node.DefaultRegisterHoldBytes, "log a main keeps for a copy being registered until it votes, in bytes logged after the copy's position; past it the registration is aborted (rate_limited)")
	holdTime := fs.Duration("register-hold-time", node.DefaultRegisterHoldTime, "how long a main keeps its log for a copy being registered until it votes; past it the registration is aborted (timeout)")
	flushBytes := fs.Int64("flush-bytes", store.DefaultFlushBytes, "write-ahead log written since the last flush that starts the next one (bbolt gets every change in one transaction); bounds what a restart replays")
	flushEvery := fs.Duration("flush-every", store.DefaultFlushEvery, "longest time between flushes of the write-ahead log into bbolt")
	walSegment := fs.Int64("wal-segment-bytes", wal.DefaultSegmentBytes, "size of each preallocated write-ahead log segment (smaller for a small disk)")
	vacuumEvery := fs.Duration("vacuum-every", 30*time.Second, "how often a main writes a vacuum entry")
	tombstoneRetention := fs.Duration("tombstone-retention", 10*time.Minute, "age after which a tombstone every copy holds is vacuumed")
	dedupeRetention := fs.Duration("dedupe-retention", 10*time.Minute, "age after which an idempotency key is forgotten")
	maxFrame := fs.Int("max-frame", api.DefaultMaxFrameBytes, "largest client frame or REST body in bytes (larger: too_large)")
	maxInflight := fs.Int("max-inflight", api.DefaultMaxPendingPerConn, "requests one client connection may have outstanding (more: rate_limited)")
	maxSubs := fs.Int("max-subs", 1000, "subscriptions one client connection may have open (more: rate_limited)")
	maxConnsPerIP := fs.Int("max-conns-per-ip", api.DefaultMaxConnsPerIP, "WebSocket connections open from one client IP (more: refused with rate_limited)")
	rate := fs.Int("rate", 0, "requests a second per token, or per IP without tokens (0: no limit; more: rate_limited with retryAfterMs)")
	tlsf := addTLSFlags(fs)
	wanDelay := fs.Duration("wan-delay", 0, wanDelayUsage)
	addConfigFlag(fs)
	if _, code, ok := parseOrExit(fs, args, stderr); !ok {
		return code
	}
	tlsSettings, err := tlsf.load()
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if *maxFrame < 1024 || *maxInflight < 1 || *maxSubs < 1 || *maxConnsPerIP < 1 || *rate < 0 {
		return usageError(fs, stderr, "--max-frame %d (at least 1024), --max-inflight %d, --max-subs %d, --max-conns-per-ip %d (at least 1), --rate %d (0 or more)",
			*maxFrame, *maxInflight, *maxSubs, *maxConnsPerIP, *rate)
	}
	if *holdBytes < 1<<20 || *holdTime < time.Second {
		return usageError(fs, stderr, "--register-hold-bytes %d, --register-hold-time %s: want at least 1 MiB and 1s", *holdBytes, *holdTime)
	}
	if *id < 1 || *id > 65535 {
		return usageError(fs, stderr, "--id %d: want a server ID in 1..65535", *id)
	}
	if *walSegment < 1<<20 {
		return usageError(fs, stderr, "--wal-segment-bytes %d: want at least 1 MiB", *walSegment)
	}
	if *flushBytes < 1<<20 || *flushEvery < 100*time.Millisecond {
		return usageError(fs, stderr, "--flush-bytes %d, --flush-every %s: want at least 1 MiB and 100ms", *flushBytes, *flushEvery)
	}
	if !(*drift > 0 && *drift < 1) {
		return usageError(fs, stderr, "--max-clock-drift %v: want a rate in (0, 1), e.g. 0.001", *drift)
	}
	if *httpAddr == "" || *dataDir == "" || len(controllers) == 0 {
		return usageError(fs, stderr, "--http, --data and --controllers are required")
	}
	ctrlAddrs := make([]string, len(controllers))
	for i, c := range controllers {
		a, err := controllerAddr(c)
		if err != nil {
			return usageError(fs, stderr, "--controllers: %v", err)
		}
		ctrlAddrs[i] = a
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	logEffective(log, fs)

	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		log.Error().Err(err).Str("http", *httpAddr).Msg("cannot listen")
		return exitFail
	}
	var peerLocations lateLocator
	n, err := node.New(node.Config{
		ID: command.ServerID(*id), HTTPAddr: advertised(*httpAddr, *advertise), DataDir: *dataDir, Controllers: ctrlAddrs,
		Location: *loc, WriteTimeout: *writeTimeout, DownAfter: *downAfter, ClusterSecret: *secret,
		MaxClockDrift: *drift, Logger: log, SyncRate: *syncRate, LogKeep: *logKeep, LogKeepMax: *logKeepMax,
		VacuumEvery: *vacuumEvery, TombstoneRetention: *tombstoneRetention, DedupeRetention: *dedupeRetention,
		FlushBytes: *flushBytes, FlushEvery: *flushEvery, MaxSubs: *maxSubs, WALSegmentBytes: *walSegment,
		RegisterHoldBytes: *holdBytes, RegisterHoldTime: *holdTime, ClientTLS: tlsSettings.Client,
		Dial: node.DialFunc(wanDialFor(locationOrDefault(*loc), *wanDelay, &peerLocations)),
	})
	if err != nil {
		ln.Close()
		log.Error().Err(err).Uint("id", *id).Str("data", *dataDir).Msg("cannot start node")
		return exitFail
	}
	peerLocations.set(n.LocationOf)
	apiMetrics := api.NewMetrics()
	srv := api.NewServer(nodeBackend{n}, api.Options{
		ClientTokens: tokens, AdminTokens: adminTokens, Tokens: n, Logger: log, Metrics: apiMetrics,
		MaxFrameBytes: *maxFrame, MaxPendingPerConn: *maxInflight, MaxConnsPerIP: *maxConnsPerIP, RatePerSecond: *rate,
		Served: statuspage.Served{Kind: "node", ID: strconv.Itoa(int(*id)), Location: nodeLocation(*loc)},
	})
	return serveUntilSignal(log, listenerFor(ln, tlsSettings), nodeMux(n, srv, apiMetrics), srv.Close, n.Close)
}

// nodeBackend adapts *node.Node to api.Backend: the node's session constructors return its
// concrete *node.Session, the interface wants an api.Session. A WebSocket connection's
// session can subscribe (its events go out through the connection's Outbox).
type nodeBackend struct{ *node.Node }

func (b nodeBackend) NewSession(out api.Outbox) api.Session { return b.Node.NewEventSession(out) }

// nodeMux is a node's one HTTP listener: node-to-node traffic under /v1/internal/, the
// metrics of both the node and the API on /metrics, and the public API for the rest.
func nodeMux(n *node.Node, srv *api.Server, apiMetrics *api.Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/internal/", n.Handler())
	mux.Handle("GET /metrics", metricsHandler(n, apiMetrics))
	mux.Handle("/", srv.Handler())
	return mux
}

// metricsHandler writes the API's metrics (their own text renderer) followed by the node's
// Prometheus registry in the same text format, so one scrape sees both.
func metricsHandler(n *node.Node, apiMetrics *api.Metrics) http.Handler {
	apiHandler := apiMetrics.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		families, gatherErr := n.Registry().Gather()
		apiHandler.ServeHTTP(w, r)
		for _, mf := range families {
			if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
				return // the scraper went away
			}
		}
		if gatherErr != nil {
			// Gather returns what it could; say what failed as a comment line, which the
			// text format allows.
			fmt.Fprintf(w, "# node metrics incomplete: %s\n", strconv.Quote(gatherErr.Error()))
		}
	})
}

// serveUntilSignal serves h on ln until SIGINT or SIGTERM (or until serving fails), then
// stops in order: beforeShutdown (e.g. close WebSockets, which http.Server.Shutdown does
// not track), the HTTP server with a grace period, and finally closeBackend.
func serveUntilSignal(log zerolog.Logger, ln net.Listener, h http.Handler, beforeShutdown, closeBackend func() error) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	log.Info().Str("http", ln.Addr().String()).Msg("serving")

	code := exitOK
	select {
	case <-ctx.Done():
		log.Info().Msg("signal received; shutting down")
	case err := <-served:
		log.Error().Err(err).Str("http", ln.Addr().String()).Msg("HTTP server failed")
		code = exitFail
	}
	if beforeShutdown != nil {
		if err := beforeShutdown(); err != nil {
			log.Warn().Err(err).Msg("closing API connections")
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn().Err(err).Msg("HTTP shutdown did not finish in time; closing connections")
		hs.Close()
	}
	if err := closeBackend(); err != nil {
		log.Error().Err(err).Msg("close")
		code = exitFail
	}
	log.Info().Msg("stopped")
	return code
}

// nodeLocation is the location a node names on its status page.
func nodeLocation(loc string) string {
	if loc == "" {
		return "default"
	}
	return loc
}

// advertised is the address a node gives the directory: --advertise when set, else --http.
func advertised(listen, advertise string) string {
	if advertise != "" {
		return advertise
	}
	return listen
}
