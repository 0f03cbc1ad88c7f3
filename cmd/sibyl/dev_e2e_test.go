package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// syncBuffer collects a child's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeBase picks a base port whose controller, raft and node ports are all free now. The
// seed is the test process's pid: parallel runs of the suite start from different bases,
// and a failing run can be replayed from the seed it logs.
func freeBase(t *testing.T, nodes, controllers int) int {
	seed := uint64(os.Getpid())
	rng := rand.New(rand.NewPCG(seed, 0x51b71))
	t.Logf("port seed %d", seed)
	for attempt := 0; attempt < 50; attempt++ {
		base := 10000 + 200*rng.IntN(110) // below the ephemeral range: up to 31800+100+nodes
		var ports []int
		for i := 1; i <= controllers; i++ {
			ports = append(ports, base+i, base+raftPortOffset+i)
		}
		for i := 1; i <= nodes; i++ {
			ports = append(ports, base+nodePortOffset+i)
		}
		if portsFree(ports) {
			return base
		}
	}
	t.Fatal("found no free port range in 50 tries")
	return 0
}

func portsFree(ports []int) bool {
	for _, p := range ports {
		ln, err := net.Listen("tcp", hostPort(p))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

// alive reports whether pid still names a process (signal 0 checks without sending).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// TestDevEndToEnd builds the binary, starts a dev cluster, writes and reads through the
// command-line client, checks that the Go client routes writes to the main (checkRouting),
// kills one node by its pid, and stops the cluster with SIGINT.
func TestDevEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "sibyl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const nodes, controllers = 3, 3
	base := freeBase(t, nodes, controllers)
	dir := t.TempDir()

	var devOut syncBuffer
	dev := exec.Command(bin, "dev", "--nodes", fmt.Sprint(nodes), "--controllers", fmt.Sprint(controllers),
		"--base-port", fmt.Sprint(base), "--data", dir)
	dev.Stdout, dev.Stderr = &devOut, &devOut
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	devDone := make(chan error, 1)
	go func() { devDone <- dev.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			dev.Process.Signal(syscall.SIGINT)
			<-devDone
		}
		if t.Failed() {
			t.Logf("dev output:\n%s", devOut.String())
		}
	}()

	clusterPath := filepath.Join(dir, "cluster.json")
	waitFor(t, 90*time.Second, "cluster.json", func() bool {
		select {
		case err := <-devDone:
			stopped = true
			t.Fatalf("dev exited before the cluster was ready: %v", err)
		default:
		}
		_, err := os.Stat(clusterPath)
		return err == nil
	})
	cf, err := readClusterFile(clusterPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.Controllers) != controllers || len(cf.Nodes) != nodes {
		t.Fatalf("cluster.json lists %d controllers and %d nodes, want %d and %d", len(cf.Controllers), len(cf.Nodes), controllers, nodes)
	}
	if cf.Nodes[0].HTTP != hostPort(base+nodePortOffset+1) || cf.Controllers[0].Raft != hostPort(base+raftPortOffset+1) {
		t.Errorf("cluster.json ports: node 1 %s, c1 raft %s", cf.Nodes[0].HTTP, cf.Controllers[0].Raft)
	}
	out := devOut.String()
	for _, n := range cf.Nodes {
		if want := "ws://" + n.HTTP + "/v1/ws"; !strings.Contains(out, want) {
			t.Errorf("dev output lacks %s", want)
		}
	}

	// Through the binary: create on node 1, read back through node 2 (forwarded).
	sibyl := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err != nil {
			return stdout.String(), fmt.Errorf("sibyl %q: %v: %s", args, err, stderr.String())
		}
		return stdout.String(), nil
	}
	created, err := sibyl("create", "--addr", cf.Nodes[0].HTTP, "--type", "note", "--data", `{"text":"hello"}`)
	if err != nil {
		t.Fatal(err)
	}
	var rep command.Reply
	if err := json.Unmarshal([]byte(created), &rep); err != nil || rep.Resource == nil {
		t.Fatalf("create printed %q (%v), want a reply with a resource", created, err)
	}
	got, err := sibyl("get", rep.Resource.ID, "--addr", cf.Nodes[1].HTTP)
	if err != nil {
		t.Fatal(err)
	}
	var read command.Reply
	var data bytes.Buffer
	if err := json.Unmarshal([]byte(got), &read); err != nil || read.Resource == nil ||
		read.Resource.ID != rep.Resource.ID || json.Compact(&data, read.Resource.Data) != nil || data.String() != `{"text":"hello"}` {
		t.Fatalf("get printed %q (%v), want resource %s with the created data", got, err, rep.Resource.ID)
	}
	if _, err := sibyl("get", "1-00000000000000000000000000", "--addr", cf.Nodes[0].HTTP); err == nil ||
		!strings.Contains(err.Error(), "not_found") {
		t.Errorf("get of an unknown rid: %v, want exit 1 with not_found", err)
	}

	checkRouting(t, cf, rep.Resource.ID)
	checkDashboard(t, cf)
	checkBench(t, sibyl, clusterPath)

	// A child killed by its pid stays dead and dev says so.
	victim := cf.Nodes[nodes-1]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "dev to report the killed node", func() bool {
		return strings.Contains(devOut.String(), fmt.Sprintf("(pid %d) signal: killed", victim.PID))
	})

	if err := dev.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-devDone:
		stopped = true
		if err != nil {
			t.Errorf("dev exited with %v after SIGINT, want status 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dev did not exit within 30s of SIGINT")
	}
	for _, pid := range pidsOf(cf) {
		waitFor(t, 5*time.Second, fmt.Sprintf("pid %d to be gone", pid), func() bool { return !alive(pid) })
	}
}

func pidsOf(cf clusterFile) []int {
	var pids []int
	for _, c := range cf.Controllers {
		pids = append(pids, c.PID)
	}
	for _, n := range cf.Nodes {
		pids = append(pids, n.PID)
	}
	return pids
}

// checkBench runs a short `sibyl bench --cluster` and checks its JSON result: writes
// acknowledged without errors, and, where /proc can be read, what they cost the node
// processes named in cluster.json and the bench itself.
func checkBench(t *testing.T, sibyl func(args ...string) (string, error), clusterPath string) {
	t.Helper()
	out, err := sibyl("bench", "--cluster", clusterPath, "--clients", "2", "--duration", "1s", "--warmup", "200ms", "--json")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var res benchResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("bench output %q: %v", lines[len(lines)-1], err)
	}
	if res.Ops == 0 || len(res.Errors) > 0 {
		t.Fatalf("bench: %d ops, errors %v; want writes and no errors", res.Ops, res.Errors)
	}
	if _, err := os.Stat("/proc/self/io"); err != nil {
		return // no /proc: no cost
	}
	c := res.Cost
	if c == nil || c.NodeCPUMicros <= 0 || c.BenchCPUMicros <= 0 || c.NodeDiskKiB <= 0 || c.MachineIdlePct < 0 || c.MachineIdlePct > 100 {
		t.Fatalf("bench cost %+v: want the nodes' and the bench's CPU and the nodes' writes per op, and an idle share", c)
	}
	if !strings.Contains(out, "cost     nodes") {
		t.Errorf("bench output lacks its cost line:\n%s", out)
	}
}
