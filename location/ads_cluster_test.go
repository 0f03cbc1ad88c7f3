package location

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Real controllers (raft, HTTP, the cluster secret) in three locations on 127.0.0.1: the
// ads of every controller and node reach every controller of every location, and a
// restarted controller's new life does within 5 s.

// newTestLocations starts per controllers in each named location, every controller given
// every other location's HTTP addresses (--locations) and the cluster secret; opts adjust
// every controller's Config besides.
func newTestLocations(t *testing.T, names []string, per int, secret string, opts ...func(*Config)) map[string]*testCluster {
	t.Helper()
	type pending struct {
		tc     *testCluster
		raftLn map[string]net.Listener
		httpLn map[string]net.Listener
	}
	all := map[string][]string{}
	var ps []pending
	n := 0
	base := t.TempDir()
	log := newTestLogger(t)
	for _, loc := range names {
		p := pending{tc: &testCluster{t: t, log: log, peers: map[string]string{}, ctls: map[string]*testCtl{}},
			raftLn: map[string]net.Listener{}, httpLn: map[string]net.Listener{}}
		for i := 0; i < per; i++ {
			n++
			id := fmt.Sprintf("c%d", n)
			rl, hl := listen(t, "127.0.0.1:0"), listen(t, "127.0.0.1:0")
			p.raftLn[id], p.httpLn[id] = rl, hl
			p.tc.peers[id] = rl.Addr().String()
			p.tc.ids = append(p.tc.ids, id)
			p.tc.ctls[id] = &testCtl{id: id, raftAddr: rl.Addr().String(), dir: filepath.Join(base, id)}
			all[loc] = append(all[loc], hl.Addr().String())
		}
		ps = append(ps, p)
	}
	out := map[string]*testCluster{}
	for i, p := range ps {
		loc := names[i]
		p.tc.opts = append([]func(*Config){func(c *Config) {
			c.Location, c.ClusterSecret, c.Locations = loc, secret, all
		}}, opts...)
		for _, id := range p.tc.ids {
			p.tc.start(id, p.raftLn[id], p.httpLn[id])
		}
		tc := p.tc
		t.Cleanup(func() {
			for _, id := range tc.ids {
				tc.stop(id)
			}
		})
		out[loc] = tc
	}
	return out
}

// secretCall is call with the cluster secret.
func secretCall(secret, method, addr, path string, in, out any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+addr+path, body)
	if err != nil {
		return 0, nil, err
	}
	if secret != "" {
		req.Header.Set(command.SecretHeader, secret)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, b, fmt.Errorf("decode %s: %w", b, err)
		}
	}
	return resp.StatusCode, b, nil
}

// secretNode joins and heartbeats a location's leader with the cluster secret.
type secretNode struct {
	id       uint16
	instance string
	secret   string
	ctls     []string
	gen      uint64
}

func (n *secretNode) post(path string, in any) error {
	var last error
	queue := slices.Clone(n.ctls)
	for tries := 0; len(queue) > 0 && tries < 10; tries++ {
		addr := queue[0]
		queue = queue[1:]
		code, body, err := secretCall(n.secret, http.MethodPost, addr, path, in, nil)
		if err == nil && code == http.StatusOK {
			n.ctls = append([]string{addr}, slices.DeleteFunc(n.ctls, func(a string) bool { return a == addr })...)
			return nil
		}
		if code == http.StatusMisdirectedRequest {
			var h command.LeaderHint
			if json.Unmarshal(body, &h) == nil && h.Leader != "" {
				queue = append([]string{h.Leader}, queue...)
			}
		}
		last = fmt.Errorf("%s %s: %d %s %v", addr, path, code, body, err)
	}
	return last
}

func (n *secretNode) run(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	joined := false
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if !joined {
			joined = n.post(pathJoin, command.JoinRequest{ID: n.id, Addr: fmt.Sprintf("127.0.0.1:%d", 9000+int(n.id)),
				Instance: n.instance, Incarnation: 1}) == nil
			continue
		}
		n.gen++
		_ = n.post(pathHeartbeat, command.Heartbeat{Node: n.id, Instance: n.instance, Incarnation: 1, Generation: n.gen})
	}
}

