package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// benchConfig is a parsed bench command line.
type benchConfig struct {
	Addrs    []string
	Clients  int
	Duration time.Duration
	Warmup   time.Duration
	Size     int
	Workload string
	Token    string
	// TLS verifies the nodes' certificates (--tls-ca, or the CA cluster.json names); nil:
	// plaintext.
	TLS  *tls.Config
	JSON bool
	// NoRouting makes each worker send its writes to the node it connects to, which
	// forwards them when it is not the resource's main.
	NoRouting bool
	// NodePIDs are the node processes whose cost the result reports (benchcost.go): those
	// of --cluster's cluster.json; none with --addr.
	NodePIDs []int
}

// errorBackoff keeps a worker whose requests fail at once (a node down) from spinning.
const errorBackoff = 10 * time.Millisecond

func runBench(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench", "bench [--addr A,B,...] [--clients 64] [--duration 10s] [--size 256] [--workload writes|reads|mixed] [--warmup 2s] [--json] [--no-routing] [--cpuprofile FILE]", stderr)
	addr := fs.String("addr", "", "nodes, host:port comma-separated; clients are spread over them round-robin (default: --cluster's nodes, else 127.0.0.1:7801..7804)")
	clusterPath := fs.String("cluster", "", "cluster.json written by sibyl dev, to take the node addresses from")
	token := fs.String("token", "", "bearer token")
	clients := fs.Int("clients", 64, "concurrent clients, each with its own connection and resource")
	duration := fs.Duration("duration", 10*time.Second, "measured time, after the warmup")
	warmup := fs.Duration("warmup", 2*time.Second, "time run but not measured")
	size := fs.Int("size", 256, "bytes of the string field written by each update")
	workload := fs.String("workload", "writes", "writes (updates), reads (linearizable gets) or mixed (50/50)")
	asJSON := fs.Bool("json", false, "also print the result as one JSON object")
	tlsCA := fs.String("tls-ca", "", tlsCAUsage+" (default: the CA --cluster's cluster.json names)")
	noRouting := fs.Bool("no-routing", false, "send every request to the node the client connects to, which forwards it to the resource's main (default: straight to the main)")
	cpuProfile := fs.String("cpuprofile", "", "write the bench client's own CPU profile (pprof) to this file")
	pos, code, ok := parseOrExit(fs, args, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(fs, stderr, "unexpected arguments %q", pos)
	}
	cfg := benchConfig{Clients: *clients, Duration: *duration, Warmup: *warmup, Size: *size,
		Workload: *workload, Token: *token, JSON: *asJSON, NoRouting: *noRouting}
	switch {
	case cfg.Clients < 1:
		return usageError(fs, stderr, "--clients %d: want at least 1", cfg.Clients)
	case cfg.Duration <= 0 || cfg.Warmup < 0:
		return usageError(fs, stderr, "--duration %s, --warmup %s: want a positive duration and a warmup >= 0", cfg.Duration, cfg.Warmup)
	case cfg.Size < 0:
		return usageError(fs, stderr, "--size %d: want >= 0", cfg.Size)
	case cfg.Workload != "writes" && cfg.Workload != "reads" && cfg.Workload != "mixed":
		return usageError(fs, stderr, "--workload %q: want writes, reads or mixed", cfg.Workload)
	}
	var err error
	if cfg.Addrs, err = benchAddrs(*addr, *clusterPath); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if *clusterPath != "" {
		if cf, err := readClusterFile(*clusterPath); err == nil {
			if *tlsCA == "" && cf.TLS != nil {
				*tlsCA = cf.TLS.CA
			}
			if *addr == "" {
				for _, n := range cf.Nodes {
					cfg.NodePIDs = append(cfg.NodePIDs, n.PID)
				}
			}
		}
	}
	if cfg.TLS, err = clientTLS(*tlsCA); err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return usageError(fs, stderr, "--cpuprofile: %v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return usageError(fs, stderr, "--cpuprofile %s: %v", *cpuProfile, err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench(ctx, cfg, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "sibyl bench: %v\n", err)
		return exitFail
	}
	printBenchResult(stdout, res)
	if cfg.JSON {
		b, _ := json.Marshal(res)
		fmt.Fprintf(stdout, "%s\n", b)
	}
	return exitOK
}

