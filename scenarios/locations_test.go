package scenarios

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Several locations of real processes (`sibyl dev --locations N`, with a cluster secret):
// every controller's /v1/ads comes to list every controller and node of every location, the
// status answers for every location, and after kill -9 and a restart of a location's
// leader controller, and of a node, the new life's ad (the next incarnation) reaches every
// other controller of every location within 5 s (the restarted controller itself, which
// starts with no ads, fills up once its location has a leader again). The times are logged: they are the ad
// convergence figures of docs/locations.md. On the way, every held path is checked, and
// the counters show that a steady cluster drops nothing as a loop.

const locationsSecret = "locations-s3cret"

// adsOf fetches controller p's /v1/ads with the cluster secret.
func adsOf(p *Proc) ([]command.Ad, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+p.HTTP+"/v1/ads", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(command.SecretHeader, locationsSecret)
	resp, err := (&http.Client{Timeout: time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/ads on %s: HTTP %d %s", p.Name(), resp.StatusCode, b)
	}
	var ads []command.Ad
	return ads, json.Unmarshal(b, &ads)
}

func adKey(kind, id string) string { return kind + "/" + id }

// lifeAt is the life of a process as one controller's ads show it.
type lifeAt struct {
	instance    string
	incarnation uint64
}

// everywhere checks that every controller but skip holds every process of the cluster, and
// the processes of want in (at least) the given life; it returns what is missing.
func everywhere(c *Cluster, skip *Proc, want map[string]lifeAt) string {
	for _, p := range c.Controllers {
		if p == skip {
			continue
		}
		ads, err := adsOf(p)
		if err != nil {
			return err.Error()
		}
		held := map[string]command.Ad{}
		for _, ad := range ads {
			held[adKey(ad.Kind, ad.ID)] = ad
		}
		for _, q := range c.Controllers {
			ad, ok := held[adKey(command.AdController, q.Name())]
			if !ok || ad.Location != q.Location || ad.Addr != q.HTTP {
				return fmt.Sprintf("%s (%s) lacks controller %s of %s: %+v", p.Name(), p.Location, q.Name(), q.Location, ad)
			}
			if q == p && len(ad.Path) != 0 {
				return fmt.Sprintf("%s holds its own ad with path %v", p.Name(), ad.Path)
			}
		}
		for _, n := range c.Nodes {
			if ad, ok := held[adKey(command.AdNode, n.Name())]; !ok || ad.Location != n.Location {
				return fmt.Sprintf("%s (%s) lacks node %s of %s", p.Name(), p.Location, n.Name(), n.Location)
			}
		}
		for k, life := range want {
			ad := held[k]
			if ad.Incarnation < life.incarnation || ad.Incarnation == life.incarnation && life.instance != "" && ad.Instance != life.instance {
				return fmt.Sprintf("%s (%s) holds %s as instance %s incarnation %d, want instance %s incarnation %d",
					p.Name(), p.Location, k, ad.Instance, ad.Incarnation, life.instance, life.incarnation)
			}
		}
	}
	return ""
}

// until polls check every 20 ms and returns how long it took to return ""; it fails the
// test after d with the last answer.
func until(t *testing.T, d time.Duration, what string, check func() string) time.Duration {
	t.Helper()
	start := time.Now()
	last := check()
	for last != "" {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v: %s", what, d, last)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
		last = check()
	}
	return time.Since(start)
}

// ownLife is controller p's own ad, the one it holds with an empty path.
func ownLife(p *Proc) (lifeAt, error) {
	ads, err := adsOf(p)
	if err != nil {
		return lifeAt{}, err
	}
	for _, ad := range ads {
		if ad.Kind == command.AdController && ad.ID == p.Name() && len(ad.Path) == 0 {
			return lifeAt{ad.Instance, ad.Incarnation}, nil
		}
	}
	return lifeAt{}, fmt.Errorf("%s does not hold its own ad yet", p.Name())
}

func TestLocationsAdsConverge(t *testing.T) {
	for _, locs := range []int{3, 5} {
		t.Run(strconv.Itoa(locs), func(t *testing.T) {
			if locs == 5 && testing.Short() {
				t.Skip("-short: 3 locations only")
			}
			c := StartCluster(t, Options{Locations: locs, Nodes: 2 * locs, ClusterSecret: locationsSecret})
			ready := until(t, 15*time.Second, "every controller holds every ad", func() string { return everywhere(c, nil, nil) })
			t.Logf("%d locations: every controller held every ad %v after cluster.json appeared", locs, ready.Round(time.Millisecond))

			checkPaths(t, c)
			// In a steady cluster nothing loops: while the propagation is measured, the
			// controllers receive and forward ads, and drop none as a loop or as their own.
			before := adCounters(t, c)
			measurePropagation(t, c, 12)
			after := adCounters(t, c)
			for _, k := range []string{`sibyl_controller_ads_dropped_total{reason="loop"}`, `sibyl_controller_ads_dropped_total{reason="own"}`} {
				if after[k] != before[k] {
					t.Fatalf("%s rose from %v to %v in a steady cluster", k, before[k], after[k])
				}
			}
			for _, k := range []string{"sibyl_controller_ads_received_total", "sibyl_controller_ads_forwarded_total"} {
				if after[k] <= before[k] {
					t.Fatalf("%s did not rise (%v)", k, after[k])
				}
			}
			t.Logf("while measuring: %v ads received, %v forwarded, %v dropped as duplicates (their version held already)",
				after["sibyl_controller_ads_received_total"]-before["sibyl_controller_ads_received_total"],
				after["sibyl_controller_ads_forwarded_total"]-before["sibyl_controller_ads_forwarded_total"],
				after[`sibyl_controller_ads_dropped_total{reason="duplicate"}`]-before[`sibyl_controller_ads_dropped_total{reason="duplicate"}`])

			// The status of any location names every location, its leader, and reaches it.
			st, err := c.Status()
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Locations) != locs || len(st.Controllers) != 3*locs || len(st.Nodes) != 2*locs {
				t.Fatalf("status: %d locations, %d controllers, %d nodes", len(st.Locations), len(st.Controllers), len(st.Nodes))
			}
			var loc2Leader *Proc
			for _, l := range st.Locations {
				if l.Leader == nil || !l.Reachable || len(l.Controllers) != 3 {
					t.Fatalf("status location %+v: want a leader, reachable, 3 controllers", l)
				}
				if l.Name == "loc2" {
					loc2Leader = c.Controller(*l.Leader)
				}
			}
			for _, g := range st.Groups {
				if g.Home == "" {
					t.Fatalf("group %d without a home", g.Server)
				}
			}

			// kill -9 loc2's leader and start it again on its data: its next incarnation
			// reaches every controller of every location within 5 s.
			old, err := ownLife(loc2Leader)
			if err != nil {
				t.Fatal(err)
			}
			c.Kill(loc2Leader)
			c.Restart(loc2Leader)
			// The bound is on the ad's journey: it starts once the new process serves (a
			// process start on a loaded 2-core machine is not part of it).
			c.WaitListening(loc2Leader, 15*time.Second)
			restarted := time.Now()
			var life lifeAt
			until(t, 5*time.Second, "the restarted controller's own ad", func() string {
				if life, err = ownLife(loc2Leader); err != nil {
					return err.Error()
				}
				return ""
			})
			if life.incarnation != old.incarnation+1 || life.instance == old.instance {
				t.Fatalf("restarted %s as %+v, was %+v: want a new instance and the next incarnation", loc2Leader.Name(), life, old)
			}
			want := map[string]lifeAt{adKey(command.AdController, loc2Leader.Name()): life}
			until(t, 5*time.Second-time.Since(restarted), "the restarted controller's new life at every other controller",
				func() string { return everywhere(c, loc2Leader, want) })
			t.Logf("%d locations: controller %s (%s leader) killed and restarted; its new life (incarnation %d) was held by the %d other controllers %v after the restart",
				locs, loc2Leader.Name(), loc2Leader.Location, life.incarnation, 3*locs-1, time.Since(restarted).Round(time.Millisecond))
			// The restarted controller starts with no ads and fills up from its leader's
			// pushes; that depends on its location electing a leader again, so it gets longer.
			until(t, 15*time.Second, "the restarted controller holding every ad", func() string { return everywhere(c, nil, want) })
			t.Logf("%d locations: the restarted controller held every ad %v after its restart", locs, time.Since(restarted).Round(time.Millisecond))

			// The same for a node of loc3.
			nd := c.Nodes[2]
			ads, err := adsOf(c.Controllers[0])
			if err != nil {
				t.Fatal(err)
			}
			var prev command.Ad
			for _, ad := range ads {
				if ad.Kind == command.AdNode && ad.ID == nd.Name() {
					prev = ad
				}
			}
			c.Kill(nd)
			c.Restart(nd)
			c.WaitListening(nd, 15*time.Second)
			restarted = time.Now()
			want = map[string]lifeAt{adKey(command.AdNode, nd.Name()): {incarnation: prev.Incarnation + 1}}
			took := until(t, 5*time.Second, "the restarted node's new life everywhere", func() string { return everywhere(c, nil, want) })
			t.Logf("%d locations: node %s (%s) killed and restarted; its new life (incarnation %d) was held by all %d controllers %v after the restart",
				locs, nd.Name(), nd.Location, prev.Incarnation+1, 3*locs, took.Round(time.Millisecond))

			if locs == 3 {
				joinThroughAnotherLocation(t, c)
			}
		})
	}
}

