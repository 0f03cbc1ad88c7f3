package location

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sibylhq/sibyl/command"
)

// The controller's side of ads and gossip (docs/locations.md): it runs one adBook (ads.go)
// and does the I/O the book decides. Every AdEvery it makes its own next ad; a leader
// queues it for the other locations and its followers, a follower for its leader. A node's
// join and heartbeats at the leader are the node's ads. Every gossipTick it drops expired
// ads and sends each waiting batch (one request at a time per target) to
// POST /v1/internal/ads, with the cluster secret; another location is reached through the
// controller that last took its batches, its configured seeds or its controllers' ads,
// following a follower's 421 hint to its leader. A batch that cannot be delivered is
// dropped: the next ads of the same processes come within AdEvery.

const (
	pathAds         = "/v1/ads"
	pathLocations   = "/v1/locations"
	pathInternalAds = "/v1/internal/ads"

	// adSendTimeout bounds one delivery attempt.
	adSendTimeout = time.Second
)

// gossip is the controller's ad state: the book behind a mutex, and the targets a batch is
// on its way to.
type gossip struct {
	mu   sync.Mutex
	book *adBook
	busy map[adTarget]bool
	kick chan struct{}
}

// bumpIncarnation raises and persists the counter, kept in the data directory, that orders
// this process's ads across restarts (docs/replication.md case 14f).
func bumpIncarnation(dir string) (uint64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("create data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, "incarnation")
	var inc uint64
	if b, err := os.ReadFile(path); err == nil {
		inc, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	inc++
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return 0, fmt.Errorf("write incarnation %d: %w", inc, err)
	}
	_, err = fmt.Fprintln(f, inc)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return 0, fmt.Errorf("write incarnation %d to %s: %w", inc, path, err)
	}
	return inc, nil
}

// initGossip makes the controller's ad book: its identity is a fresh instance and inc, the
// incarnation its data directory gave this start.
func (c *Controller) initGossip(inc uint64) {
	seeds := map[string][]string{}
	for loc, addrs := range c.cfg.Locations {
		if loc != c.cfg.Location && len(addrs) > 0 {
			seeds[loc] = slices.Clone(addrs)
		}
	}
	self := command.Ad{Kind: command.AdController, ID: c.cfg.ID, Location: c.cfg.Location, Addr: c.cfg.HTTPAddr,
		Instance: ulid.Make().String(), Incarnation: inc}
	c.gossip = &gossip{
		book: newAdBook(self, adBookConfig{TTL: c.cfg.AdTTL, Refresh: c.cfg.AdEvery, ReachWithin: 3 * c.cfg.AdEvery, Seeds: seeds}),
		busy: map[adTarget]bool{},
		kick: make(chan struct{}, 1),
	}
}

// Instance returns this controller process's instance ID.
func (c *Controller) Instance() string { return c.gossip.book.self.Instance }

// Incarnation returns this controller's incarnation (raised at every start).
func (c *Controller) Incarnation() uint64 { return c.gossip.book.self.Incarnation }

func (g *gossip) wake() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// sender is this controller as it names itself on the batches it sends.
func (c *Controller) sender() command.AdSender {
	return command.AdSender{ID: c.cfg.ID, Location: c.cfg.Location, Addr: c.cfg.HTTPAddr, Instance: c.Instance()}
}

// gossipLoop makes this controller's ads and sends what the book queues.
func (c *Controller) gossipLoop() {
	defer c.wg.Done()
	tick := time.NewTicker(gossipTick)
	defer tick.Stop()
	var lastAd time.Time
	wasLeader := false
	for {
		leader := c.IsLeader()
		now := c.now()
		g := c.gossip
		g.mu.Lock()
		// A new leader advertises at once, so the other locations learn where it is.
		if now.Sub(lastAd) >= c.cfg.AdEvery || leader != wasLeader {
			g.book.originate(now, leader)
			lastAd, wasLeader = now, leader
		}
		g.book.expire(now)
		msgs := g.book.drain(now, func(t adTarget) bool { return g.busy[t] })
		for _, m := range msgs {
			g.busy[m.To] = true
		}
		g.mu.Unlock()
		for _, m := range msgs {
			c.wg.Add(1)
			go c.deliver(m)
		}
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		case <-g.kick:
		}
	}
}

