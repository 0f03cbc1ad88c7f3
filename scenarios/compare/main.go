package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Exit codes.
const (
	exitOK          = 0
	exitFail        = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func main() {
	// Every child is started from this goroutine and gets SIGKILL when the thread that
	// started it ends: keep the goroutine on the main thread, which ends with the process.
	runtime.LockOSThread()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, errHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "compare: %v\n", err)
		return exitUsage
	}
	bins, err := findBinaries(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "compare: %v\n", err)
		return exitFail
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	root, err := os.MkdirTemp("", "sibyl-compare-")
	if err != nil {
		fmt.Fprintf(stderr, "compare: create a temporary directory under %s: %v\n", os.TempDir(), err)
		return exitFail
	}
	procs := &procSet{}
	defer func() {
		procs.killAll()
		if cfg.Keep {
			fmt.Fprintf(stderr, "compare: kept %s\n", root)
		} else if err := os.RemoveAll(root); err != nil {
			fmt.Fprintf(stderr, "compare: remove %s: %v\n", root, err)
		}
	}()
	fmt.Fprintf(stderr, "compare: working in %s\n", root)
	machine := readMachine(time.Now())
	e := &env{cfg: cfg, bins: bins, procs: procs, progress: stderr}

	sibylBin := bins.Sibyl
	if slices.Contains(cfg.Systems, sysSibyl) && sibylBin == "" {
		fmt.Fprintf(stderr, "compare: building sibyl from %s\n", cfg.Repo)
		if sibylBin, err = buildSibyl(ctx, procs, bins.Go, cfg.Repo, root); err != nil {
			fmt.Fprintf(stderr, "compare: %v\n", err)
			return exitFail
		}
	}

	results := map[string]*systemResult{}
	failed := false
	for _, sys := range cfg.Systems {
		s := newSystem(e, sys)
		if ss, ok := s.(*sibylSystem); ok {
			ss.bin = sibylBin
		}
		r := runSystem(ctx, e, s, filepath.Join(root, sys))
		results[sys] = r
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "compare: interrupted; stopping every process\n")
			return exitInterrupted
		}
		if r.Err != "" {
			failed = true
			fmt.Fprintf(stderr, "compare: %s: %s\n", displayName(sys), r.Err)
		}
		for _, l := range r.Loads {
			failed = failed || l.Err != ""
		}
		for _, f := range r.Failovers {
			failed = failed || f.Err != ""
		}
	}

	rows := tableRows(cfg.Clients, results, cfg.FailoverRuns, !cfg.SkipFailover)
	header := []string{
		fmt.Sprintf("Sibyl, etcd and Redis on 127.0.0.1: durable writes of %d-byte values, closed-loop clients", cfg.Size),
		fmt.Sprintf("date %s | nproc %d | CPU %s | %s", machine.Date, machine.NProc, machine.CPU, machine.OS),
		fmt.Sprintf("%s measured after %s warmup per client count; systems run one at a time (%s)", cfg.Duration, cfg.Warmup, strings.Join(cfg.Systems, ", ")),
	}
	if !cfg.SkipFailover {
		header = append(header, fmt.Sprintf("failover: %d writers, kill -9 of the leader/master/main after %s; gap = longest time without an acknowledged write after the kill", cfg.FailoverClients, cfg.Warmup))
	}
	fmt.Fprint(stdout, renderTable(header, rows, tableNotes(results)))
	if cfg.JSONPath != "" {
		if err := writeReport(cfg.JSONPath, newReport(machine, cfg, sibylBin, rows, results)); err != nil {
			fmt.Fprintf(stderr, "compare: %v\n", err)
			return exitFail
		}
	}
	if failed {
		return exitFail
	}
	return exitOK
}

// runSystem starts a cluster of s, measures writes at every client count, then runs the
// failover runs (the first on the same cluster, each other on a fresh one), and stops it.
func runSystem(ctx context.Context, e *env, s system, dir string) *systemResult {
	cfg := e.cfg
	name := displayName(s.name())
	r := &systemResult{System: s.name()}
	fmt.Fprintf(e.progress, "%s: starting a cluster\n", name)
	cl, err := s.start(ctx, filepath.Join(dir, "run1"))
	if err != nil {
		r.Err = fmt.Sprintf("start a cluster: %v", err)
		return r
	}
	defer func() {
		if cl != nil {
			cl.stop()
		}
	}()
	for _, n := range cfg.Clients {
		fmt.Fprintf(e.progress, "%s: %d clients, %s warmup + %s\n", name, n, cfg.Warmup, cfg.Duration)
		sampler := startHostSampler(100 * time.Millisecond)
		l, err := cl.load(ctx, n)
		samples := sampler.finish()
		if ctx.Err() != nil {
			r.Err = ctx.Err().Error()
			return r
		}
		l.Clients = n
		if err != nil {
			l.Err = err.Error()
			fmt.Fprintf(e.progress, "%s: %d clients failed: %v\n", name, n, err)
		} else {
			if cpu, disk, err := costPerOp(samples, time.Unix(0, l.FromUnixNano), time.Unix(0, l.ToUnixNano), l.Ops); err == nil {
				l.CPUUsPerOp, l.DiskKiBPerOp = cpu, disk
			} else {
				fmt.Fprintf(e.progress, "%s: %d clients: no machine cost: %v\n", name, n, err)
			}
			fmt.Fprintf(e.progress, "%s: %d clients: %.0f writes/s, p50 %.2f ms, p99 %.2f ms, %.0f µs CPU and %.1f KiB written per write, %d failed\n",
				name, n, l.OpsPerSec, l.P50Ms, l.P99Ms, l.CPUUsPerOp, l.DiskKiBPerOp, sumErrors(l.Errors))
		}
		r.Loads = append(r.Loads, l)
	}
	if cfg.SkipFailover {
		return r
	}
	for i := 0; i < cfg.FailoverRuns; i++ {
		if i > 0 {
			cl.stop()
			fmt.Fprintf(e.progress, "%s: starting a fresh cluster for failover run %d\n", name, i+1)
			if cl, err = s.start(ctx, filepath.Join(dir, fmt.Sprintf("run%d", i+1))); err != nil {
				cl = nil
				if ctx.Err() != nil {
					r.Err = ctx.Err().Error()
					return r
				}
				r.Failovers = append(r.Failovers, failoverResult{Err: fmt.Sprintf("start a cluster: %v", err)})
				return r
			}
		}
		fmt.Fprintf(e.progress, "%s: failover run %d of %d, %d writers\n", name, i+1, cfg.FailoverRuns, cfg.FailoverClients)
		f, err := cl.failover(ctx)
		if ctx.Err() != nil {
			r.Err = ctx.Err().Error()
			return r
		}
		if err != nil {
			f.Err = err.Error()
			fmt.Fprintf(e.progress, "%s: failover run %d failed: %v\n", name, i+1, err)
		} else {
			fmt.Fprintf(e.progress, "%s: failover run %d: gap %.1f ms (first write after the kill at %.1f ms)\n", name, i+1, f.GapMs, f.FirstAfterMs)
		}
		r.Failovers = append(r.Failovers, f)
	}
	return r
}
