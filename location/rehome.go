package location

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Moving a group's home (admin rehome, docs/locations.md "Moving a home", docs/replication.md
// case 6). A group whose home lost every controller cannot be promoted: only its home
// raises its epochs. The operator names another location, whose leader takes the group
// over through the seal quorum a promotion uses, with two differences that fence the old
// home for good:
//
//   - The ballot is (home generation, epoch). The new home's generation is the old one + 1
//     and its epochs lie in that generation's band (command.EpochBand), above every epoch
//     the old home could have opened; copies record (home, generation) durably with their
//     seal and refuse any seal of an older generation, or of another home of the same one.
//   - A majority of the voters of every config in use must seal, not only R: the old home
//     needs R of the active config for any promotion, and R + a majority > S, so once the
//     rehome is sealed the old home can never seal a quorum again; and two locations that
//     take the same group at once cannot both gather a majority of one config, since a copy
//     promises one home per generation.
//
// The rehome is refused while any controller of the old home answers, and each copy checks
// on its own that it hears none of them either.

// rehomeMaxRounds bounds the attempts at a higher epoch after a copy answers that it has
// promised a later one.
const rehomeMaxRounds = 3

// adminRehome takes group req.Server over from its home, which must not answer.
func (c *Controller) adminRehome(ctx context.Context, t *leaderTerm, req *command.Request) *command.Error {
	asked := c.now()
	if req.Server == nil || *req.Server < 1 || *req.Server > 65535 {
		return command.Errorf(command.CodeBadRequest, "rehome: server must be a server ID in 1..65535")
	}
	server := uint16(*req.Server)
	if req.Location != c.cfg.Location {
		if _, known := c.locationAddrs(req.Location); known {
			return command.Errorf(command.CodeBadRequest, "rehome of group %d to %q: this controller is of %q; ask %q's controllers",
				server, req.Location, c.cfg.Location, req.Location)
		}
		return command.Errorf(command.CodeBadRequest, "rehome of group %d: location %q is unknown", server, req.Location)
	}
	if _, ok := c.fsm.group(server); ok {
		return command.Errorf(command.CodeConflict, "rehome of group %d: it is homed in %q already", server, c.cfg.Location)
	}
	rec, views := c.newestGroupView(ctx, t, server)
	if rec == nil {
		return command.Errorf(command.CodeNotFound, "rehome of group %d: no reachable node knows the group", server)
	}
	old := rec.Home
	if old == c.cfg.Location {
		return command.Errorf(command.CodeConflict, "rehome of group %d: nodes name %q as its home; it is not in its directory", server, old)
	}
	if addr, ok := c.locationAnswers(ctx, old); ok {
		return command.Errorf(command.CodeConflict, "rehome of group %d: its home %q answers (controller %s); move a home only when its controllers are gone",
			server, old, addr)
	}
	if v := newerConfigViewed(rec, views); v > 0 {
		return command.Errorf(command.CodeConflict, "rehome of group %d: %s", server, staleRecordMsg(rec, v))
	}
	if cfg, ok := configWithoutVoter(rec); ok {
		return command.Errorf(command.CodeConflict, "rehome of group %d: its config version %d has no voter, so no majority of it can seal and no main could be chosen "+
			"(every acknowledged write may be on its main alone); move it once it has a voting sibling, or bring back its home", server, cfg.Version)
	}
	if !t.promo.tryStart(server, time.Time{}) {
		return command.Errorf(command.CodeConflict, "rehome of group %d: a promotion of it is under way", server)
	}
	ok := false
	defer func() { t.promo.finish(server, ok, time.Time{}, 0) }()

	g := rehomedRecord(rec, c.cfg.Location, views, asked)
	if err := c.proposeLogged(beginRehome{Group: g}); err != nil {
		return command.Errorf(command.CodeConflict, "rehome of group %d: %v", server, err)
	}
	log := c.log.With().Uint16("group", server).Str("from", old).Uint64("homeGen", g.HomeGen).Logger()
	log.Info().Uint64("epoch", g.Promotion.Epoch).Interface("voters", g.Voters()).Msg("rehome: sealing")
	for round := 0; round < rehomeMaxRounds; round++ {
		epoch := g.Promotion.Epoch
		replies := c.seal(t, &g, command.SealRequest{Server: server, Epoch: epoch, From: g.Main,
			Home: c.cfg.Location, HomeGen: g.HomeGen, RehomedFrom: old})
		if n, v := newerConfigSealed(&g, replies); v > 0 {
			log.Warn().Uint16("node", n).Uint64("config", v).Uint64("recordConfig", recordConfig(&g)).
				Msg("rehome: a sealed copy followed a newer config than the record; the attempt is abandoned and no main is chosen")
			_ = c.proposeLogged(abandonPromotion{Server: server, Epoch: epoch})
			return command.Errorf(command.CodeConflict, "rehome of group %d: homed in %q now, but no main is chosen: node %d's %s",
				server, c.cfg.Location, n, staleRecordMsg(&g, v))
		}
		sealed, above := sealedAt(replies, epoch)
		if above > epoch {
			next := above + 1
			log.Info().Uint64("promised", above).Uint64("epoch", next).Msg("rehome: a copy promised a later epoch; sealing again above it")
			if err := c.proposeLogged(reopenRehome{Server: server, Epoch: next}); err != nil {
				break
			}
			g.Promotion.Epoch = next
			continue
		}
		if !sealsCoverMajority(&g, sealed) {
			log.Warn().Int("sealed", len(sealed)).Msg("rehome: too few copies sealed; the attempt is abandoned and the group stays here")
			_ = c.proposeLogged(abandonPromotion{Server: server, Epoch: epoch})
			return command.Errorf(command.CodeUnavailable,
				"rehome of group %d: homed in %q now, but %d copies sealed, fewer than a majority of the voters of every config (%v); its promotion goes on as copies answer",
				server, c.cfg.Location, len(sealed), g.Voters())
		}
		chosen := chooseMainAt(sealed, c.atHome(t))
		if err := c.proposeLogged(choosePromotion{Server: server, Epoch: epoch, Main: chosen.Node, CopyID: chosen.CopyID}); err != nil {
			_ = c.proposeLogged(abandonPromotion{Server: server, Epoch: epoch})
			return command.Errorf(command.CodeUnavailable, "rehome of group %d: homed in %q now; choosing its main: %v", server, c.cfg.Location, err)
		}
		ok = true
		log.Info().Uint16("main", chosen.Node).Uint64("epoch", epoch).Uint64("lastEpoch", chosen.LastEpoch).
			Uint64("lastSeq", chosen.LastSeq).Dur("took", c.now().Sub(asked)).Msg("rehome: new main chosen")
		return nil
	}
	_ = c.proposeLogged(abandonPromotion{Server: server, Epoch: g.Promotion.Epoch})
	return command.Errorf(command.CodeUnavailable, "rehome of group %d: homed in %q now, but copies kept promising later epochs; its promotion goes on", server, c.cfg.Location)
}

