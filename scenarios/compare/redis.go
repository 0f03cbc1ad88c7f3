package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisMaster is the name the sentinels monitor the master under.
const redisMaster = "compare"

// redisDownAfter is the sentinels' down-after-milliseconds: how long a master must not
// answer before it is considered down. Sibyl's --down-after and etcd's election timeout
// are 1 s by default; Redis's default of 30 s would dominate its gap.
const redisDownAfter = 1000

// redisReadyTimeout bounds the wait for replication and the sentinels to be in place.
const redisReadyTimeout = 60 * time.Second

// redisStopGrace is how long a Redis process has to stop after SIGTERM.
const redisStopGrace = 5 * time.Second

// redisPoolSize is far above any writer count: go-redis stops dialling after PoolSize
// failed dials and then probes once a second, which would add that second to the
// failover gap instead of measuring Redis.
const redisPoolSize = 1 << 17

// redisSystem runs one master and two replicas (AOF with fsync on every write) and three
// sentinels.
type redisSystem struct{ env *env }

type redisProc struct {
	name string
	port int
	proc *proc
}

type redisCluster struct {
	sys       *redisSystem
	dir       string
	servers   []*redisProc // servers[0] starts as the master
	sentinels []*redisProc
}

type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...interface{}) {}

var silenceRedis sync.Once

func (s *redisSystem) name() string { return sysRedis }

func (s *redisSystem) start(ctx context.Context, dir string) (cluster, error) {
	// go-redis logs every failed dial of a failover.
	silenceRedis.Do(func() { redis.SetLogger(quietRedisLog{}) })
	base := s.env.cfg.BasePort + redisPortOffset
	c := &redisCluster{sys: s, dir: dir}
	var ports []namedPort
	for i := 1; i <= 3; i++ {
		c.servers = append(c.servers, &redisProc{name: fmt.Sprintf("redis%d", i), port: base + i})
		c.sentinels = append(c.sentinels, &redisProc{name: fmt.Sprintf("sentinel%d", i), port: base + 10 + i})
		ports = append(ports, namedPort{base + i, fmt.Sprintf("redis server %d", i)}, namedPort{base + 10 + i, fmt.Sprintf("redis sentinel %d", i)})
	}
	if err := checkPortsFree(ports); err != nil {
		return nil, err
	}
	for i, r := range c.servers {
		rdir := filepath.Join(dir, r.name)
		if err := os.MkdirAll(rdir, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", rdir, err)
		}
		conf := redisServerConf(r.port, rdir)
		if i > 0 {
			conf += fmt.Sprintf("replicaof %s %d\n", host, c.servers[0].port)
		}
		if err := c.startProc(r, conf, false); err != nil {
			c.stop()
			return nil, err
		}
	}
	if err := c.waitReplicas(ctx); err != nil {
		c.stop()
		return nil, err
	}
	for _, r := range c.sentinels {
		rdir := filepath.Join(dir, r.name)
		if err := os.MkdirAll(rdir, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", rdir, err)
		}
		if err := c.startProc(r, redisSentinelConf(r.port, rdir, c.servers[0].port), true); err != nil {
			c.stop()
			return nil, err
		}
	}
	if err := c.waitSentinels(ctx); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// redisServerConf is a server's configuration: the AOF fsynced on every write, no RDB
// snapshots, replicas synced without waiting for others.
func redisServerConf(port int, dir string) string {
	return fmt.Sprintf(`bind %s
port %d
dir %s
daemonize no
logfile ""
appendonly yes
appendfsync always
save ""
repl-diskless-sync-delay 0
`, host, port, dir)
}

// redisSentinelConf is a sentinel's configuration (the sentinel rewrites its file).
func redisSentinelConf(port int, dir string, masterPort int) string {
	return fmt.Sprintf(`bind %s
port %d
dir %s
daemonize no
logfile ""
sentinel monitor %s %s %d 2
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 1
`, host, port, dir, redisMaster, host, masterPort, redisMaster, redisDownAfter, redisMaster, redisMaster)
}

// startProc writes r's configuration into its directory and starts it.
func (c *redisCluster) startProc(r *redisProc, conf string, sentinel bool) error {
	rdir := filepath.Join(c.dir, r.name)
	confPath := filepath.Join(rdir, r.name+".conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", confPath, err)
	}
	bins := c.sys.env.bins
	args := []string{bins.RedisServer, confPath}
	switch {
	case sentinel && bins.RedisSentinel != "":
		args = []string{bins.RedisSentinel, confPath}
	case sentinel:
		args = append(args, "--sentinel")
	}
	p, err := c.sys.env.procs.start(r.name, args, rdir, filepath.Join(rdir, r.name+".log"))
	if err != nil {
		return err
	}
	r.proc = p
	return nil
}

