package scenarios

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
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

	"github.com/gorilla/websocket"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/tlsconf"
)

// Proc is one process of a cluster as cluster.json describes it.
type Proc struct {
	ID       json.RawMessage `json:"id"`
	HTTP     string          `json:"http"`
	Raft     string          `json:"raft,omitempty"`
	PID      int             `json:"pid"`
	Location string          `json:"location,omitempty"`
	Args     []string        `json:"args"`

	exited chan struct{} // closed when a process restarted by the test has exited
}

// Name is the process's id as text ("c1", "3").
func (p *Proc) Name() string { return strings.Trim(string(p.ID), `"`) }

type clusterFile struct {
	Controllers []*Proc `json:"controllers"`
	Nodes       []*Proc `json:"nodes"`
	TLS         *struct {
		CA string `json:"ca"`
	} `json:"tls"`
}

// Options of a scenario cluster.
type Options struct {
	Nodes, Controllers int
	WriteTimeout       time.Duration
	DownAfter          time.Duration
	// NodeFlags are extra flags for every node (dev --node-flags).
	NodeFlags string
	// CopyTimeout, when set, is the controllers' --copy-timeout.
	CopyTimeout time.Duration
	// ClusterSecret, when set, is given to every node and controller (dev
	// --cluster-secret): every call between them must carry it.
	ClusterSecret string
	// AdminToken, when set, is given to every node and controller (dev --admin-token):
	// clients of the cluster (Client) then present it, and admin calls (Admin) always.
	AdminToken string
	// ClientRole, with AdminToken: once the cluster runs, an admin creates the role
	// ClientRoleName granting read, write, subscribe and ticket on the scenarios' types
	// (ClientTypes) and a token of it, which Client presents from then on.
	ClientRole bool
	// Locations is dev's --locations (default 1); Controllers is per location.
	Locations int
	// TLS starts the cluster with dev --tls: every listener serves TLS only, and the
	// cluster's own calls (Status, Client, URL) verify it with the CA cluster.json names.
	TLS bool
}

// Cluster is a running `sibyl dev` cluster.
type Cluster struct {
	t           testing.TB
	Dir         string
	dev         *exec.Cmd
	Controllers []*Proc
	Nodes       []*Proc
	extra       []*exec.Cmd     // processes restarted by the test itself
	exited      []chan struct{} // closed when extra[i] has exited
	// secret and adminToken are the cluster secret and admin token the cluster runs with;
	// token is what Client presents: the admin token, or the client role's token.
	secret, token, adminToken string
	// tls verifies the cluster's certificates (nil: plaintext); hc calls its HTTP
	// endpoints with it.
	tls *tls.Config
	hc  *http.Client
}

// ClientRoleName is the role scenario clients get with Options.ClientRole, and
// ClientTypes the resource types it grants.
const ClientRoleName = "scenario-client"

var ClientTypes = []string{writerType, "blob"}

var sibylBin string

// portSeq hands out base ports; seeded so a failing run names its ports.
var (
	seedUsed = portSeed()
	portSeq  = rand.New(rand.NewSource(seedUsed))
)

func portSeed() int64 {
	if s, err := strconv.ParseInt(os.Getenv("SIBYL_SCENARIO_SEED"), 10, 64); err == nil {
		return s
	}
	return time.Now().UnixNano()
}

// buildBinary builds cmd/sibyl into dir.
func buildBinary(dir string) (string, error) {
	bin := filepath.Join(dir, "sibyl")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/sibylhq/sibyl/cmd/sibyl").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building sibyl: %v\n%s", err, out)
	}
	return bin, nil
}

func portsFree(base, controllers, nodes int) bool {
	var ports []int
	for i := 1; i <= controllers; i++ {
		ports = append(ports, base+i, base+50+i)
	}
	for i := 1; i <= nodes; i++ {
		ports = append(ports, base+100+i)
	}
	for _, p := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			return false
		}
		ln.Close()
	}
	return true
}