// rehomedRecord is rec as home loc takes it over: the next home generation, and an open
// attempt at an epoch of that generation's band above every epoch a node reported its copy
// promised or logged.
func rehomedRecord(rec *command.GroupInfo, loc string, views []command.GroupView, asked time.Time) command.GroupInfo {
	g := cloneGroup(rec)
	gen := rec.HomeGen + 1
	epoch := max(command.EpochBand(gen), rec.NextEpoch())
	for _, v := range views {
		if v.Copy != nil {
			epoch = max(epoch, v.Copy.Epoch+1, v.Copy.LastEpoch+1)
		}
	}
	g.Home, g.HomeGen, g.RehomedFrom = loc, gen, rec.Home
	g.Promotion = &command.Promotion{Epoch: epoch, Phase: command.PromotionSealing, From: rec.Main,
		Reason: command.ReasonRehome, SuspectedMs: asked.UnixMilli()}
	return g
}

// sealedAt splits seal replies: those that hold epoch (counted), and the highest epoch any
// reply holds.
func sealedAt(replies map[uint16]command.SealReply, epoch uint64) (map[uint16]command.SealReply, uint64) {
	out := map[uint16]command.SealReply{}
	above := epoch
	for n, r := range replies {
		above = max(above, r.Epoch)
		if r.Epoch == epoch {
			out[n] = r
		}
	}
	return out, above
}

