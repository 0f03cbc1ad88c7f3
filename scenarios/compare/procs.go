package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one process this program started, leader of its own process group.
type proc struct {
	name string
	args []string
	log  string // file receiving its stdout and stderr
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
	err  error         // Wait's result; read only after done is closed
}

// procSet is every process started in a run, so that all of them can be killed at the end.
type procSet struct {
	mu    sync.Mutex
	procs []*proc
}

// start runs args in dir with stdout and stderr appended to logPath. The child leads a new
// process group (a terminal's Ctrl-C reaches this program only, which then stops the
// children itself) and gets SIGKILL when this program's main thread ends, which main keeps
// locked to the goroutine that starts every child.
func (s *procSet) start(name string, args []string, dir, logPath string) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open its log %s: %w", name, logPath, err)
	}
	defer lf.Close() // the child holds its own descriptor
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, strings.Join(args, " "), err)
	}
	p := &proc{name: name, args: args, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, nil
}

// run starts args and waits for it to exit, at most timeout; it kills the process group
// when ctx ends or the timeout passes. A non-zero exit is an error naming the log's tail.
func (s *procSet) run(ctx context.Context, name string, args []string, dir, logPath string, timeout time.Duration) error {
	p, err := s.start(name, args, dir, logPath)
	if err != nil {
		return err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-ctx.Done():
		p.kill()
		return fmt.Errorf("%s: %w", name, ctx.Err())
	case <-t.C:
		p.kill()
		return fmt.Errorf("%s did not finish within %s (log %s)", name, timeout, logPath)
	}
	if p.err != nil {
		return fmt.Errorf("%s (%s): %v; last lines of %s:\n%s", name, strings.Join(args, " "), p.err, logPath, logTail(logPath, 15))
	}
	return nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitError describes a process that ended while it should have been serving.
func (p *proc) exitError() error {
	return fmt.Errorf("%s (pid %d) exited: %v; last lines of %s:\n%s", p.name, p.pid(), p.err, p.log, logTail(p.log, 15))
}

// stop sends sig to the process and waits up to grace for it to end, then kills its
// process group (which also ends any child it left) and waits until it is reaped.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if !p.exited() {
		_ = p.cmd.Process.Signal(sig) // an error means it has already ended
		t := time.NewTimer(grace)
		select {
		case <-p.done:
		case <-t.C:
		}
		t.Stop()
	}
	p.kill()
}

// kill sends SIGKILL to the process group and waits until its leader is reaped.
func (p *proc) kill() {
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL) // ESRCH: the whole group is gone
	<-p.done
}

// killAll kills every process group started through s and waits for every leader.
func (s *procSet) killAll() {
	s.mu.Lock()
	procs := append([]*proc(nil), s.procs...)
	s.mu.Unlock()
	for _, p := range procs {
		if !p.exited() { // a reaped leader's group was swept by stop or kill
			_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		}
	}
	for _, p := range procs {
		<-p.done
	}
}

// logTail returns the last n lines of a log file, for an error message.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
