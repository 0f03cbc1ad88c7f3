package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// The systems, in table order.
const (
	sysSibyl = "sibyl"
	sysEtcd  = "etcd"
	sysRedis = "redis"
)

var allSystems = []string{sysSibyl, sysEtcd, sysRedis}

// displayName is a system's column title.
func displayName(sys string) string {
	switch sys {
	case sysSibyl:
		return "Sibyl"
	case sysEtcd:
		return "etcd"
	case sysRedis:
		return "Redis"
	}
	return sys
}

// config is a parsed command line.
type config struct {
	Systems         []string
	Clients         []int
	Duration        time.Duration
	Warmup          time.Duration
	Size            int
	OpTimeout       time.Duration
	FailoverRuns    int
	FailoverClients int
	FailoverWait    time.Duration
	SkipFailover    bool
	BasePort        int
	SibylBin        string
	Repo            string
	JSONPath        string
	Keep            bool
}

// errHelp is returned by parseFlags for -h: the usage went to the output, exit 0.
var errHelp = errors.New("help requested")

func parseFlags(args []string, out io.Writer) (config, error) {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "usage: go run . [flags]\n\nCompares Sibyl, etcd and Redis on 127.0.0.1, one system at a time.\n\nflags:\n")
		fs.PrintDefaults()
	}
	var c config
	only := fs.String("only", strings.Join(allSystems, ","), "systems to run, comma-separated: sibyl, etcd, redis")
	clients := fs.String("clients", "1,16,64", "client counts to measure writes at, comma-separated")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured time per client count")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "time run before each measured window (also the writing time before a failover kill)")
	fs.IntVar(&c.Size, "size", 256, "bytes of each written value")
	fs.DurationVar(&c.OpTimeout, "op-timeout", 2*time.Second, "bound on one etcd or Redis write, and on one Sibyl write of the failover run")
	fs.IntVar(&c.FailoverRuns, "failover-runs", 3, "failover runs per system (each on a fresh cluster but the first); the table shows the median gap")
	fs.IntVar(&c.FailoverClients, "failover-clients", 16, "writers during a failover run")
	fs.DurationVar(&c.FailoverWait, "failover-wait", 30*time.Second, "how long to wait for writes to resume after the kill")
	fs.BoolVar(&c.SkipFailover, "skip-failover", false, "measure only writes/s and latency")
	fs.IntVar(&c.BasePort, "base-port", 4000, "ports: Sibyl dev at base (controllers base+1.., nodes base+101..), etcd at base+300, Redis at base+600")
	fs.StringVar(&c.SibylBin, "sibyl", "", "sibyl binary to use (default: build ../../cmd/sibyl)")
	fs.StringVar(&c.Repo, "repo", "../..", "root of the Sibyl repository, to build the sibyl binary from")
	fs.StringVar(&c.JSONPath, "json", "", "also write the raw figures to this file as JSON")
	fs.BoolVar(&c.Keep, "keep", false, "keep the temporary directory (data dirs and logs)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, errHelp
		}
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if c.Systems, err = parseSystems(*only); err != nil {
		return c, fmt.Errorf("--only %q: %w", *only, err)
	}
	if c.Clients, err = parseClients(*clients); err != nil {
		return c, fmt.Errorf("--clients %q: %w", *clients, err)
	}
	switch {
	case c.Duration <= 0:
		return c, fmt.Errorf("--duration %s: want > 0", c.Duration)
	case c.Warmup < 0:
		return c, fmt.Errorf("--warmup %s: want >= 0", c.Warmup)
	case c.Size < 0:
		return c, fmt.Errorf("--size %d: want >= 0", c.Size)
	case c.OpTimeout < 10*time.Millisecond:
		return c, fmt.Errorf("--op-timeout %s: want at least 10ms", c.OpTimeout)
	case c.FailoverRuns < 1 && !c.SkipFailover:
		return c, fmt.Errorf("--failover-runs %d: want at least 1 (or --skip-failover)", c.FailoverRuns)
	case c.FailoverClients < 1:
		return c, fmt.Errorf("--failover-clients %d: want at least 1", c.FailoverClients)
	case c.FailoverWait < time.Second:
		return c, fmt.Errorf("--failover-wait %s: want at least 1s", c.FailoverWait)
	case c.BasePort < 1024 || c.BasePort+700 > 65535:
		return c, fmt.Errorf("--base-port %d: want 1024..%d", c.BasePort, 65535-700)
	}
	return c, nil
}

// parseSystems reads a comma-separated list of systems and returns it in table order,
// without repeats.
func parseSystems(s string) ([]string, error) {
	want := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "" {
			continue
		}
		known := false
		for _, sys := range allSystems {
			known = known || f == sys
		}
		if !known {
			return nil, fmt.Errorf("unknown system %q (want sibyl, etcd or redis)", f)
		}
		want[f] = true
	}
	var out []string
	for _, sys := range allSystems {
		if want[sys] {
			out = append(out, sys)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no system chosen")
	}
	return out, nil
}

// parseClients reads a comma-separated list of positive client counts, keeping their
// order and dropping repeats.
func parseClients(s string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 4096 {
			return nil, fmt.Errorf("%q: want a client count in 1..4096", f)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no client count given")
	}
	return out, nil
}