// checkPaths: on every controller every ad but its own has a path ending with that
// controller, and no path passes one controller twice.
func checkPaths(t *testing.T, c *Cluster) {
	t.Helper()
	own := map[string]string{} // controller -> its instance
	for _, p := range c.Controllers {
		life, err := ownLife(p)
		if err != nil {
			t.Fatal(err)
		}
		own[p.Name()] = life.instance
	}
	for _, p := range c.Controllers {
		ads, err := adsOf(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, ad := range ads {
			if ad.Kind == command.AdController && ad.ID == p.Name() {
				continue
			}
			seen := map[string]bool{}
			for _, i := range ad.Path {
				if seen[i] {
					t.Fatalf("%s holds %s %s with a path through %s twice: %v", p.Name(), ad.Kind, ad.ID, i, ad.Path)
				}
				seen[i] = true
			}
			if len(ad.Path) == 0 || ad.Path[len(ad.Path)-1] != own[p.Name()] {
				t.Fatalf("%s holds %s %s with path %v, not ending with itself (%s)", p.Name(), ad.Kind, ad.ID, ad.Path, own[p.Name()])
			}
		}
	}
}

// adCounters sums the ad counters of every controller.
func adCounters(t *testing.T, c *Cluster) map[string]float64 {
	t.Helper()
	hc := &http.Client{Timeout: time.Second}
	sum := map[string]float64{}
	for _, p := range c.Controllers {
		resp, err := hc.Get("http://" + p.HTTP + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "sibyl_controller_ads_") && strings.Contains(line, "_total") {
				f := strings.Fields(line)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				sum[f[0]] += v
			}
		}
	}
	return sum
}

