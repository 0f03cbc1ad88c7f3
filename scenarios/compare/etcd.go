package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/grpclog"
)

// etcdReadyTimeout bounds the wait for a new etcd cluster to elect a leader and take a
// write.
const etcdReadyTimeout = 60 * time.Second

// etcdStopGrace is how long an etcd member has to stop after SIGTERM.
const etcdStopGrace = 5 * time.Second

// etcdSystem runs 3 etcd members with default settings (fsync on every commit, 100 ms
// heartbeat, 1 s election timeout).
type etcdSystem struct{ env *env }

type etcdMember struct {
	name      string
	clientURL string
	peerURL   string
	proc      *proc
}

type etcdCluster struct {
	sys     *etcdSystem
	dir     string
	members []*etcdMember
}

var silenceGRPC sync.Once

func (s *etcdSystem) name() string { return sysEtcd }

func (s *etcdSystem) start(ctx context.Context, dir string) (cluster, error) {
	// The client's reconnection messages during a failover would flood the progress output.
	silenceGRPC.Do(func() { grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard)) })
	base := s.env.cfg.BasePort + etcdPortOffset
	c := &etcdCluster{sys: s, dir: dir}
	var ports []namedPort
	var initial []string
	for i := 1; i <= 3; i++ {
		m := &etcdMember{name: fmt.Sprintf("m%d", i), clientURL: "http://" + hostPort(base+i), peerURL: "http://" + hostPort(base+10+i)}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
		ports = append(ports, namedPort{base + i, "etcd " + m.name + " client"}, namedPort{base + 10 + i, "etcd " + m.name + " peer"})
	}
	if err := checkPortsFree(ports); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	for _, m := range c.members {
		args := []string{s.env.bins.Etcd,
			"--name", m.name,
			"--data-dir", filepath.Join(dir, m.name),
			"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "sibyl-compare",
			"--logger", "zap", "--log-level", "warn",
		}
		p, err := s.env.procs.start("etcd "+m.name, args, dir, filepath.Join(dir, m.name+".log"))
		if err != nil {
			c.stop()
			return nil, err
		}
		m.proc = p
	}
	if err := c.waitReady(ctx); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *etcdCluster) endpoints(first int) []string {
	var eps []string
	for j := range c.members {
		eps = append(eps, c.members[(first+j)%len(c.members)].clientURL)
	}
	return eps
}

func (c *etcdCluster) procs() []*proc {
	var ps []*proc
	for _, m := range c.members {
		ps = append(ps, m.proc)
	}
	return ps
}

func newEtcdClient(endpoints []string, dialTimeout time.Duration) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: dialTimeout, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %v: %w", endpoints, err)
	}
	return cli, nil
}

// waitReady waits until every member reports a leader and a Put succeeds.
func (c *etcdCluster) waitReady(ctx context.Context) error {
	return waitFor(ctx, etcdReadyTimeout, "etcd members to elect a leader and take a write", c.procs(), func(ctx context.Context) error {
		cli, err := newEtcdClient(c.endpoints(0), time.Second)
		if err != nil {
			return err
		}
		defer cli.Close()
		if _, err := c.leader(ctx, cli); err != nil {
			return err
		}
		if _, err := cli.Put(ctx, "compare/ready", "1"); err != nil {
			return fmt.Errorf("put compare/ready: %w", err)
		}
		return nil
	})
}

// leader asks every member for its status and returns the member all of them name as
// leader.
func (c *etcdCluster) leader(ctx context.Context, cli *clientv3.Client) (*etcdMember, error) {
	byID := map[uint64]*etcdMember{}
	var leaders []uint64
	for _, m := range c.members {
		st, err := cli.Status(ctx, m.clientURL)
		if err != nil {
			return nil, fmt.Errorf("status of etcd %s at %s: %w", m.name, m.clientURL, err)
		}
		byID[st.Header.MemberId] = m
		leaders = append(leaders, st.Leader)
	}
	for _, l := range leaders {
		if l == 0 || l != leaders[0] {
			return nil, fmt.Errorf("etcd members disagree on the leader or have none: %x", leaders)
		}
	}
	m, ok := byID[leaders[0]]
	if !ok {
		return nil, fmt.Errorf("etcd leader %x is not one of the members", leaders[0])
	}
	return m, nil
}

// writers makes n clients, client i trying the members starting at member i mod 3, each
// writing its own key.
func (c *etcdCluster) writers(n int) ([]writer, func(), error) {
	cfg := c.sys.env.cfg
	var clients []*clientv3.Client
	closeAll := func() {
		for _, cli := range clients {
			cli.Close()
		}
	}
	val := string(payload(cfg.Size))
	var ws []writer
	for i := 0; i < n; i++ {
		cli, err := newEtcdClient(c.endpoints(i), 5*time.Second)
		if err != nil {
			return nil, closeAll, err
		}
		clients = append(clients, cli)
		key := fmt.Sprintf("compare/%d", i)
		ws = append(ws, func(ctx context.Context) error {
			_, err := cli.Put(ctx, key, val)
			return err
		})
	}
	return ws, closeAll, nil
}

func (c *etcdCluster) load(ctx context.Context, clients int) (loadResult, error) {
	ws, closeAll, err := c.writers(clients)
	defer closeAll()
	if err != nil {
		return loadResult{}, err
	}
	cfg := c.sys.env.cfg
	res, err := runLoad(ctx, ws, cfg.Warmup, cfg.Duration, cfg.OpTimeout)
	if err == nil {
		err = c.checkAlive()
	}
	return res, err
}

func (c *etcdCluster) checkAlive() error {
	for _, m := range c.members {
		if m.proc.exited() {
			return m.proc.exitError()
		}
	}
	return nil
}

// failover kills the member every member names as leader.
func (c *etcdCluster) failover(ctx context.Context) (failoverResult, error) {
	cfg := c.sys.env.cfg
	ws, closeAll, err := c.writers(cfg.FailoverClients)
	defer closeAll()
	if err != nil {
		return failoverResult{}, err
	}
	cli, err := newEtcdClient(c.endpoints(0), 2*time.Second)
	if err != nil {
		return failoverResult{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	victim, err := c.leader(sctx, cli)
	cancel()
	cli.Close()
	if err != nil {
		return failoverResult{}, err
	}
	fmt.Fprintf(c.sys.env.progress, "  killing etcd %s (pid %d), the leader, after %s\n", victim.name, victim.proc.pid(), cfg.Warmup)
	res, err := measureGap(ctx, ws, cfg.Warmup, cfg.FailoverWait, cfg.OpTimeout, func() error {
		if err := syscall.Kill(victim.proc.pid(), syscall.SIGKILL); err != nil {
			return fmt.Errorf("kill -9 etcd %s (pid %d): %w", victim.name, victim.proc.pid(), err)
		}
		return nil
	})
	res.Victim = "etcd " + victim.name + " (leader)"
	return res, err
}

func (c *etcdCluster) stop() {
	for _, m := range c.members {
		if m.proc != nil && !m.proc.exited() {
			_ = m.proc.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, m := range c.members {
		if m.proc != nil {
			m.proc.stop(syscall.SIGTERM, etcdStopGrace)
		}
	}
}