// deliver sends one batch and records the outcome in the book.
func (c *Controller) deliver(m adMessage) {
	defer c.wg.Done()
	addr, ok := c.sendBatch(m)
	g := c.gossip
	g.mu.Lock()
	g.book.sent(c.now(), m, addr, ok)
	delete(g.busy, m.To)
	more := g.book.pending()
	g.mu.Unlock()
	if more {
		g.wake()
	}
}

// sendBatch delivers m: to this location's leader, to one controller of this location, or
// to another location through its known addresses, following leader hints. It returns the
// address that took the batch.
func (c *Controller) sendBatch(m adMessage) (string, bool) {
	var queue []string
	switch {
	case m.To.Location == c.cfg.Location && m.To.Instance == "":
		id := c.cons.leaderID()
		if id == c.cfg.ID {
			return "", true // this controller leads now: its own ad is already in its book
		}
		if rec, ok := c.fsm.controller(id); ok && id != "" {
			queue = []string{rec.HTTPAddr}
		}
	case m.To.Location == c.cfg.Location:
		c.gossip.mu.Lock()
		a := c.gossip.book.controllerAddr(m.To.Instance)
		c.gossip.mu.Unlock()
		if a != "" {
			queue = []string{a}
		}
	default:
		c.gossip.mu.Lock()
		queue = c.gossip.book.addrsOf(m.To.Location)
		c.gossip.mu.Unlock()
	}
	body, err := json.Marshal(command.AdBatch{From: c.sender(), Ads: m.Ads})
	if err != nil {
		c.log.Error().Err(err).Msg("encode an ad batch")
		return "", false
	}
	tried := map[string]bool{}
	var lastErr error
	for len(queue) > 0 && len(tried) < 8 {
		addr := queue[0]
		queue = queue[1:]
		if tried[addr] || addr == c.cfg.HTTPAddr {
			continue
		}
		tried[addr] = true
		hint, err := c.postAds(addr, body)
		if err == nil {
			return addr, true
		}
		lastErr = err
		if hint != "" && !tried[hint] {
			queue = append([]string{hint}, queue...)
		}
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("no address known")
	}
	c.adFailures.Debug().Err(lastErr).Str("to", m.To.Location).Str("instance", m.To.Instance).Int("ads", len(m.Ads)).
		Msg("ad batch not delivered; the next ads follow")
	return "", false
}

// postAds sends one batch to addr. A 421 returns the hinted leader.
func (c *Controller) postAds(addr string, body []byte) (hint string, err error) {
	ctx, cancel := context.WithTimeout(c.ctx, adSendTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(addr, pathInternalAds), bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch resp.StatusCode {
	case http.StatusOK:
		return "", nil
	case http.StatusMisdirectedRequest:
		var h command.LeaderHint
		_ = json.Unmarshal(b, &h)
		return h.Leader, fmt.Errorf("%s does not lead its location (hint %q)", addr, h.Leader)
	default:
		return "", fmt.Errorf("%s: HTTP %d: %s", addr, resp.StatusCode, bytes.TrimSpace(b))
	}
}

// handleInternalAds takes a batch of ads from another controller. Only the leader takes a
// batch from another location (a follower answers 421 naming it); a batch from this
// location (a follower's own ad, the leader's pushes) is taken by anyone.
func (c *Controller) handleInternalAds(w http.ResponseWriter, r *http.Request) {
	var batch command.AdBatch
	if !decodeBody(w, r, &batch) {
		return
	}
	if batch.From.Instance == "" || batch.From.Location == "" {
		writeError(w, http.StatusBadRequest, command.CodeBadRequest, "ads: the sender's instance and location are required")
		return
	}
	leader := c.IsLeader()
	if batch.From.Location != c.cfg.Location && !leader {
		c.writeHint(w)
		return
	}
	g := c.gossip
	now := c.now()
	accepted := 0
	g.mu.Lock()
	g.book.heard(now, batch.From)
	for _, ad := range batch.Ads {
		d := g.book.receive(now, batch.From, ad, leader)
		if d.Accepted {
			accepted++
			if d.NewLife {
				c.log.Info().Str("kind", ad.Kind).Str("id", ad.ID).Str("location", ad.Location).Str("instance", ad.Instance).
					Uint64("incarnation", ad.Incarnation).Strs("path", d.Held.Path).Msg("a process restarted: its new life's ad arrived")
			}
		}
	}
	g.mu.Unlock()
	if accepted > 0 {
		g.wake()
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "accepted": accepted})
}

