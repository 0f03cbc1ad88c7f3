package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/location"
	"github.com/sibylhq/sibyl/node"
	"github.com/sibylhq/sibyl/tlsconf"
)

// readyTimeout bounds how long dev waits for the cluster to serve.
const readyTimeout = 60 * time.Second

// defaultWANDelay is dev's one-way delay between locations (docs/protocol.md §6).
const defaultWANDelay = 10 * time.Millisecond

func runDev(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("dev", "dev [--nodes 4] [--controllers 3] [--locations 1] [--base-port 7700] [--data DIR] [flags]", stderr)
	nodes := fs.Int("nodes", 4, "number of nodes (server IDs 1..N)")
	perLocation := fs.Int("controllers", 3, "number of location controllers per location")
	locations := fs.Int("locations", 1, "number of locations (loc1..locN)")
	base := fs.Int("base-port", 7700, "controller i listens on base+i (raft base+50+i), node i on base+100+i")
	dataFlag := fs.String("data", "", "cluster directory: data dirs, logs and cluster.json (default: a new directory under the system temp dir)")
	writeTimeout := fs.Duration("write-timeout", 5*time.Second, "passed to every node")
	downAfter := fs.Duration("down-after", time.Second, "passed to every node and controller")
	copyTimeout := fs.Duration("copy-timeout", location.DefaultCopyTimeout, "passed to every controller")
	drift := fs.Float64("max-clock-drift", node.DefaultMaxClockDrift, "passed to every node")
	logLevel := fs.String("log-level", "info", "log level of the children (debug, info, warn, error)")
	nodeFlags := fs.String("node-flags", "", "extra flags for every node, space-separated (e.g. \"--log-keep 1000 --sync-rate 0\")")
	secret := fs.String("cluster-secret", "", "cluster secret given to every node and controller "+
		"(default: none, or a generated one when --admin-token is set; a --cluster-secret in --node-flags reaches the controllers too)")
	var adminTokens listFlag
	fs.Var(&adminTokens, "admin-token", "admin token given to every node and controller (repeatable): every client then needs a token, "+
		"admin calls an admin token; it is printed and recorded in cluster.json")
	auth := fs.Bool("auth", false, "turn tokens on with a generated admin token (as --admin-token), printed and recorded in cluster.json")
	useTLS := fs.Bool("tls", false, "serve every listener over TLS: make a CA and a certificate per process under DIR/tls/ (ca.pem; clients take --tls-ca DIR/tls/ca.pem)")
	wanDelay := fs.Duration("wan-delay", -1, "one-way delay added to every connection between processes of different locations (default 10ms with more than one location, else 0)")
	if _, code, ok := parseOrExit(fs, args, stderr); !ok {
		return code
	}
	if *auth && len(adminTokens) == 0 {
		generated, err := command.NewToken()
		if err != nil {
			fmt.Fprintf(stderr, "sibyl dev: generate an admin token: %v\n", err)
			return exitFail
		}
		adminTokens = append(adminTokens, generated)
	}
	if *wanDelay < 0 {
		*wanDelay = 0
		if *locations > 1 {
			*wanDelay = defaultWANDelay
		}
	}
	extra := strings.Fields(*nodeFlags)
	if s, ok := nodeFlagValue(extra, "cluster-secret"); ok {
		// Nodes and controllers must share the secret, or controllers cannot seal a
		// group's siblings and no main is ever replaced: one given to the nodes alone is
		// the cluster's.
		if *secret != "" && *secret != s {
			return usageError(fs, stderr, "--cluster-secret and the --cluster-secret in --node-flags differ; give it once")
		}
		*secret = s
	}
	if *secret == "" && (len(adminTokens) > 0 || *useTLS) {
		// With admin tokens or TLS the cluster is meant to be closed: its internal
		// endpoints too.
		generated, err := newSecret()
		if err != nil {
			fmt.Fprintf(stderr, "sibyl dev: generate a cluster secret: %v\n", err)
			return exitFail
		}
		*secret = generated
	}
	if _, err := newLogger(io.Discard, *logLevel); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	layout, err := layoutDev(*base, *nodes, *perLocation, *locations)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "sibyl dev: cannot find this executable to start children: %v\n", err)
		return exitFail
	}
	dir, err := devDir(*dataFlag)
	if err != nil {
		fmt.Fprintf(stderr, "sibyl dev: %v\n", err)
		return exitFail
	}
	opts := devOptions{Exe: exe, Dir: dir, WriteTimeout: *writeTimeout, DownAfter: *downAfter, LogLevel: *logLevel,
		MaxClockDrift: *drift, NodeFlags: extra, CopyTimeout: *copyTimeout,
		ClusterSecret: *secret, AdminTokens: adminTokens, WANDelay: *wanDelay}
	if *useTLS {
		if opts.TLS, err = writeDevTLS(dir, layout); err != nil {
			fmt.Fprintf(stderr, "sibyl dev: %v\n", err)
			return exitFail
		}
	}
	return runDevCluster(layout, opts, stdout, stderr)
}

