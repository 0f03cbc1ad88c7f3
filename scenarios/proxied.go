package scenarios

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ProxiedCluster is a cluster started process by process (not through `sibyl dev`), every
// node advertising a Proxy in front of it, so a test can cut node-to-node links.
type ProxiedCluster struct {
	*Cluster
	Proxies map[int]*Proxy // node id -> the proxy in front of it
}

// portReservations hands out loopback ports and keeps each one bound until release, so
// that no later allocation in the same cluster (a proxy's own listener, say) gets a port
// already promised to a process that has not started yet.
type portReservations struct {
	t   testing.TB
	lns []net.Listener
}

func (r *portReservations) port() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.t.Fatal(err)
	}
	r.lns = append(r.lns, ln)
	return ln.Addr().String()
}

// release frees every reserved port, just before the processes that use them start.
func (r *portReservations) release() {
	for _, ln := range r.lns {
		ln.Close()
	}
	r.lns = nil
}

// StartProxiedCluster starts 3 controllers and n nodes.
func StartProxiedCluster(t testing.TB, n int, o Options) *ProxiedCluster {
	t.Helper()
	if o.WriteTimeout == 0 {
		o.WriteTimeout = time.Second
	}
	if o.DownAfter == 0 {
		o.DownAfter = time.Second
	}
	pc := &ProxiedCluster{Cluster: &Cluster{t: t, Dir: t.TempDir(), hc: &http.Client{Timeout: 5 * time.Second}}, Proxies: map[int]*Proxy{}}
	res := &portReservations{t: t}
	defer res.release()
	var peers, ctrlHTTP []string
	type ctl struct{ id, http, raft string }
	var ctls []ctl
	for i := 1; i <= 3; i++ {
		c := ctl{id: fmt.Sprintf("c%d", i), http: res.port(), raft: res.port()}
		ctls = append(ctls, c)
		peers = append(peers, c.id+"="+c.raft)
		ctrlHTTP = append(ctrlHTTP, c.http)
	}
	// Every port and proxy is allocated before any is released.
	listens := map[int]string{}
	for id := 1; id <= n; id++ {
		listens[id] = res.port()
		px, err := NewProxy(listens[id])
		if err != nil {
			t.Fatal(err)
		}
		pc.Proxies[id] = px
		t.Cleanup(px.Close)
	}
	res.release()
	for _, c := range ctls {
		args := []string{sibylBin, "location", "--id", c.id, "--http", c.http, "--raft", c.raft,
			"--data", filepath.Join(pc.Dir, c.id), "--peers", strings.Join(peers, ","), "--location", "loc1",
			"--down-after", o.DownAfter.String()}
		pc.Controllers = append(pc.Controllers, pc.spawn(c.id, c.http, args))
	}
	for id := 1; id <= n; id++ {
		px := pc.Proxies[id]
		args := []string{sibylBin, "node", "--id", strconv.Itoa(id), "--http", listens[id], "--advertise", px.Addr(),
			"--data", filepath.Join(pc.Dir, fmt.Sprintf("n%d", id)), "--controllers", strings.Join(ctrlHTTP, ","),
			"--location", "loc1", "--write-timeout", o.WriteTimeout.String(), "--down-after", o.DownAfter.String()}
		p := pc.spawn(strconv.Itoa(id), px.Addr(), args)
		p.ID = []byte(strconv.Itoa(id))
		pc.Nodes = append(pc.Nodes, p)
	}
	t.Cleanup(pc.stopAll)
	waitFor(t, 60*time.Second, "every node up and every group with a main", func() bool {
		st, err := pc.Status()
		if err != nil || len(st.Nodes) != n || len(st.Groups) != n {
			return false
		}
		for _, nd := range st.Nodes {
			if nd.State != "up" {
				return false
			}
		}
		for _, g := range st.Groups {
			if g.Main == nil {
				return false
			}
		}
		return true
	})
	return pc
}

// spawn starts one process with its output in DIR/<name>.log.
func (pc *ProxiedCluster) spawn(name, http string, args []string) *Proc {
	logf, err := os.Create(filepath.Join(pc.Dir, name+".log"))
	if err != nil {
		pc.t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		pc.t.Fatalf("starting %s: %v", name, err)
	}
	pc.extra = append(pc.extra, cmd)
	return &Proc{ID: []byte(`"` + name + `"`), HTTP: http, PID: cmd.Process.Pid, Args: args}
}

func (pc *ProxiedCluster) stopAll() {
	for _, cmd := range pc.extra {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	pc.extra = nil
	if pc.t.Failed() {
		keepLogs(pc.t, pc.Dir)
	}
}

// Partition cuts node a from node b both ways (replication and forwarding).
func (pc *ProxiedCluster) Partition(a, b int) {
	pc.Proxies[b].Block(strconv.Itoa(a))
	pc.Proxies[a].Block(strconv.Itoa(b))
}

// Heal undoes Partition.
func (pc *ProxiedCluster) Heal(a, b int) {
	pc.Proxies[b].Unblock(strconv.Itoa(a))
	pc.Proxies[a].Unblock(strconv.Itoa(b))
}