// A rehome starts from the newest directory view a reachable node holds; the old home may
// have changed the group's configs since (docs/locations.md "Moving a home", rule 5). Each
// change commits under the joint quorum, so a write quorum of the older config followed the
// newer one, and every copy records the highest config version it followed before it acks
// (command.SealReply.Config). A majority of the older config, or R of it, meets that write
// quorum: when the record is stale, a sealed copy says so, and choosing from the record's
// configs could lose writes the newer config acknowledged.

// recordConfig is the newest config version g's record knows: its pending config's while
// there is one, else its active config's.
func recordConfig(g *command.GroupInfo) uint64 {
	v := g.Active.Version
	if g.Pending != nil {
		v = max(v, g.Pending.Version)
	}
	return v
}

// newerConfigSealed returns the copy reporting the highest config version above g's record
// among replies, and that version (0: none does).
func newerConfigSealed(g *command.GroupInfo, replies map[uint16]command.SealReply) (node uint16, version uint64) {
	for n, r := range replies {
		if r.Config > recordConfig(g) && (r.Config > version || r.Config == version && n < node) {
			node, version = n, r.Config
		}
	}
	return node, version
}

// newerConfigViewed returns the highest config version a node's copy reports in views above
// rec's configs (0: none does).
func newerConfigViewed(rec *command.GroupInfo, views []command.GroupView) uint64 {
	var version uint64
	for _, v := range views {
		if v.Copy != nil && v.Copy.Config > recordConfig(rec) {
			version = max(version, v.Copy.Config)
		}
	}
	return version
}

// staleRecordMsg says why a record is stale and what brings the group back.
func staleRecordMsg(rec *command.GroupInfo, version uint64) string {
	return fmt.Sprintf("a copy holds config version %d, newer than the record's %d (the nodes that answered hold an older directory of the group): "+
		"bring back a copy of the newer config with a node that followed it, or the old home's controllers", version, recordConfig(rec))
}

// rehomedWithoutMain: g was taken over by a rehome and no main was chosen at its home
// generation yet, so its configs are still those of the view the rehome started from.
func rehomedWithoutMain(g *command.GroupInfo) bool {
	return g.RehomedFrom != "" && command.HomeGenOfEpoch(g.Epoch) < g.HomeGen
}

// configWithoutVoter returns a config of g in use that has no voter (the active one of a
// group whose main has no voting sibling yet): no seal can cover it, so a rehome could
// never choose a main, and the group, taken over, would stay without one for good.
func configWithoutVoter(g *command.GroupInfo) (command.Config, bool) {
	if len(g.Active.Voters) == 0 {
		return g.Active, true
	}
	if g.Pending != nil && len(g.Pending.Voters) == 0 {
		return *g.Pending, true
	}
	return command.Config{}, false
}

// sealsCoverMajority: a majority of the voters of every config in use are sealed.
func sealsCoverMajority(g *command.GroupInfo, replies map[uint16]command.SealReply) bool {
	return sealedInEachConfig(g, replies, func(s int) int { return s/2 + 1 })
}

// newestGroupView asks every node of this location's directory that is up what it knows of
// group server, and returns the record of the newest directory any of them holds (the
// highest home generation, then directory index) with every view.
func (c *Controller) newestGroupView(ctx context.Context, t *leaderTerm, server uint16) (*command.GroupInfo, []command.GroupView) {
	d := c.directoryFor(t)
	var mu sync.Mutex
	var views []command.GroupView
	var wg sync.WaitGroup
	for _, n := range d.Nodes {
		if n.State != command.NodeUp {
			continue
		}
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			var v command.GroupView
			if err := c.getNode(ctx, addr, "/v1/internal/group?server="+strconv.Itoa(int(server)), &v); err != nil {
				c.log.Debug().Err(err).Str("addr", addr).Uint16("group", server).Msg("rehome: no view of the group")
				return
			}
			mu.Lock()
			views = append(views, v)
			mu.Unlock()
		}(n.Addr)
	}
	wg.Wait()
	return newestRecord(server, views), views
}