// newSecret returns a random cluster secret: 32 hex digits (128 bits).
func newSecret() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// devDir makes the cluster directory absolute (children's args must work from anywhere)
// and creates it; with no --data it is a new directory under the system temp dir.
func devDir(flagDir string) (string, error) {
	if flagDir == "" {
		d, err := os.MkdirTemp("", "sibyl-dev-")
		if err != nil {
			return "", fmt.Errorf("create a cluster directory under %s: %w", os.TempDir(), err)
		}
		return d, nil
	}
	d, err := filepath.Abs(flagDir)
	if err != nil {
		return "", fmt.Errorf("--data %s: %w", flagDir, err)
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("--data %s: %w", flagDir, err)
	}
	return d, nil
}

func runDevCluster(layout devLayout, opts devOptions, stdout, stderr io.Writer) int {
	// Pdeathsig is tied to the thread that forks the child: keep this goroutine, which
	// starts every child and lives as long as dev, on one thread that never exits early.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	clusterPath := filepath.Join(opts.Dir, "cluster.json")
	var cf clusterFile
	// A cluster.json left by an earlier run would tell readers the cluster is ready
	// before it is.
	if err := os.Remove(clusterPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "sibyl dev: remove stale %s: %v\n", clusterPath, err)
		return exitFail
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fmt.Fprintf(stdout, "sibyl dev: cluster directory %s (logs: %s)\n", opts.Dir, filepath.Join(opts.Dir, "<name>.log"))
	var clientTLS *tls.Config
	if opts.TLS != nil {
		caPath := devCA(opts.TLS)
		s, err := tlsconf.Load(tlsconf.Files{CA: caPath})
		if err != nil {
			fmt.Fprintf(stderr, "sibyl dev: %v\n", err)
			return exitFail
		}
		clientTLS = s.Client
		cf.TLS = &clusterTLS{CA: caPath}
		fmt.Fprintf(stdout, "TLS on: every listener serves TLS; clients verify with --tls-ca %s\n", caPath)
	}
	if opts.ClusterSecret != "" {
		fmt.Fprintf(stdout, "cluster secret on: every internal call between nodes and controllers needs it (see the args in cluster.json)\n")
	}
	if len(opts.AdminTokens) > 0 {
		fmt.Fprintf(stdout, "tokens on: every client needs a token (--token); admin token %s\n"+
			"  make a role and a token for clients: sibyl admin role create --token %s --name app --grant '*=read,write,subscribe,ticket'\n"+
			"                                       sibyl admin token create --token %s --role app\n",
			opts.AdminTokens[0], opts.AdminTokens[0], opts.AdminTokens[0])
		cf.Auth = &clusterAuth{AdminToken: opts.AdminTokens[0]}
	}
	exits := make(chan childExit, len(layout.Controllers)+len(layout.Nodes))
	processes := len(layout.Controllers) + len(layout.Nodes)
	env := childEnv(os.Environ(), processes, runtime.NumCPU())
	var children []*child
	startedAt := time.Now()
	for _, c := range layout.Controllers {
		args := layout.controllerArgs(opts, c)
		ch, err := startChild(c.ID, args, env, filepath.Join(opts.Dir, c.ID+".log"), exits)
		if err != nil {
			fmt.Fprintf(stderr, "sibyl dev: %v\n", err)
			stopChildren(children)
			return exitFail
		}
		children = append(children, ch)
		cf.Controllers = append(cf.Controllers, clusterController{
			ID: c.ID, HTTP: c.HTTP, Raft: c.Raft, PID: ch.pid(), Location: c.Location, Args: args, Log: ch.log,
		})
		fmt.Fprintf(stdout, "started controller %s pid %d http %s raft %s (%s)\n", c.ID, ch.pid(), c.HTTP, c.Raft, c.Location)
	}
	for _, n := range layout.Nodes {
		args := nodeArgs(opts, n)
		name := nodeName(n)
		ch, err := startChild(name, args, env, filepath.Join(opts.Dir, name+".log"), exits)
		if err != nil {
			fmt.Fprintf(stderr, "sibyl dev: %v\n", err)
			stopChildren(children)
			return exitFail
		}
		children = append(children, ch)
		cf.Nodes = append(cf.Nodes, clusterNode{
			ID: n.ID, HTTP: n.HTTP, PID: ch.pid(), Location: n.Location, Args: args, Log: ch.log,
		})
		fmt.Fprintf(stdout, "started node %d pid %d http %s (%s)\n", n.ID, ch.pid(), n.HTTP, n.Location)
	}

	if n := len(layout.locationNames()); n > 1 {
		fmt.Fprintf(stdout, "waiting up to %s for every node to serve, every group to have a main and each of the %d locations to reach the others...\n", readyTimeout, n)
	} else {
		fmt.Fprintf(stdout, "waiting up to %s for every node to serve and every group to have a main...\n", readyTimeout)
	}
	if err := waitReady(ctx, layout, opts.ClusterSecret, clientTLS, exits); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stdout, "sibyl dev: interrupted while starting; stopping every process\n")
			stopChildren(children)
			return exitOK
		}
		fmt.Fprintf(stderr, "sibyl dev: cluster did not become ready: %v\n(logs in %s)\n", err, opts.Dir)
		stopChildren(children)
		return exitFail
	}
	printReady(stdout, layout, clientTLS, opts.AdminTokens, time.Since(startedAt))
	if err := writeClusterFile(clusterPath, cf); err != nil {
		fmt.Fprintf(stderr, "sibyl dev: %v\n", err)
		stopChildren(children)
		return exitFail
	}
	fmt.Fprintf(stdout, "wrote %s\ncluster ready; press Ctrl-C to stop it\n", clusterPath)

	// Serve until interrupted. A child that dies stays dead: killing one is how a crash is
	// simulated, and restarting it is the caller's move (its args are in cluster.json).
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintf(stdout, "sibyl dev: stopping every process\n")
			stopChildren(children)
			fmt.Fprintf(stdout, "sibyl dev: stopped\n")
			return exitOK
		case e := <-exits:
			if ctx.Err() != nil {
				// A terminal's Ctrl-C reaches the children too (they share dev's process
				// group); their exits are the shutdown, not crashes worth a line.
				continue
			}
			fmt.Fprintf(stdout, "%s (pid %d) %s; not restarting it (log: %s)\n", e.c.name, e.c.pid(), describeExit(e.err), e.c.log)
		}
	}
}

