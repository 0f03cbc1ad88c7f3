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
// runtimes that each assume every CPU spin against one another. A node gets one slot more
// than its share (extra), because its log's fdatasync holds a slot while the disk works
// (node/wal): with a single slot, everything else the node does waits for each fsync.
// Measured with sibyl bench (64 clients, 7 processes on 2 CPUs, two runs each): nodes with
// one slot 5,824-6,250 writes/s at 83-86 % machine CPU, with two 6,495-7,171 at 93-95 %.
// An explicit GOMAXPROCS wins.
func childEnv(base []string, processes, cpus, extra int) []string {
	for _, kv := range base {
		if strings.HasPrefix(kv, "GOMAXPROCS=") {
			return base
		}
	}
	share := min(cpus, max(1, cpus/max(1, processes))+extra)
	if share >= cpus {
		return base
	}
	return append(append([]string(nil), base...), "GOMAXPROCS="+strconv.Itoa(share))
}