// hearNode takes a node's join or heartbeat, at the leader, as the node's ad.
func (c *Controller) hearNode(id uint16, instance string, incarnation, generation uint64) {
	rec, ok := c.fsm.node(id)
	if !ok || (rec.Location != "" && rec.Location != c.cfg.Location) {
		// A guest of another location: its own location's controllers advertise it.
		return
	}
	ad := command.Ad{Kind: command.AdNode, ID: strconv.Itoa(int(id)), Location: rec.Location, Addr: rec.Addr,
		Instance: instance, Incarnation: incarnation, Generation: generation}
	if ad.Location == "" {
		ad.Location = c.cfg.Location
	}
	g := c.gossip
	g.mu.Lock()
	_, taken := g.book.hear(c.now(), ad, true)
	g.mu.Unlock()
	if taken {
		g.wake()
	}
}

// handleAds serves GET /v1/ads: every ad this controller holds.
func (c *Controller) handleAds(w http.ResponseWriter, r *http.Request) {
	g := c.gossip
	g.mu.Lock()
	ads := g.book.list(c.now())
	g.mu.Unlock()
	writeJSON(w, http.StatusOK, ads)
}

// handleLocations serves GET /v1/locations: the leader answers; a follower asks its leader
// and answers from its own book when that fails.
func (c *Controller) handleLocations(w http.ResponseWriter, r *http.Request) {
	if !c.IsLeader() && r.Header.Get(proxiedHeader) == "" {
		if id := c.cons.leaderID(); id != "" && id != c.cfg.ID {
			if rec, ok := c.fsm.controller(id); ok {
				var out command.LocationsReply
				if err := c.getFrom(r.Context(), rec.HTTPAddr, pathLocations, &out); err == nil {
					writeJSON(w, http.StatusOK, out)
					return
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, c.localLocations())
}

// localLocations is this controller's own view of every location, its own first.
func (c *Controller) localLocations() command.LocationsReply {
	now := c.now()
	g := c.gossip
	g.mu.Lock()
	views := g.book.locations(now)
	g.mu.Unlock()
	out := command.LocationsReply{Self: command.LocationSelf{Name: c.cfg.Location, Instance: c.Instance()}}
	own := command.LocationInfo{Name: c.cfg.Location, Controllers: []string{}}
	st, _ := c.fsm.view()
	for _, rec := range st.sortedControllers() {
		if rec.Location == c.cfg.Location && rec.HTTPAddr != "" {
			own.Controllers = append(own.Controllers, rec.HTTPAddr)
		}
	}
	if !slices.Contains(own.Controllers, c.cfg.HTTPAddr) {
		own.Controllers = append(own.Controllers, c.cfg.HTTPAddr)
	}
	if id := c.cons.leaderID(); id != "" {
		if rec, ok := st.Controllers[id]; ok && rec.HTTPAddr != "" {
			own.Leader = &rec.HTTPAddr
		} else if id == c.cfg.ID {
			a := c.cfg.HTTPAddr
			own.Leader = &a
		}
		own.Reachable = true
		zero := int64(0)
		own.HeardMs = &zero
	}
	out.Locations = append(out.Locations, own)
	for _, v := range views {
		info := command.LocationInfo{Name: v.Name, Controllers: slices.Clone(v.Seeds), Reachable: v.Reachable}
		for _, ad := range v.Controllers {
			if !slices.Contains(info.Controllers, ad.Addr) {
				info.Controllers = append(info.Controllers, ad.Addr)
			}
		}
		if info.Controllers == nil {
			info.Controllers = []string{}
		}
		if v.LeaderAddr != "" {
			a := v.LeaderAddr
			info.Leader = &a
		}
		if !v.Heard.IsZero() {
			ms := now.Sub(v.Heard).Milliseconds()
			info.HeardMs = &ms
		}
		out.Locations = append(out.Locations, info)
	}
	return out
}

// getFrom GETs path from the controller at addr (as a proxied request) into out.
func (c *Controller) getFrom(ctx context.Context, addr, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(addr, path), nil)
	if err != nil {
		return err
	}
	req.Header.Set(proxiedHeader, c.cfg.ID)
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s%s: HTTP %d", addr, path, resp.StatusCode)
	}
	return json.Unmarshal(body, out)
}

// remoteLocations returns the book's view of the other locations, for the status.
func (c *Controller) remoteLocations(now time.Time) []locationView {
	g := c.gossip
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.book.locations(now)
}

// adCounters returns the ad counters, for the metrics.
func (c *Controller) adCounters() (adStats, int) {
	g := c.gossip
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.book.counters(), len(g.book.held)
}