// StartCluster starts `sibyl dev` and waits for its cluster.json.
func StartCluster(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Nodes == 0 {
		o.Nodes = 4
	}
	if o.Controllers == 0 {
		o.Controllers = 3
	}
	if o.Locations == 0 {
		o.Locations = 1
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = time.Second
	}
	if o.DownAfter == 0 {
		o.DownAfter = time.Second
	}
	base := 0
	for i := 0; i < 50 && base == 0; i++ {
		// Below Linux's ephemeral range (32768 and up by default), so no outgoing
		// connection is handed one of these ports between the check and the start.
		b := 21000 + portSeq.Intn(58)*200
		if portsFree(b, o.Controllers*o.Locations, o.Nodes) {
			base = b
		}
	}
	if base == 0 {
		t.Fatal("no free port range for a cluster")
	}
	c := &Cluster{t: t, Dir: t.TempDir(), secret: o.ClusterSecret, token: o.AdminToken, adminToken: o.AdminToken}
	c.dev = exec.Command(sibylBin, "dev", "--nodes", strconv.Itoa(o.Nodes), "--controllers", strconv.Itoa(o.Controllers),
		"--base-port", strconv.Itoa(base), "--data", c.Dir, "--write-timeout", o.WriteTimeout.String(),
		"--down-after", o.DownAfter.String(), "--log-level", "info", "--node-flags", o.NodeFlags)
	if o.CopyTimeout > 0 {
		c.dev.Args = append(c.dev.Args, "--copy-timeout", o.CopyTimeout.String())
	}
	if o.Locations > 1 {
		c.dev.Args = append(c.dev.Args, "--locations", strconv.Itoa(o.Locations))
	}
	if o.ClusterSecret != "" {
		c.dev.Args = append(c.dev.Args, "--cluster-secret", o.ClusterSecret)
	}
	if o.AdminToken != "" {
		c.dev.Args = append(c.dev.Args, "--admin-token", o.AdminToken)
	}
	if o.TLS {
		c.dev.Args = append(c.dev.Args, "--tls")
	}
	logf, err := os.Create(filepath.Join(c.Dir, "dev.out"))
	if err != nil {
		t.Fatal(err)
	}
	c.dev.Stdout, c.dev.Stderr = logf, logf
	if err := c.dev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster: base port %d, data %s", base, c.Dir)
	t.Cleanup(c.stop)
	path := filepath.Join(c.Dir, "cluster.json")
	waitFor(t, 90*time.Second, "cluster.json", func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		var f clusterFile
		if json.Unmarshal(b, &f) != nil {
			return false
		}
		c.Controllers, c.Nodes = f.Controllers, f.Nodes
		if o.TLS != (f.TLS != nil) {
			t.Fatalf("cluster.json names TLS %+v; the cluster was started with TLS %v", f.TLS, o.TLS)
		}
		if f.TLS != nil {
			s, err := tlsconf.Load(tlsconf.Files{CA: f.TLS.CA})
			if err != nil {
				t.Fatalf("the CA cluster.json names: %v", err)
			}
			c.tls = s.Client
		}
		return true
	})
	c.hc = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tls}}
	if o.ClientRole && o.AdminToken != "" {
		c.token = c.CreateRoleToken(ClientRoleName, command.Grant{Types: ClientTypes,
			Ops: []string{command.KindRead, command.KindWrite, command.KindSubscribe, command.KindTicket}})
	}
	return c
}

// URL is the URL of path on process p: https when the cluster serves TLS.
func (c *Cluster) URL(p *Proc, path string) string {
	return tlsconf.Scheme(c.tls, "http") + "://" + p.HTTP + path
}

// WSURL is the WebSocket URL of path on process p: wss when the cluster serves TLS.
func (c *Cluster) WSURL(p *Proc, path string) string {
	return tlsconf.Scheme(c.tls, "ws") + "://" + p.HTTP + path
}

// HTTP is a client of the cluster's HTTP endpoints, verifying its TLS when it has it.
func (c *Cluster) HTTP() *http.Client { return c.hc }

// WSDialer dials the cluster's WebSocket endpoints, verifying its TLS when it has it.
func (c *Cluster) WSDialer() *websocket.Dialer {
	d := *websocket.DefaultDialer
	d.TLSClientConfig = c.tls
	return &d
}

// CreateRoleToken creates role name with grants (as the admin) and a token of it, and
// waits until every node accepts that token.
func (c *Cluster) CreateRoleToken(name string, grants ...command.Grant) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := c.Admin(1)
	if _, err := admin.DoRetry(ctx, &command.Request{Op: command.OpCreateRole, Name: name, Grants: grants}); err != nil {
		c.t.Fatalf("createRole %s: %v", name, err)
	}
	rep, err := admin.Do(ctx, &command.Request{Op: command.OpCreateToken, Role: name})
	if err != nil || rep.Token == "" {
		c.t.Fatalf("createToken for role %s: %v", name, err)
	}
	c.WaitTokenAccepted(rep.Token, true)
	return rep.Token
}