// measurePropagation takes samples of how long one new version of a controller's ad (its
// generation rising, as it does every second) takes to be held by every other controller:
// the origin's own ad is polled until its generation rises, then every other controller
// until it holds that generation or a later one. It logs p50 and max, and fails past 5 s.
func measurePropagation(t *testing.T, c *Cluster, samples int) {
	t.Helper()
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("propagation samples: seed %d", seed)
	var times []time.Duration
	for i := 0; i < samples; i++ {
		origin := c.Controllers[rng.Intn(len(c.Controllers))]
		first, err := ownGeneration(origin)
		if err != nil {
			t.Fatal(err)
		}
		var gen uint64
		until(t, 3*time.Second, "a new generation of "+origin.Name(), func() string {
			g, err := ownGeneration(origin)
			if err != nil {
				return err.Error()
			}
			if g <= first {
				return fmt.Sprintf("still generation %d", g)
			}
			gen = g
			return ""
		})
		took := until(t, 5*time.Second, "a new generation everywhere", func() string {
			for _, p := range c.Controllers {
				if p == origin {
					continue
				}
				ads, err := adsOf(p)
				if err != nil {
					return err.Error()
				}
				ok := false
				for _, ad := range ads {
					ok = ok || ad.Kind == command.AdController && ad.ID == origin.Name() && ad.Generation >= gen
				}
				if !ok {
					return fmt.Sprintf("%s lacks generation %d of %s", p.Name(), gen, origin.Name())
				}
			}
			return ""
		})
		times = append(times, took)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	t.Logf("%d controllers: a new version of a controller's ad was held by every other one after p50 %v, max %v (%d samples, polled every 20 ms)",
		len(c.Controllers), times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), len(times))
}