// benchAddrs picks the node addresses: --addr, else the nodes of --cluster, else the
// nodes of a default dev cluster.
func benchAddrs(addr, clusterPath string) ([]string, error) {
	var out []string
	switch {
	case addr != "":
		for _, a := range strings.Split(addr, ",") {
			if a = strings.TrimSpace(a); a != "" {
				out = append(out, a)
			}
		}
	case clusterPath != "":
		cf, err := readClusterFile(clusterPath)
		if err != nil {
			return nil, fmt.Errorf("--cluster: %w", err)
		}
		for _, n := range cf.Nodes {
			out = append(out, n.HTTP)
		}
	default:
		for i := 1; i <= 4; i++ {
			out = append(out, devHost+":"+strconv.Itoa(7700+nodePortOffset+i))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no node addresses to benchmark (--addr %q, --cluster %q)", addr, clusterPath)
	}
	return out, nil
}

// benchWorker is one client: its connection, its resource and its own counters, which
// only it touches until the run ends.
type benchWorker struct {
	c      *client.Client
	addr   string
	rid    string
	hist   latencyHist
	errors map[string]uint64
}

// bench sets up every worker (connect, create its resource), then runs the workload for
// warmup + duration and returns the merged result of the measured part.
func bench(ctx context.Context, cfg benchConfig, progress io.Writer) (benchResult, error) {
	res := benchResult{Workload: cfg.Workload, Clients: cfg.Clients, Size: cfg.Size, Errors: map[string]uint64{}}
	workers := make([]*benchWorker, cfg.Clients)
	defer func() {
		for _, w := range workers {
			if w != nil && w.c != nil {
				w.c.Close()
			}
		}
	}()
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	fmt.Fprintf(progress, "bench: %d clients over %v, workload %s, %d-byte values\n", cfg.Clients, cfg.Addrs, cfg.Workload, cfg.Size)
	if err := setupWorkers(setupCtx, cfg, workers); err != nil {
		return res, err
	}

	var measuredOps atomic.Uint64
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	runCtx, stopRun := context.WithDeadline(ctx, end)
	defer stopRun()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(runCtx, cfg, measureFrom, end, &measuredOps)
		}()
	}
	fromSample := make(chan costSample, 1)
	if len(cfg.NodePIDs) > 0 {
		t := time.AfterFunc(time.Until(measureFrom), func() {
			if s, ok := readCostSample(cfg.NodePIDs); ok {
				fromSample <- s
			}
		})
		defer t.Stop()
	}
	reportProgress(runCtx, progress, start, measureFrom, &measuredOps)
	wg.Wait()
	var toSample costSample
	toOK := false
	if len(cfg.NodePIDs) > 0 {
		toSample, toOK = readCostSample(cfg.NodePIDs)
	}

	measured := time.Since(measureFrom)
	res.FromUnixNano, res.ToUnixNano = measureFrom.UnixNano(), min(time.Now().UnixNano(), end.UnixNano())
	if measured > cfg.Duration {
		measured = cfg.Duration
	}
	if measured < 0 {
		measured = 0
	}
	var all latencyHist
	for _, w := range workers {
		all.merge(&w.hist)
		for code, n := range w.errors {
			res.Errors[code] += n
		}
	}
	summarize(&res, &all, measured)
	if toOK {
		select {
		case from := <-fromSample:
			if c, ok := costOf(from, toSample, res.Ops); ok {
				res.Cost = &c
			}
		default:
		}
	}
	return res, nil
}