// newestRecord is the record of group server in the newest directory among views: the
// highest home generation, then directory index (nil when no view lists the group).
func newestRecord(server uint16, views []command.GroupView) *command.GroupInfo {
	var best *command.GroupView
	for i := range views {
		v := &views[i]
		if v.Group == nil || v.Group.Server != server {
			continue
		}
		if best == nil || v.Group.HomeGen > best.Group.HomeGen ||
			(v.Group.HomeGen == best.Group.HomeGen && v.Index > best.Index) {
			best = v
		}
	}
	if best == nil {
		return nil
	}
	return best.Group
}

// getNode GETs path from the node at addr into out.
func (c *Controller) getNode(ctx context.Context, addr, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(addr, path), nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s at %s: HTTP %d", path, addr, resp.StatusCode)
	}
	return json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(out)
}

// locationAddrs returns the HTTP addresses of location loc's controllers this controller
// knows (configured, or from their ads); known is false for a location it never heard of.
func (c *Controller) locationAddrs(loc string) (addrs []string, known bool) {
	for _, v := range c.remoteLocations(c.now()) {
		if v.Name != loc {
			continue
		}
		addrs = slices.Clone(v.Seeds)
		for _, ad := range v.Controllers {
			if ad.Addr != "" && !slices.Contains(addrs, ad.Addr) {
				addrs = append(addrs, ad.Addr)
			}
		}
		return addrs, true
	}
	return nil, false
}

// locationAnswers reports whether any controller of location loc answers an HTTP request
// (whatever it says: a controller without a leader may get one again), and which.
func (c *Controller) locationAnswers(ctx context.Context, loc string) (string, bool) {
	addrs, _ := c.locationAddrs(loc)
	type answer struct {
		addr string
		ok   bool
	}
	ch := make(chan answer, len(addrs))
	for _, a := range addrs {
		go func(addr string) {
			actx, cancel := context.WithTimeout(ctx, c.cfg.DownAfter)
			defer cancel()
			req, err := http.NewRequestWithContext(actx, http.MethodGet, c.url(addr, "/healthz"), nil)
			if err != nil {
				ch <- answer{addr, false}
				return
			}
			resp, err := c.client.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			ch <- answer{addr, err == nil}
		}(a)
	}
	for range addrs {
		if a := <-ch; a.ok {
			return a.addr, true
		}
	}
	return "", false
}

// noteMovedHomes drops every group homed here that a copy reports sealed by a later home
// generation (disownGroup): another location took it over while this one had no
// controller. Each group is proposed once at a time.
func (c *Controller) noteMovedHomes(hb command.Heartbeat) {
	for _, r := range hb.Groups {
		g, ok := c.fsm.group(r.Server)
		if !ok || !movedAway(r, c.cfg.Location, &g) {
			continue
		}
		if _, busy := c.disowning.LoadOrStore(r.Server, true); busy {
			continue
		}
		cmd := disownGroup{Server: r.Server, Home: r.Home, HomeGen: r.HomeGen}
		go func() {
			defer c.disowning.Delete(cmd.Server)
			if err := c.proposeLogged(cmd); err == nil {
				c.log.Warn().Uint16("group", cmd.Server).Str("home", cmd.Home).Uint64("homeGen", cmd.HomeGen).Uint16("reportedBy", hb.Node).
					Msg("group moved: another location took it over (rehome); this location no longer acts for it")
			}
		}()
	}
}

// movedAway: copy report r names a later home generation, in another location, than
// location loc's record g of the group: the group was taken over from loc.
func movedAway(r command.GroupReport, loc string, g *command.GroupInfo) bool {
	return r.HomeGen != 0 && r.Home != "" && r.Home != loc && g.HomeGen < r.HomeGen
}