// WaitTokenAccepted waits until every running node accepts token (GET /v1/status
// answers 200 with it), or refuses it (401) when accepted is false, and returns how
// long that took.
func (c *Cluster) WaitTokenAccepted(token string, accepted bool) time.Duration {
	c.t.Helper()
	start := time.Now()
	want := http.StatusUnauthorized
	if accepted {
		want = http.StatusOK
	}
	waitFor(c.t, 10*time.Second, fmt.Sprintf("every node answering %d to a token", want), func() bool {
		for _, p := range c.Nodes {
			req, _ := http.NewRequest(http.MethodGet, c.URL(p, "/v1/status"), nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := c.hc.Do(req)
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				return false
			}
		}
		return true
	})
	return time.Since(start)
}

// Admin connects to the given nodes with the cluster's admin token (none in an open
// cluster).
func (c *Cluster) Admin(nodes ...int) *client.Client {
	return c.ClientWithToken(c.adminToken, nodes...)
}

func (c *Cluster) stop() {
	if c.dev == nil {
		return
	}
	for _, p := range append(c.Controllers, c.Nodes...) {
		_ = syscall.Kill(p.PID, syscall.SIGCONT)
	}
	for i, cmd := range c.extra {
		_ = cmd.Process.Kill()
		<-c.exited[i]
	}
	_ = c.dev.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = c.dev.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = c.dev.Process.Kill()
		<-done
	}
	if c.t.Failed() {
		keepLogs(c.t, c.Dir)
		restarts, _ := filepath.Glob(filepath.Join(c.Dir, "restart-*.log"))
		for _, f := range append([]string{"dev.out"}, restarts...) {
			f = filepath.Base(f)
			if b, err := os.ReadFile(filepath.Join(c.Dir, f)); err == nil {
				c.t.Logf("%s:\n%s", f, tail(b, 4000))
			}
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Node returns node id's process.
func (c *Cluster) Node(id int) *Proc {
	for _, p := range c.Nodes {
		if p.Name() == strconv.Itoa(id) {
			return p
		}
	}
	c.t.Fatalf("no node %d in cluster.json", id)
	return nil
}

// Controller returns controller id's process ("c1").
func (c *Cluster) Controller(id string) *Proc {
	for _, p := range c.Controllers {
		if p.Name() == id {
			return p
		}
	}
	c.t.Fatalf("no controller %s in cluster.json", id)
	return nil
}

// Kill sends SIGKILL: a real crash.
func (c *Cluster) Kill(p *Proc) {
	c.t.Logf("kill -9 %s (pid %d)", p.Name(), p.PID)
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill %d: %v", p.PID, err)
	}
	// Gone: reaped, or a zombie whose descriptors are closed. The group leader of a Go
	// process turns zombie before its other threads have exited and released the
	// descriptors they share, so a restart could still find its ports bound.
	waitFor(c.t, 10*time.Second, "process "+p.Name()+" gone", func() bool {
		proc := "/proc/" + strconv.Itoa(p.PID)
		b, err := os.ReadFile(proc + "/stat")
		if err != nil {
			return true
		}
		if !strings.Contains(string(b), ") Z ") {
			return false
		}
		fds, err := os.ReadDir(proc + "/fd")
		return err != nil || len(fds) == 0
	})
	// Its ports free: the kernel may release a dead process's listening socket after its
	// descriptors are gone, and a restart that finds the port bound exits at once, while a
	// dial can still reach the old socket's backlog.
	waitFor(c.t, 10*time.Second, "the ports of "+p.Name()+" free", func() bool {
		for _, addr := range []string{p.HTTP, p.Raft} {
			if addr == "" {
				continue
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return false
			}
			ln.Close()
		}
		return true
	})
}

// Stop freezes a process (SIGSTOP); Cont resumes it.
func (c *Cluster) Stop(p *Proc) {
	c.t.Logf("SIGSTOP %s (pid %d)", p.Name(), p.PID)
	if err := syscall.Kill(p.PID, syscall.SIGSTOP); err != nil {
		c.t.Fatal(err)
	}
}

func (c *Cluster) Cont(p *Proc) {
	c.t.Logf("SIGCONT %s (pid %d)", p.Name(), p.PID)
	if err := syscall.Kill(p.PID, syscall.SIGCONT); err != nil {
		c.t.Fatal(err)
	}
}

// Restart starts a killed process again with its args (on its own data).
func (c *Cluster) Restart(p *Proc) {
	cmd := exec.Command(p.Args[0], p.Args[1:]...)
	logf, err := os.Create(filepath.Join(c.Dir, "restart-"+p.Name()+".log"))
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("restarting %s: %v", p.Name(), err)
	}
	c.extra = append(c.extra, cmd)
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	c.exited = append(c.exited, exited)
	p.PID = cmd.Process.Pid
	p.exited = exited
	c.t.Logf("restarted %s (pid %d)", p.Name(), p.PID)
}

