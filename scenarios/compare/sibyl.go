package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// sibylReadyTimeout bounds the wait for `sibyl dev` to write cluster.json (dev itself
// gives up after 60 s).
const sibylReadyTimeout = 90 * time.Second

// sibylStopGrace is how long `sibyl dev` has to stop its children after SIGINT.
const sibylStopGrace = 15 * time.Second

// sibylSystem runs `sibyl dev` (3 controllers, 4 nodes) and loads it with `sibyl bench`.
type sibylSystem struct {
	env *env
	bin string // set by main once built or found
}

func (s *sibylSystem) name() string { return sysSibyl }

func (s *sibylSystem) basePort() int { return s.env.cfg.BasePort + sibylPortOffset }

func (s *sibylSystem) ports() []namedPort {
	b := s.basePort()
	var ps []namedPort
	for i := 1; i <= 3; i++ {
		ps = append(ps, namedPort{b + i, fmt.Sprintf("sibyl controller %d", i)},
			namedPort{b + 50 + i, fmt.Sprintf("sibyl controller %d raft", i)})
	}
	for i := 1; i <= 4; i++ {
		ps = append(ps, namedPort{b + 100 + i, fmt.Sprintf("sibyl node %d", i)})
	}
	return ps
}

// devNode is a node as cluster.json describes it.
type devNode struct {
	ID   uint16 `json:"id"`
	HTTP string `json:"http"`
	PID  int    `json:"pid"`
}

type sibylCluster struct {
	sys   *sibylSystem
	dir   string
	dev   *proc
	nodes []devNode
}