// setupWorkers connects each worker to one address, round-robin, and creates its
// resource there without naming a server, so it lands in a group the connected node is
// main of (its own, normally): the load spreads over one main per node. The client routes
// (unless NoRouting): each request goes straight to the main of the resource's group,
// also after that main moved, and through the connected node only while the client does
// not know the main yet or cannot reach it.
func setupWorkers(ctx context.Context, cfg benchConfig, workers []*benchWorker) error {
	errs := make([]error, len(workers))
	var wg sync.WaitGroup
	for i := range workers {
		w := &benchWorker{addr: cfg.Addrs[i%len(cfg.Addrs)], errors: map[string]uint64{}}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := client.Dial(ctx, client.Options{Addrs: []string{w.addr}, Token: cfg.Token, TLS: cfg.TLS, Seed: uint64(i + 1),
				NoRouting: cfg.NoRouting})
			if err != nil {
				errs[i] = fmt.Errorf("client %d: connect to %s: %w", i, w.addr, err)
				return
			}
			w.c = c
			req := &command.Request{Op: command.OpCreate, Type: "bench", Data: benchData(cfg.Size, 0)}
			rep, err := c.Do(ctx, req)
			if err != nil {
				errs[i] = fmt.Errorf("client %d: create its resource at %s: %w", i, w.addr, err)
				return
			}
			if rep.Resource == nil {
				errs[i] = fmt.Errorf("client %d: create at %s answered without a resource", i, w.addr)
				return
			}
			w.rid = rep.Resource.ID
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// benchValue is the data each write stores: a counter, so every update changes the
// resource, and a padding string of the requested size.
type benchValue struct {
	N   uint64 `json:"n"`
	Pad string `json:"pad"`
}

func benchData(size int, n uint64) json.RawMessage {
	return appendBenchData(nil, n, strings.Repeat("x", size))
}

// appendBenchData appends the JSON of benchValue{n, pad} as json.Marshal writes it; pad
// is all 'x', which needs no escaping.
func appendBenchData(buf []byte, n uint64, pad string) []byte {
	buf = strconv.AppendUint(append(buf, `{"n":`...), n, 10)
	return append(append(append(buf, `,"pad":"`...), pad...), `"}`...)
}

// run is a worker's closed loop: one op at a time until ctx ends. Ops that finish inside
// the measured window count; mixed alternates writes and reads so it needs no random
// choice.
func (w *benchWorker) run(ctx context.Context, cfg benchConfig, measureFrom, end time.Time, measuredOps *atomic.Uint64) {
	pad := strings.Repeat("x", cfg.Size)
	var data []byte // reused: the client has encoded it into its frame once Do returns
	for i := uint64(1); ctx.Err() == nil; i++ {
		write := cfg.Workload == "writes" || (cfg.Workload == "mixed" && i%2 == 1)
		var req *command.Request
		if write {
			data = appendBenchData(data[:0], i, pad)
			req = &command.Request{Op: command.OpUpdate, RID: w.rid, Data: data}
		} else {
			req = &command.Request{Op: command.OpGet, RID: w.rid, Consistency: command.Linearizable}
		}
		t0 := time.Now()
		_, err := w.c.Do(ctx, req)
		t1 := time.Now()
		if ctx.Err() != nil {
			return // cut off by the end of the run: neither a success nor an error
		}
		inWindow := !t1.Before(measureFrom) && !t1.After(end)
		if err != nil {
			if inWindow {
				w.errors[string(command.CodeOf(err))]++
			}
			sleepCtx(ctx, errorBackoff)
			continue
		}
		if inWindow {
			w.hist.record(t1.Sub(t0))
			measuredOps.Add(1)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// reportProgress prints one line per second until ctx ends: the measured ops so far and
// the rate over the last second.
func reportProgress(ctx context.Context, w io.Writer, start, measureFrom time.Time, ops *atomic.Uint64) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last uint64
	lastAt := start
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if now.Before(measureFrom) {
				fmt.Fprintf(w, "  %4.0fs warmup\n", now.Sub(start).Seconds())
				lastAt = now
				continue
			}
			n := ops.Load()
			rate := float64(n-last) / now.Sub(lastAt).Seconds()
			fmt.Fprintf(w, "  %4.0fs ops %d  %.0f ops/s\n", now.Sub(start).Seconds(), n, rate)
			last, lastAt = n, now
		}
	}
}

func printBenchResult(w io.Writer, r benchResult) {
	fmt.Fprintf(w, "result: workload %s, %d clients, %d-byte values, %.1fs measured\n", r.Workload, r.Clients, r.Size, r.DurationSec)
	fmt.Fprintf(w, "  ops      %d (%.0f ops/s)\n", r.Ops, r.OpsPerSec)
	fmt.Fprintf(w, "  latency  p50 %.3fms  p99 %.3fms  p99.9 %.3fms  max %.3fms\n", r.P50Ms, r.P99Ms, r.P999Ms, r.MaxMs)
	if c := r.Cost; c != nil {
		fmt.Fprintf(w, "  cost     nodes %.1f µs CPU and %.2f KiB written per op, bench %.1f µs CPU per op, machine %.0f %% idle\n",
			c.NodeCPUMicros, c.NodeDiskKiB, c.BenchCPUMicros, c.MachineIdlePct)
	}
	if len(r.Errors) == 0 {
		fmt.Fprintf(w, "  errors   none\n")
		return
	}
	for _, code := range sortedCodes(r.Errors) {
		fmt.Fprintf(w, "  errors   %s: %d\n", code, r.Errors[code])
	}
}