func (c *redisCluster) procs() []*proc {
	var ps []*proc
	for _, r := range append(append([]*redisProc(nil), c.servers...), c.sentinels...) {
		if r.proc != nil {
			ps = append(ps, r.proc)
		}
	}
	return ps
}

// waitReplicas waits until the master lists both replicas online.
func (c *redisCluster) waitReplicas(ctx context.Context) error {
	master := redis.NewClient(&redis.Options{Addr: hostPort(c.servers[0].port), MaxRetries: -1, DisableIdentity: true})
	defer master.Close()
	return waitFor(ctx, redisReadyTimeout, "both Redis replicas to be online", c.procs(), func(ctx context.Context) error {
		info, err := master.Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("INFO replication at %s: %w", hostPort(c.servers[0].port), err)
		}
		if n := strings.Count(info, "state=online"); n != 2 {
			return fmt.Errorf("master at %s has %d replicas online, want 2", hostPort(c.servers[0].port), n)
		}
		return nil
	})
}

// waitSentinels waits until every sentinel knows both replicas and the other two
// sentinels, and a write through the sentinels is acknowledged by a replica.
func (c *redisCluster) waitSentinels(ctx context.Context) error {
	for _, s := range c.sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: hostPort(s.port), MaxRetries: -1, DisableIdentity: true})
		err := waitFor(ctx, redisReadyTimeout, s.name+" to see 2 replicas and 2 other sentinels", c.procs(), func(ctx context.Context) error {
			m, err := sc.Master(ctx, redisMaster).Result()
			if err != nil {
				return fmt.Errorf("SENTINEL MASTER %s at %s: %w", redisMaster, hostPort(s.port), err)
			}
			if m["num-slaves"] != "2" || m["num-other-sentinels"] != "2" {
				return fmt.Errorf("%s sees %s replicas and %s other sentinels", s.name, m["num-slaves"], m["num-other-sentinels"])
			}
			return nil
		})
		sc.Close()
		if err != nil {
			return err
		}
	}
	rdb := c.newClient(1)
	defer rdb.Close()
	w := c.writer(rdb, "compare:ready")
	return waitFor(ctx, redisReadyTimeout, "a write through the sentinels", c.procs(), w)
}

// newClient is a FailoverClient: it finds the master through the sentinels and follows a
// failover; it never retries a write itself.
func (c *redisCluster) newClient(writers int) *redis.Client {
	cfg := c.sys.env.cfg
	var sentinels []string
	for _, s := range c.sentinels {
		sentinels = append(sentinels, hostPort(s.port))
	}
	return redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:            redisMaster,
		SentinelAddrs:         sentinels,
		MaxRetries:            -1,
		DialTimeout:           cfg.OpTimeout,
		DialerRetries:         1,
		ReadTimeout:           cfg.OpTimeout,
		WriteTimeout:          cfg.OpTimeout,
		ContextTimeoutEnabled: true,
		PoolSize:              redisPoolSize,
		PoolTimeout:           cfg.OpTimeout,
		MaxIdleConns:          writers,
		PipelinePoolSize:      -1,
		DisableIdentity:       true,
	})
}

// waitMs is WAIT's timeout: half a write's bound, so that WAIT answers before the client
// gives up on it.
func (c *redisCluster) waitMs() int64 { return c.sys.env.cfg.OpTimeout.Milliseconds() / 2 }

