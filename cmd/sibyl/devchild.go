package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// killAfter is how long a child has to stop after SIGTERM before dev kills it.
const killAfter = 5 * time.Second

// child is one process dev started.
type child struct {
	name string   // c1, n1, ...
	args []string // args[0] is the executable
	log  string   // file receiving its stdout and stderr
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
}

// childExit reports a child that ended.
type childExit struct {
	c   *child
	err error
}

// startChild starts args with stdout and stderr appended to logPath, and reports its end
// on exits (which must have room for every child: nobody may be reading). The log file is the child's own descriptor, so no goroutine of dev copies its
// output and a child keeps logging even while dev is busy.
func startChild(name string, args []string, env []string, logPath string, exits chan<- childExit) (*child, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("start %s: log directory: %w", name, err)
	}
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log %s: %w", name, logPath, err)
	}
	defer lf.Close() // the child holds its own copy of the descriptor
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.Stdin = nil
	cmd.Env = env
	cmd.SysProcAttr = childSysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, args[0], err)
	}
	c := &child{name: name, args: args, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		close(c.done)
		exits <- childExit{c: c, err: err}
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// describeExit says how a child ended, for dev's progress lines.
func describeExit(err error) string {
	if err == nil {
		return "exited with status 0"
	}
	return err.Error() // "exit status 1", "signal: killed", ...
}

// stopChildren sends SIGTERM to every running child, waits up to killAfter for all of
// them, then SIGKILLs the rest and waits until every one is reaped, so that no child
// outlives dev.
func stopChildren(children []*child) {
	for _, c := range children {
		if !c.exited() {
			// An error means the process already ended; Wait reports that.
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.NewTimer(killAfter)
	defer deadline.Stop()
	for _, c := range children {
		select {
		case <-c.done:
		case <-deadline.C:
			for _, k := range children {
				if !k.exited() {
					_ = k.cmd.Process.Kill()
				}
			}
			for _, k := range children {
				<-k.done
			}
			return
		}
	}
}

// childEnv is the environment of dev's children. All of them share this machine; when they
// outnumber its CPUs, each Go runtime is given its share of them (GOMAXPROCS), since
// runtimes that each assume every CPU spin against one another: idle slots look for work,
// poll the network and wake threads. A node's log fdatasync holds its slot while the disk
// works (node/wal), and yet one slot per node beats two. Measured with sibyl bench (4
// nodes, 3 controllers, 2 CPUs, three interleaved pairs each): at 64 clients 7,998 / 7,695
// / 7,541 writes/s against 7,716 / 7,314 / 7,632 with two slots per node, p99 20.7-21.9 ms
// against 24.7-26.5 ms, node CPU per write 151-157 µs against 177-184 µs; at 16 clients
// 4,015 / 3,354 / 3,672 against 3,583 / 3,730 / 3,730 writes/s, p99 10.2-11.0 ms against
// 14.2-14.5 ms; at 1 client p50 0.71-0.75 ms against 0.82-1.18 ms. An explicit GOMAXPROCS
// wins.
func childEnv(base []string, processes, cpus int) []string {
	for _, kv := range base {
		if strings.HasPrefix(kv, "GOMAXPROCS=") {
			return base
		}
	}
	share := min(cpus, max(1, cpus/max(1, processes)))
	if share >= cpus {
		return base
	}
	return append(append([]string(nil), base...), "GOMAXPROCS="+strconv.Itoa(share))
}