// printReady lists where to connect: ws:// and http:// URLs, or wss:// and https:// with
// TLS settings. With tokens on, the status pages' URLs carry the admin token (?token=),
// which the page needs and passes on to its stream.
func printReady(w io.Writer, layout devLayout, tlsConf *tls.Config, adminTokens []string, took time.Duration) {
	ws, web := tlsconf.Scheme(tlsConf, "ws"), tlsconf.Scheme(tlsConf, "http")
	page := "/"
	if len(adminTokens) > 0 {
		page = "/?token=" + url.QueryEscape(adminTokens[0])
	}
	fmt.Fprintf(w, "cluster ready after %s\n", took.Round(10*time.Millisecond))
	for _, n := range layout.Nodes {
		fmt.Fprintf(w, "  node %-3d websocket %s://%s/v1/ws  status page %s://%s%s\n", n.ID, ws, n.HTTP, web, n.HTTP, page)
	}
	for _, c := range layout.Controllers {
		fmt.Fprintf(w, "  controller %-3s status page %s://%s%s  (%s)\n", c.ID, web, c.HTTP, page, c.Location)
	}
}

// writeDevTLS makes the CA and every process's certificate of a dev cluster under
// dir/tls/ (tlsconf.WriteDev), named by controller ID and nodeName.
func writeDevTLS(dir string, layout devLayout) (map[string]tlsconf.Files, error) {
	var names []string
	for _, c := range layout.Controllers {
		names = append(names, c.ID)
	}
	for _, n := range layout.Nodes {
		names = append(names, nodeName(n))
	}
	return tlsconf.WriteDev(filepath.Join(dir, "tls"), names)
}

// devCA is the CA every certificate of files verifies with (they share one).
func devCA(files map[string]tlsconf.Files) string {
	for _, f := range files {
		return f.CA
	}
	return ""
}