// adsLack reports what controller x's /v1/ads lacks: every running controller of every
// location in its current life, and want's nodes; "" when nothing.
func adsLack(secret string, x *testCtl, locs map[string]*testCluster, nodes []uint16) string {
	var ads []command.Ad
	code, body, err := secretCall(secret, http.MethodGet, x.httpAddr, pathAds, nil, &ads)
	if err != nil || code != http.StatusOK {
		return fmt.Sprintf("GET /v1/ads on %s: %d %s %v", x.id, code, body, err)
	}
	held := map[string]command.Ad{}
	for _, ad := range ads {
		held[ad.Kind+"/"+ad.ID] = ad
	}
	for loc, tc := range locs {
		for _, y := range tc.running() {
			ad, ok := held[command.AdController+"/"+y.id]
			switch {
			case !ok:
				return fmt.Sprintf("%s lacks the ad of %s (%s)", x.id, y.id, loc)
			case ad.Instance != y.c.Instance() || ad.Incarnation != y.c.Incarnation() || ad.Location != loc || ad.Addr != y.httpAddr:
				return fmt.Sprintf("%s holds %s as %+v, want instance %s incarnation %d", x.id, y.id, ad, y.c.Instance(), y.c.Incarnation())
			case y == x && len(ad.Path) != 0:
				return fmt.Sprintf("%s holds its own ad with path %v", x.id, ad.Path)
			case y != x && (len(ad.Path) == 0 || ad.Path[len(ad.Path)-1] != x.c.Instance()):
				return fmt.Sprintf("%s holds %s with path %v, which does not end with itself", x.id, y.id, ad.Path)
			}
		}
	}
	for _, n := range nodes {
		if _, ok := held[fmt.Sprintf("%s/%d", command.AdNode, n)]; !ok {
			return fmt.Sprintf("%s lacks the ad of node %d", x.id, n)
		}
	}
	return ""
}