func (s *sibylSystem) start(ctx context.Context, dir string) (cluster, error) {
	if err := checkPortsFree(s.ports()); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	args := []string{s.bin, "dev", "--data", dir, "--log-level", "warn", "--base-port", strconv.Itoa(s.basePort())}
	dev, err := s.env.procs.start("sibyl dev", args, dir, filepath.Join(dir, "dev.out"))
	if err != nil {
		return nil, err
	}
	c := &sibylCluster{sys: s, dir: dir, dev: dev}
	if err := c.waitReady(ctx); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// waitReady waits for cluster.json, which dev writes once every node serves and every
// group has a main, then checks that every node answers /healthz.
func (c *sibylCluster) waitReady(ctx context.Context) error {
	path := filepath.Join(c.dir, "cluster.json")
	err := waitFor(ctx, sibylReadyTimeout, "sibyl dev to write "+path, []*proc{c.dev}, func(context.Context) error {
		nodes, err := readDevNodes(path)
		if err != nil {
			return err
		}
		c.nodes = nodes
		return nil
	})
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	for _, n := range c.nodes {
		err := waitFor(ctx, 10*time.Second, fmt.Sprintf("sibyl node %d at %s to answer /healthz", n.ID, n.HTTP), []*proc{c.dev}, func(ctx context.Context) error {
			return getJSON(ctx, hc, "http://"+n.HTTP+"/healthz", nil)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// readDevNodes reads the nodes of the cluster.json that `sibyl dev` writes.
func readDevNodes(path string) ([]devNode, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cf struct {
		Nodes []devNode `json:"nodes"`
	}
	if err := json.Unmarshal(b, &cf); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	if len(cf.Nodes) == 0 {
		return nil, fmt.Errorf("%s lists no nodes", path)
	}
	for _, n := range cf.Nodes {
		if n.PID <= 0 || n.HTTP == "" {
			return nil, fmt.Errorf("%s: node %d has no pid or address", path, n.ID)
		}
	}
	return cf.Nodes, nil
}

// load runs `sibyl bench` against every node; each bench client creates its resource on
// the node it connects to, so the writes go to all four groups' mains.
func (c *sibylCluster) load(ctx context.Context, clients int) (loadResult, error) {
	cfg := c.sys.env.cfg
	args := []string{c.sys.bin, "bench", "--cluster", filepath.Join(c.dir, "cluster.json"),
		"--clients", strconv.Itoa(clients), "--duration", cfg.Duration.String(), "--warmup", cfg.Warmup.String(),
		"--size", strconv.Itoa(cfg.Size), "--json"}
	logPath := filepath.Join(c.dir, fmt.Sprintf("bench-%d.out", clients))
	timeout := cfg.Warmup + cfg.Duration + 2*time.Minute
	if err := c.sys.env.procs.run(ctx, "sibyl bench", args, c.dir, logPath, timeout); err != nil {
		return loadResult{}, err
	}
	out, err := os.ReadFile(logPath)
	if err != nil {
		return loadResult{}, fmt.Errorf("read sibyl bench output %s: %w", logPath, err)
	}
	res, err := parseBenchJSON(string(out))
	if err != nil {
		return loadResult{}, fmt.Errorf("sibyl bench output %s: %w", logPath, err)
	}
	if c.dev.exited() {
		return res, c.dev.exitError()
	}
	return res, nil
}

// parseBenchJSON decodes the last line of `sibyl bench --json`'s output that is a JSON
// object.
func parseBenchJSON(out string) (loadResult, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		line := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r loadResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return r, fmt.Errorf("decode %q: %w", line, err)
		}
		if r.Errors == nil {
			r.Errors = map[string]uint64{}
		}
		return r, nil
	}
	return loadResult{}, errors.New("no JSON result line")
}

// failover writes to the group of the first node through every node, and kills that
// group's main.
func (c *sibylCluster) failover(ctx context.Context) (failoverResult, error) {
	cfg := c.sys.env.cfg
	group := c.nodes[0].ID
	hc := &http.Client{Timeout: 2 * time.Second}
	var st command.Status
	if err := getJSON(ctx, hc, "http://"+c.nodes[0].HTTP+"/v1/status", &st); err != nil {
		return failoverResult{}, fmt.Errorf("read the status of node %d: %w", c.nodes[0].ID, err)
	}
	var main uint16
	for _, g := range st.Groups {
		if g.Server == group && g.Main != nil {
			main = *g.Main
		}
	}
	var victim *devNode
	for i := range c.nodes {
		if c.nodes[i].ID == main {
			victim = &c.nodes[i]
		}
	}
	if victim == nil {
		return failoverResult{}, fmt.Errorf("group %d has no main among the nodes of cluster.json (status says main %d)", group, main)
	}

	writers, closeAll, err := c.groupWriters(ctx, group, cfg.FailoverClients)
	defer closeAll()
	if err != nil {
		return failoverResult{}, err
	}
	fmt.Fprintf(c.sys.env.progress, "  killing node %d (pid %d), main of group %d, after %s\n", victim.ID, victim.PID, group, cfg.Warmup)
	res, err := measureGap(ctx, writers, cfg.Warmup, cfg.FailoverWait, cfg.OpTimeout, func() error {
		if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
			return fmt.Errorf("kill -9 node %d (pid %d): %w", victim.ID, victim.PID, err)
		}
		return nil
	})
	res.Victim = fmt.Sprintf("node %d (main of group %d)", victim.ID, group)
	return res, err
}

// groupWriters makes n clients, client i connecting to the nodes starting at node i mod
// 4, each with its own resource in group; a write is one update of it, sent once.
func (c *sibylCluster) groupWriters(ctx context.Context, group uint16, n int) ([]writer, func(), error) {
	cfg := c.sys.env.cfg
	var clients []*client.Client
	closeAll := func() {
		for _, cl := range clients {
			cl.Close()
		}
	}
	pad := string(payload(cfg.Size))
	data := func(i uint64) json.RawMessage {
		b, _ := json.Marshal(struct {
			N   uint64 `json:"n"`
			Pad string `json:"pad"`
		}{i, pad})
		return b
	}
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var writers []writer
	for i := 0; i < n; i++ {
		var addrs []string
		for j := range c.nodes {
			addrs = append(addrs, c.nodes[(i+j)%len(c.nodes)].HTTP)
		}
		cl, err := client.Dial(setupCtx, client.Options{Addrs: addrs, RequestTimeout: cfg.OpTimeout, Seed: uint64(i + 1)})
		if err != nil {
			return nil, closeAll, fmt.Errorf("sibyl client %d: connect to %s: %w", i, addrs[0], err)
		}
		clients = append(clients, cl)
		rep, err := cl.Create(setupCtx, "compare", data(0), client.WithServer(command.ServerID(group)))
		if err != nil {
			return nil, closeAll, fmt.Errorf("sibyl client %d: create a resource in group %d through %s: %w", i, group, addrs[0], err)
		}
		if rep.Resource == nil {
			return nil, closeAll, fmt.Errorf("sibyl client %d: create in group %d answered without a resource", i, group)
		}
		rid := rep.Resource.ID
		var seq uint64
		writers = append(writers, func(ctx context.Context) error {
			seq++
			_, err := cl.Do(ctx, &command.Request{Op: command.OpUpdate, RID: rid, Data: data(seq)})
			return err
		})
	}
	return writers, closeAll, nil
}

func (c *sibylCluster) stop() { c.dev.stop(syscall.SIGINT, sibylStopGrace) }

// getJSON GETs url, wants 200 and decodes the body into out (unless out is nil).
func getJSON(ctx context.Context, hc *http.Client, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("GET %s: read body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: decode: %w", url, err)
	}
	return nil
}