// writer is SET key then WAIT 1 on one connection; a write succeeds once a replica
// acknowledged it.
func (c *redisCluster) writer(rdb *redis.Client, key string) writer {
	val := payload(c.sys.env.cfg.Size)
	waitMs := c.waitMs()
	return func(ctx context.Context) error {
		var wait *redis.Cmd
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, key, val, 0)
			wait = p.Do(ctx, "WAIT", 1, waitMs)
			return nil
		})
		if err != nil {
			return err
		}
		n, err := wait.Int64()
		if err != nil {
			return fmt.Errorf("WAIT 1 %d: %w", waitMs, err)
		}
		if n < 1 {
			return fmt.Errorf("WAIT 1 %d: no replica acknowledged", waitMs)
		}
		return nil
	}
}

func (c *redisCluster) writers(rdb *redis.Client, n int) []writer {
	var ws []writer
	for i := 0; i < n; i++ {
		ws = append(ws, c.writer(rdb, fmt.Sprintf("compare:%d", i)))
	}
	return ws
}

func (c *redisCluster) load(ctx context.Context, clients int) (loadResult, error) {
	rdb := c.newClient(clients)
	defer rdb.Close()
	cfg := c.sys.env.cfg
	res, err := runLoad(ctx, c.writers(rdb, clients), cfg.Warmup, cfg.Duration, cfg.OpTimeout)
	if err == nil {
		for _, p := range c.procs() {
			if p.exited() {
				return res, p.exitError()
			}
		}
	}
	return res, err
}

// failover kills the server the sentinels name as master.
func (c *redisCluster) failover(ctx context.Context) (failoverResult, error) {
	cfg := c.sys.env.cfg
	victim, err := c.master(ctx)
	if err != nil {
		return failoverResult{}, err
	}
	rdb := c.newClient(cfg.FailoverClients)
	defer rdb.Close()
	fmt.Fprintf(c.sys.env.progress, "  killing %s (pid %d, port %d), the master, after %s\n", victim.name, victim.proc.pid(), victim.port, cfg.Warmup)
	res, err := measureGap(ctx, c.writers(rdb, cfg.FailoverClients), cfg.Warmup, cfg.FailoverWait, cfg.OpTimeout, func() error {
		if err := syscall.Kill(victim.proc.pid(), syscall.SIGKILL); err != nil {
			return fmt.Errorf("kill -9 %s (pid %d): %w", victim.name, victim.proc.pid(), err)
		}
		return nil
	})
	res.Victim = victim.name + " (master)"
	return res, err
}

// master returns the server the first sentinel names as master.
func (c *redisCluster) master(ctx context.Context) (*redisProc, error) {
	s := c.sentinels[0]
	sc := redis.NewSentinelClient(&redis.Options{Addr: hostPort(s.port), MaxRetries: -1, DisableIdentity: true})
	defer sc.Close()
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addr, err := sc.GetMasterAddrByName(qctx, redisMaster).Result()
	if err != nil {
		return nil, fmt.Errorf("SENTINEL get-master-addr-by-name %s at %s: %w", redisMaster, hostPort(s.port), err)
	}
	if len(addr) != 2 {
		return nil, fmt.Errorf("SENTINEL get-master-addr-by-name %s at %s: answer %q", redisMaster, hostPort(s.port), addr)
	}
	port, err := strconv.Atoi(addr[1])
	if err != nil {
		return nil, fmt.Errorf("SENTINEL get-master-addr-by-name %s: port %q: %w", redisMaster, addr[1], err)
	}
	for _, r := range c.servers {
		if r.port == port {
			return r, nil
		}
	}
	return nil, errors.New("the master the sentinels name, " + strings.Join(addr, ":") + ", is none of the servers started")
}

func (c *redisCluster) stop() {
	ps := c.procs()
	for _, p := range ps {
		if !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range ps {
		p.stop(syscall.SIGTERM, redisStopGrace)
	}
}