func TestAdsAcrossRealControllers(t *testing.T) {
	const secret = "ads-test-secret"
	names := []string{"loc1", "loc2", "loc3"}
	locs := newTestLocations(t, names, 3, secret)
	for _, loc := range names {
		locs[loc].leader(20 * time.Second)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	node := &secretNode{id: 1, instance: "node-1-life-1", secret: secret, ctls: locs["loc1"].httpAddrs()}
	wg.Add(1)
	go node.run(stop, &wg)
	t.Cleanup(func() { close(stop); wg.Wait() })

	start := time.Now()
	everyone := func() string {
		for _, loc := range names {
			for _, x := range locs[loc].running() {
				if s := adsLack(secret, x, locs, []uint16{1}); s != "" {
					return s
				}
			}
		}
		return ""
	}
	eventuallyOK(t, 15*time.Second, "every controller holds every ad", func() error {
		if s := everyone(); s != "" {
			return fmt.Errorf("%s", s)
		}
		return nil
	})
	t.Logf("every controller of 3 locations held the ads of 9 controllers and a node %v after the leaders were up", time.Since(start))

	// Locations: every controller answers (a follower through its leader) with all three,
	// reachable, with a leader.
	for _, loc := range names {
		for _, x := range locs[loc].running() {
			eventuallyOK(t, 5*time.Second, "locations from "+x.id, func() error {
				var lr command.LocationsReply
				code, body, err := secretCall(secret, http.MethodGet, x.httpAddr, pathLocations, nil, &lr)
				if err != nil || code != http.StatusOK {
					return fmt.Errorf("%d %s %v", code, body, err)
				}
				if lr.Self.Name != loc || len(lr.Locations) != 3 || lr.Locations[0].Name != loc {
					return fmt.Errorf("%s: %+v", x.id, lr)
				}
				for _, l := range lr.Locations {
					if !l.Reachable || l.Leader == nil || len(l.Controllers) != 3 || l.HeardMs == nil {
						return fmt.Errorf("%s sees %s as %+v", x.id, l.Name, l)
					}
					if want := locs[l.Name].currentLeader(); want == nil || *l.Leader != want.httpAddr {
						return fmt.Errorf("%s names %s's leader %s", x.id, l.Name, *l.Leader)
					}
				}
				return nil
			})
		}
	}

	// Status from a follower of loc2 covers every location.
	var follower *testCtl
	for _, x := range locs["loc2"].running() {
		if !x.c.IsLeader() {
			follower = x
		}
	}
	eventuallyOK(t, 5*time.Second, "status covering every location", func() error {
		var st command.Status
		if code, body, err := call(http.MethodGet, follower.httpAddr, pathStatus, nil, &st); err != nil || code != 200 {
			return fmt.Errorf("%d %s %v", code, body, err)
		}
		if len(st.Locations) != 3 || len(st.Controllers) != 9 {
			return fmt.Errorf("locations %+v, %d controllers", st.Locations, len(st.Controllers))
		}
		leaders := 0
		for _, c := range st.Controllers {
			if c.Leader {
				leaders++
			}
		}
		for _, l := range st.Locations {
			if l.Leader == nil || !l.Reachable || len(l.Controllers) != 3 {
				return fmt.Errorf("location %+v", l)
			}
		}
		if leaders != 3 {
			return fmt.Errorf("%d controllers marked leader, want one per location", leaders)
		}
		for _, n := range st.Nodes {
			if n.ID == 1 && n.Location == "loc1" && n.State == command.NodeUp {
				return nil
			}
		}
		return fmt.Errorf("node 1 of loc1 not up in %+v", st.Nodes)
	})

	// The secret guards the new endpoints.
	x := locs["loc3"].currentLeader()
	for _, c := range []struct{ method, path string }{
		{http.MethodGet, pathAds}, {http.MethodGet, pathLocations}, {http.MethodPost, pathInternalAds},
	} {
		var in any
		if c.method == http.MethodPost {
			in = command.AdBatch{From: command.AdSender{ID: "x", Location: "loc9", Instance: "X"},
				Ads: []command.Ad{{Kind: command.AdNode, ID: "9", Location: "loc9", Instance: "N9", Incarnation: 1, Generation: 1}}}
		}
		if code, body, _ := secretCall("wrong", c.method, x.httpAddr, c.path, in, nil); code != http.StatusUnauthorized {
			t.Fatalf("%s %s with a wrong secret: %d %s, want 401", c.method, c.path, code, body)
		}
	}

	// Metrics: the three counters.
	_, body, err := call(http.MethodGet, x.httpAddr, "/metrics", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"sibyl_controller_ads_received_total ", "sibyl_controller_ads_forwarded_total ",
		`sibyl_controller_ads_dropped_total{reason="duplicate"}`, `sibyl_controller_location_reachable{location="loc1"} 1`} {
		if !strings.Contains(string(body), m) {
			t.Fatalf("metrics lack %q", m)
		}
	}

	// A controller restarts (the leader of loc2): its new life, with the next incarnation
	// and a generation back at 1, reaches every controller of every location within 5 s.
	victim := locs["loc2"].currentLeader()
	oldInst, oldInc := victim.c.Instance(), victim.c.Incarnation()
	locs["loc2"].stop(victim.id)
	locs["loc2"].restart(victim.id)
	restarted := time.Now()
	if victim.c.Incarnation() != oldInc+1 || victim.c.Instance() == oldInst {
		t.Fatalf("restarted with instance %s incarnation %d, want a new instance and incarnation %d",
			victim.c.Instance(), victim.c.Incarnation(), oldInc+1)
	}
	eventuallyOK(t, 5*time.Second, "the restarted controller's new life everywhere", func() error {
		if s := everyone(); s != "" {
			return fmt.Errorf("%s", s)
		}
		return nil
	})
	t.Logf("the restarted controller's new life was held everywhere %v after its restart", time.Since(restarted))
}