// WaitListening waits until restarted process p accepts connections on its HTTP address,
// and fails at once, with the end of its log, if it exits first.
func (c *Cluster) WaitListening(p *Proc, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		select {
		case <-p.exited:
			b, _ := os.ReadFile(filepath.Join(c.Dir, "restart-"+p.Name()+".log"))
			c.t.Fatalf("restarted %s exited before it listened on %s:\n%s", p.Name(), p.HTTP, tail(b, 4000))
		default:
		}
		conn, err := net.DialTimeout("tcp", p.HTTP, time.Second)
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("restarted %s does not listen on %s after %v: %v", p.Name(), p.HTTP, d, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// Status asks the controllers for /v1/status (any that answers).
func (c *Cluster) Status() (*command.Status, error) {
	var lastErr error
	for _, p := range c.Controllers {
		st, err := c.StatusFrom(p)
		if err == nil {
			return st, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// StatusFrom asks process p for /v1/status, with the admin token when the cluster has one.
func (c *Cluster) StatusFrom(p *Proc) (*command.Status, error) {
	req, err := http.NewRequest(http.MethodGet, c.URL(p, "/v1/status"), nil)
	if err != nil {
		return nil, err
	}
	if c.adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st command.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status from %s: HTTP %d %v", p.HTTP, resp.StatusCode, err)
	}
	return &st, nil
}

// WaitVoting waits until group g has n voting siblings and returns its status.
func (c *Cluster) WaitVoting(g uint16, n int) command.StatusGroup {
	var out command.StatusGroup
	waitFor(c.t, 60*time.Second, fmt.Sprintf("group %d with %d voting siblings", g, n), func() bool {
		st, err := c.Status()
		if err != nil {
			return false
		}
		for _, sg := range st.Groups {
			if sg.Server != g || sg.Main == nil {
				continue
			}
			voting := 0
			for _, s := range sg.Siblings {
				if s.State == command.SiblingVoting {
					voting++
				}
			}
			out = sg
			return voting >= n
		}
		return false
	})
	return out
}

// WaitNewMain waits until group g's main is another node than old, and returns the new
// main and its epoch.
func (c *Cluster) WaitNewMain(g uint16, old int) (main uint16, epoch uint64) {
	waitFor(c.t, 20*time.Second, fmt.Sprintf("a new main for group %d", g), func() bool {
		st, err := c.Status()
		if err != nil {
			return false
		}
		for _, sg := range st.Groups {
			if sg.Server == g && sg.Main != nil && int(*sg.Main) != old {
				main, epoch = *sg.Main, sg.Epoch
				return true
			}
		}
		return false
	})
	return main, epoch
}

// othersThan lists the node IDs 1..n except one.
func othersThan(except, n int) []int {
	var out []int
	for id := 1; id <= n; id++ {
		if id != except {
			out = append(out, id)
		}
	}
	return out
}

// Client connects to the given nodes (in order of preference), with the cluster's admin
// token when it has one.
func (c *Cluster) Client(nodes ...int) *client.Client { return c.ClientWithToken(c.token, nodes...) }

// ClientWithToken connects to the given nodes with token ("" for none).
func (c *Cluster) ClientWithToken(token string, nodes ...int) *client.Client {
	var addrs []string
	for _, id := range nodes {
		addrs = append(addrs, c.Node(id).HTTP)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.Options{Addrs: addrs, Token: token, TLS: c.tls})
	if err != nil {
		c.t.Fatalf("dial %v: %v", addrs, err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// keepLogs copies a failed run's data directory (logs, cluster.json) out of the test's
// temporary directory, which the testing package removes.
func keepLogs(t testing.TB, dir string) {
	dst := filepath.Join(os.TempDir(), "sibyl-failed-"+strings.ReplaceAll(t.Name(), "/", "-")+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := exec.Command("cp", "-r", dir, dst).Run(); err != nil {
		t.Logf("could not keep logs of %s: %v", dir, err)
		return
	}
	t.Logf("logs kept in %s", dst)
}

// Metric returns the value of the unlabelled Prometheus sample name on node id's /metrics.
func (c *Cluster) Metric(id int, name string) float64 {
	c.t.Helper()
	resp, err := c.hc.Get(c.URL(c.Node(id), "/metrics"))
	if err != nil {
		c.t.Fatalf("metrics of node %d: %v", id, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				c.t.Fatalf("metric %s of node %d: %q", name, id, v)
			}
			return f
		}
	}
	c.t.Fatalf("node %d has no metric %s", id, name)
	return 0
}

// WaitServing waits until node id answers /healthz with 200 (it joined its controller).
func (c *Cluster) WaitServing(id int) {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, fmt.Sprintf("node %d serving", id), func() bool {
		resp, err := c.hc.Get(c.URL(c.Node(id), "/healthz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