func ownGeneration(p *Proc) (uint64, error) {
	ads, err := adsOf(p)
	if err != nil {
		return 0, err
	}
	for _, ad := range ads {
		if ad.Kind == command.AdController && ad.ID == p.Name() && len(ad.Path) == 0 {
			return ad.Generation, nil
		}
	}
	return 0, fmt.Errorf("%s does not hold its own ad", p.Name())
}

// joinThroughAnotherLocation starts one more node, of loc2, given only loc1's controllers
// (--controllers may name any location's): loc1 refuses its join, the node asks them for
// the locations they know, joins loc2's leader, and loc2's status shows it up with its
// group served.
func joinThroughAnotherLocation(t *testing.T, c *Cluster) {
	t.Helper()
	var tmpl *Proc
	var loc1 []string
	for _, p := range c.Nodes {
		if p.Location == "loc2" && tmpl == nil {
			tmpl = p
		}
	}
	for _, p := range c.Controllers {
		if p.Location == "loc1" {
			loc1 = append(loc1, p.HTTP)
		}
	}
	host, port, _ := strings.Cut(tmpl.HTTP, ":")
	base, _ := strconv.Atoi(port)
	id := len(c.Nodes) + 1
	addr := host + ":" + strconv.Itoa(base-int(mustAtoi(t, tmpl.Name()))+id)
	args := slices.Clone(tmpl.Args)
	set := func(flag, v string) {
		for i := range args {
			if args[i] == flag {
				args[i+1] = v
				return
			}
		}
		t.Fatalf("node args %q lack %s", args, flag)
	}
	set("--id", strconv.Itoa(id))
	set("--http", addr)
	set("--data", filepath.Join(c.Dir, "n"+strconv.Itoa(id)))
	set("--controllers", strings.Join(loc1, ","))
	extra := &Proc{ID: json.RawMessage(strconv.Itoa(id)), HTTP: addr, Location: "loc2", Args: args}
	c.Restart(extra)
	var loc2 *Proc
	for _, p := range c.Controllers {
		if p.Location == "loc2" {
			loc2 = p
		}
	}
	took := until(t, 15*time.Second, fmt.Sprintf("node %d of loc2, given loc1's controllers, up in loc2", id), func() string {
		st, err := c.StatusFrom(loc2)
		if err != nil {
			return err.Error()
		}
		for _, n := range st.Nodes {
			if int(n.ID) == id && n.Location == "loc2" && n.State == command.NodeUp {
				for _, g := range st.Groups {
					if int(g.Server) == id && g.Main != nil && g.Home == "loc2" {
						return ""
					}
				}
			}
		}
		return fmt.Sprintf("not yet: %+v", st.Nodes)
	})
	t.Logf("node %d, given only loc1's controllers, joined loc2 and serves its group after %v", id, took.Round(time.Millisecond))
	c.Kill(extra)
	log, err := os.ReadFile(filepath.Join(c.Dir, "restart-"+extra.Name()+".log"))
	if err != nil || !strings.Contains(string(log), "learnt this location's controllers") {
		t.Fatalf("node %d's log does not say it learnt loc2's controllers (%v):\n%s", id, err, log)
	}
}

func mustAtoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
