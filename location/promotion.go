package location

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// The leader's side of promotion (docs/design.md "Promotion"): detect a failed main, seal R
// voters of every config in use at a fresh epoch, choose the sibling with the highest last
// entry (epoch, seq), and commit the choice; nodes learn it from the directory. Each step is
// committed before it acts, so a leader change in the middle either finds the choice
// committed (nothing left to do) or abandons the open attempt for a fresh epoch.

// promotions is the leader's memory of attempts in this term.
type promotions struct {
	mu      sync.Mutex
	running map[uint16]bool      // group -> an attempt is in flight
	next    map[uint16]time.Time // group -> earliest next attempt (backoff)
	fails   map[uint16]int       // group -> consecutive failed attempts
	dead    map[uint16]time.Time // node -> when a probe found nothing listening
	useless map[uint16]time.Time // group -> since when its main reports no write quorum
	fenced  map[uint16]time.Time // group -> since when its main reports no role in its epoch
	chosen  map[uint16]chosenAt  // group -> when this term first saw its open choice
	// suspected: node -> when a sibling first reported its stream from the node broken, or
	// a probe found it gone; forgotten when the node is heard again. The start of a
	// promotion's recorded duration.
	suspected map[uint16]time.Time
}

// chosenAt is when the leader first saw a group's chosen, not yet activated, attempt.
type chosenAt struct {
	epoch uint64
	since time.Time
}

func newPromotions() *promotions {
	return &promotions{running: map[uint16]bool{}, next: map[uint16]time.Time{}, fails: map[uint16]int{},
		dead: map[uint16]time.Time{}, useless: map[uint16]time.Time{}, fenced: map[uint16]time.Time{}, chosen: map[uint16]chosenAt{},
		suspected: map[uint16]time.Time{}}
}

// suspect records that node's failure was first suspected at now, unless it already was.
func (p *promotions) suspect(node uint16, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.suspected[node]; !ok {
		p.suspected[node] = now
	}
}

// suspectedAt returns when node was first suspected since it was last heard.
func (p *promotions) suspectedAt(node uint16) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.suspected[node]
	return at, ok
}

// chosenSince returns when this term first saw group g's chosen main waiting for its
// barrier in epoch (now, the first time it is asked).
func (p *promotions) chosenSince(g uint16, epoch uint64, now time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.chosen[g]; ok && c.epoch == epoch {
		return c.since
	}
	p.chosen[g] = chosenAt{epoch: epoch, since: now}
	return now
}

// awaitingBarrier reports whether g's main was chosen by a promotion whose config it has
// not yet activated: its epoch barrier has not committed (docs/replication.md case 3, rule 2 of
// case 1). The main's current report showing the config activated counts as committed,
// before the activate command lands. A chosen main that restarted is in a later epoch than
// the attempt's (joinNode) and still owes a barrier in it.
func awaitingBarrier(g *command.GroupInfo, reports reportSet) bool {
	p := g.Promotion
	if p == nil || p.Phase != command.PromotionChosen || p.Chosen != g.Main || p.Epoch > g.Epoch || g.Pending == nil {
		return false
	}
	rep, ok := mainReport(g, reports)
	return !ok || rep.Activated < g.Pending.Version
}

// barrierOverdue: g's main was chosen by a promotion (first seen by this term at since)
// and its barrier has not committed within downAfter: it is treated as down, so a fresh
// promotion may start (docs/replication.md case 7). A new leader counts from its first look, so
// it never replaces a main the moment it takes over.
func barrierOverdue(g *command.GroupInfo, reports reportSet, since, now time.Time, downAfter time.Duration) bool {
	return awaitingBarrier(g, reports) && now.Sub(since) > downAfter
}

// markDead records that node's listener refused a connection at now: the process is gone.
func (p *promotions) markDead(node uint16, now time.Time) {
	p.mu.Lock()
	p.dead[node] = now
	if _, ok := p.suspected[node]; !ok {
		p.suspected[node] = now
	}
	p.mu.Unlock()
}

// alive forgets a dead mark when the node is heard from again.
func (p *promotions) alive(node uint16) {
	p.mu.Lock()
	delete(p.dead, node)
	delete(p.suspected, node)
	p.mu.Unlock()
}

func (p *promotions) isDead(node uint16) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.dead[node]
	return ok
}

// uselessFor records whether group g's main reports a write quorum now, and returns for how
// long it has reported none.
func (p *promotions) uselessFor(g uint16, noQuorum bool, now time.Time) time.Duration {
	return p.heldFor(p.useless, g, noQuorum, now)
}

// fencedFor records whether group g's main reports no role in its epoch now, and returns
// for how long it has.
func (p *promotions) fencedFor(g uint16, fenced bool, now time.Time) time.Duration {
	return p.heldFor(p.fenced, g, fenced, now)
}

// heldFor records in since whether a condition holds for group g now, and returns for how
// long it has held without a break.
func (p *promotions) heldFor(since map[uint16]time.Time, g uint16, holds bool, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !holds {
		delete(since, g)
		return 0
	}
	at, ok := since[g]
	if !ok {
		since[g] = now
		return 0
	}
	return now.Sub(at)
}

// tryStart claims group g for an attempt if none runs and its backoff has passed.
func (p *promotions) tryStart(g uint16, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	// A zero now (an operator's planned promotion) ignores the automatic backoff.
	if p.running[g] || (!now.IsZero() && now.Before(p.next[g])) {
		return false
	}
	p.running[g] = true
	return true
}

func (p *promotions) isRunning(g uint16) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running[g]
}

// finish ends an attempt; automatic attempts on a group back off exponentially from
// 2×down-after, so an unstable group does not flap through epochs.
func (p *promotions) finish(g uint16, ok bool, now time.Time, downAfter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.running, g)
	if ok {
		p.fails[g] = 0
	} else {
		p.fails[g]++
	}
	wait := 2 * downAfter << min(p.fails[g], 5)
	p.next[g] = now.Add(wait)
}

// planPromotions runs in every reconcile round of the leader.
func (c *Controller) planPromotions(t *leaderTerm, d command.Directory, reports reportSet) {
	for _, a := range planPromotionActions(t, d, reports, c.now(), c.cfg.DownAfter) {
		g := a.group
		if a.abandon {
			c.proposeLogged(abandonPromotion{Server: g.Server, Epoch: g.Promotion.Epoch})
			continue
		}
		if a.refresh {
			c.log.Warn().Uint16("group", g.Server).Uint64("epoch", g.Epoch).Uint16("main", g.Main).
				Msg("the main reports no role in its epoch (fenced by an abandoned attempt) and no promotion can start; giving it a fresh epoch")
			c.proposeLogged(refreshMain{Server: g.Server, Epoch: g.Epoch, Main: g.Main})
			continue
		}
		if a.overdue > 0 {
			c.log.Warn().Uint16("group", g.Server).Uint64("epoch", g.Epoch).Uint16("main", g.Main).
				Dur("waited", a.overdue).Msg("the chosen main's barrier did not commit within down-after; treating it as down")
		}
		if !a.start {
			continue
		}
		var passOver uint16
		if a.overdue > 0 {
			passOver = g.Main // it counts as down: another copy is chosen if the seals allow
		}
		c.wg.Add(1)
		go c.promote(t, a, passOver)
	}
}

// promotionAction is what one reconcile round of leader term t does about one group's
// promotion: abandon an open attempt no attempt of this term runs, or start one (already
// claimed with tryStart; the caller runs it and calls finish). overdue, when set, is how
// long a chosen main has waited for its barrier beyond which it is treated as down.
type promotionAction struct {
	group   command.GroupInfo
	abandon bool
	refresh bool // give the fenced main a fresh epoch (refreshMain)
	start   bool
	auto    bool
	overdue time.Duration
	why     string // what made the main count as failed, for the log
	// reason (a command.Reason* value) and since (when the leader first had cause) are
	// recorded with the attempt.
	reason string
	since  time.Time
}

// planPromotionActions is the leader's promotion planning for one round, a function of the
// directory, the nodes' reports, the term's memory and the leader's clock (now), so that
// the seeded simulation runs the same decisions without raft, HTTP or goroutines.
func planPromotionActions(t *leaderTerm, d command.Directory, reports reportSet, now time.Time, downAfter time.Duration) []promotionAction {
	var out []promotionAction
	for i := range d.Groups {
		g := d.Groups[i]
		if g.Promotion != nil && g.Promotion.Phase == command.PromotionSealing && !t.promo.isRunning(g.Server) {
			// Opened by an earlier leader (or an attempt that died with its goroutine):
			// nothing committed a choice, so abandon it; its epoch stays consumed.
			out = append(out, promotionAction{group: g, abandon: true})
			continue
		}
		if len(g.Active.Voters) == 0 {
			continue
		}
		// A main that is alive but cannot reach a write quorum (its replication links are
		// cut, or its siblings' answers do not reach it) is as useless as a dead one; its own
		// report is the evidence, so siblings that still hear it may be sealed (not auto).
		// A group without a main (its main came back with a wiped disk) needs one; no
		// sibling hears a main to refuse an automatic seal for.
		auto := g.Main != 0
		failed := g.Main == 0 || mainFailed(t, &d, g.Main)
		why, reason, since := "no main", command.ReasonNoMain, now
		if g.Main != 0 {
			why, reason, since = "main down or gone", command.ReasonMainUnreachable, mainSuspectedAt(t, g.Main, now, downAfter)
		}
		if fault, d := t.degradedFor(g.Main, now); !failed && g.Main != 0 && fault != "" && d >= downAfter {
			// Its disk fails (its heartbeats say so): it serves nothing and acknowledges
			// nothing; its siblings may still hear its stream, so seal non-auto. A degraded
			// sibling refuses the seal, so the new main is one whose disk works.
			failed, auto, why, reason, since = true, false, "main's disk fails: "+fault, command.ReasonDiskFault, now.Add(-d)
		}
		var overdue time.Duration
		if !failed && awaitingBarrier(&g, reports) {
			// A chosen main is alive but its barrier did not commit in time (cut off from
			// its new config, or stuck): its siblings may still hear it, so seal non-auto.
			chosen := t.promo.chosenSince(g.Server, g.Epoch, now)
			if barrierOverdue(&g, reports, chosen, now, downAfter) {
				overdue = now.Sub(chosen)
				failed, auto, why, reason, since = true, false, "barrier overdue", command.ReasonBarrierOverdue, chosen
			}
		}
		if !failed {
			// The main is to blame only if its voters are demonstrably alive (they heartbeat
			// this controller now): frozen or dead siblings also leave a main without quorum,
			// and replacing it would not help. The timer runs only while that holds, so a
			// report written before the siblings came back does not count.
			noQuorum, silent := mainNoQuorum(&g, reports)
			fresh := votersFresh(t, &g, now, downAfter)
			useless := t.promo.uselessFor(g.Server, fresh && (noQuorum || silent), now)
			if noQuorum && useless >= downAfter/2 {
				failed, auto, why, reason, since = true, false, "main reports no write quorum", command.ReasonNoQuorum, now.Add(-useless)
			} else if silent && useless >= downAfter {
				failed, auto, why, reason, since = true, false, "main reports no role in its epoch", command.ReasonMainSilent, now.Add(-useless)
			}
		}
		a := promotionAction{group: g, auto: auto, overdue: overdue, why: why, reason: reason, since: since}
		// Sealing fewer than R voters of a config cannot succeed, and every seal it does
		// place fences the current main: wait until enough voters are up.
		a.start = failed && sealable(&g, &d) && t.promo.tryStart(g.Server, now)
		if !a.start && mainStranded(t, &g, now, downAfter) {
			a.refresh = true
		}
		if a.start || a.refresh || overdue > 0 {
			out = append(out, a)
		}
	}
	return out
}

// mainStranded: g's main is alive in its epoch but has reported no role in it for
// down-after, and no attempt is open: an attempt sealed siblings against it and was
// abandoned while the main was out of reach (so without Refresh). When no new attempt can
// start either (a config in use has no voter, or fewer than R of its voters are up), the
// main would wait for ever; a fresh epoch lets it go on (refreshMain). A main that lost its
// copy (no entry) or whose disk fails is left alone: a fresh epoch would not make it serve.
// So is a main named only by a rehome's record (rehomedWithoutMain): that record may be
// older than a promotion of the old home, whose main acked writes this one never held.
func mainStranded(t *leaderTerm, g *command.GroupInfo, now time.Time, downAfter time.Duration) bool {
	open := g.Promotion != nil && g.Promotion.Phase == command.PromotionSealing
	stepped := false
	fault, _ := t.degradedFor(g.Main, now)
	if !open && fault == "" && !rehomedWithoutMain(g) && !t.promo.isRunning(g.Server) && mainServing(t, g, now, downAfter) {
		r, _ := t.snapshotReports().get(g.Main, g.Server)
		stepped = r.Role != command.RoleMain && r.LastSeq > 0
	}
	return t.promo.fencedFor(g.Server, stepped, now) >= downAfter
}

// noQuorum reads the main's latest report: noQuorum when fewer than a majority of the
// active voters answered it within down-after; silent when the main's node sends no report
// as main of the group's epoch.
func mainNoQuorum(g *command.GroupInfo, reports reportSet) (noQuorum, silent bool) {
	rep, ok := mainReport(g, reports)
	if !ok {
		_, heard := reports[g.Main]
		return false, heard
	}
	recent := 0
	for _, s := range rep.Siblings {
		if s.Recent && slices.Contains(g.Active.Voters, s.Node) {
			recent++
		}
	}
	return recent < len(g.Active.Voters)/2+1, false
}

// votersFresh: at least R voters of every config in use heartbeated within down-after/2.
func votersFresh(t *leaderTerm, g *command.GroupInfo, now time.Time, downAfter time.Duration) bool {
	configs := []command.Config{g.Active}
	if g.Pending != nil {
		configs = append(configs, *g.Pending)
	}
	for _, cfg := range configs {
		s, fresh := len(cfg.Voters), 0
		for _, v := range cfg.Voters {
			if t.heardWithin(v, now, downAfter/2) {
				fresh++
			}
		}
		if s == 0 || fresh < s-(s/2+1)+1 {
			return false
		}
	}
	return true
}

// sealable: at least R voters of every config in use are up, so a seal can cover them.
func sealable(g *command.GroupInfo, d *command.Directory) bool {
	configs := []command.Config{g.Active}
	if g.Pending != nil {
		configs = append(configs, *g.Pending)
	}
	for _, cfg := range configs {
		s := len(cfg.Voters)
		up := 0
		for _, v := range cfg.Voters {
			if n := d.NodeByID(v); n != nil && n.State == command.NodeUp {
				up++
			}
		}
		if s == 0 || up < s-(s/2+1)+1 {
			return false
		}
	}
	return true
}

// mainServing: g's main heartbeats within down-after and reports its copy in g's epoch (the
// process that was made main, not a restarted one). Its role may read "none": a main the
// siblings fenced steps down and waits for the directory.
func mainServing(t *leaderTerm, g *command.GroupInfo, now time.Time, downAfter time.Duration) bool {
	if g.Main == 0 || !t.heardWithin(g.Main, now, downAfter) {
		return false
	}
	r, ok := t.snapshotReports().get(g.Main, g.Server)
	return ok && r.Epoch == g.Epoch && !r.Resyncing
}

// mainFenced: g's main still serves, and an attempt that is about to be abandoned may have
// fenced it: a sibling sealed (it answered), or the main reports it stepped down. A main
// that nobody sealed against keeps its epoch: a refresh would fail its pending writes.
func mainFenced(t *leaderTerm, g *command.GroupInfo, replies map[uint16]command.SealReply, now time.Time, downAfter time.Duration) bool {
	if !mainServing(t, g, now, downAfter) {
		return false
	}
	r, _ := t.snapshotReports().get(g.Main, g.Server)
	return len(replies) > 0 || r.Role != command.RoleMain
}

// mainSuspectedAt is when the leader first had cause to doubt main: a sibling's report or a
// probe, else the moment its heartbeats were overdue (last heard + down-after), else now.
func mainSuspectedAt(t *leaderTerm, main uint16, now time.Time, downAfter time.Duration) time.Time {
	at := now
	if last, ok := t.lastHeard(main); ok && last.Add(downAfter).Before(at) {
		at = last.Add(downAfter)
	}
	if s, ok := t.promo.suspectedAt(main); ok && s.Before(at) {
		at = s
	}
	return at
}

// mainFailed: the main's heartbeats stopped for down-after, or a probe found its process gone.
func mainFailed(t *leaderTerm, d *command.Directory, main uint16) bool {
	if n := d.NodeByID(main); n != nil && n.State == command.NodeDown {
		return true
	}
	return t.promo.isDead(main)
}

// promote runs one automatic attempt for action a's group, choosing another copy than
// passOver when the seals allow it (decidePromotion).
func (c *Controller) promote(t *leaderTerm, a promotionAction, passOver uint16) {
	defer c.wg.Done()
	g, auto, why := a.group, a.auto, a.why
	start := c.now()
	ok := false
	defer func() { t.promo.finish(g.Server, ok, c.now(), c.cfg.DownAfter) }()
	epoch := g.NextEpoch()
	begin := beginPromotion{Server: g.Server, Epoch: epoch, From: g.Main, Reason: a.reason, SuspectedMs: a.since.UnixMilli()}
	if err := c.proposeLogged(begin); err != nil {
		return
	}
	log := c.log.With().Uint16("group", g.Server).Uint64("epoch", epoch).Uint16("from", g.Main).Logger()
	log.Info().Bool("auto", auto).Str("why", why).Msg("promotion: sealing")
	replies := c.seal(t, &g, command.SealRequest{Server: g.Server, Epoch: epoch, From: g.Main, Auto: auto, Home: c.cfg.Location,
		HomeGen: g.HomeGen, RehomedFrom: g.RehomedFrom})
	cmd, chosen := decidePromotion(&g, epoch, replies, mainFenced(t, &g, replies, c.now(), c.cfg.DownAfter), passOver, c.atHome(t))
	if n, v := newerConfigSealed(&g, replies); v > 0 && rehomedWithoutMain(&g) {
		log.Warn().Uint16("node", n).Uint64("config", v).Uint64("recordConfig", recordConfig(&g)).
			Msg("promotion: a sealed copy followed a newer config than the record a rehome took over; abandoning the attempt")
	} else if _, abandon := cmd.(abandonPromotion); abandon {
		log.Warn().Int("sealed", len(replies)).Msg("promotion: too few siblings sealed; abandoning the attempt")
	}
	if _, abandon := cmd.(abandonPromotion); abandon {
		_ = c.proposeLogged(cmd)
		return
	}
	if err := c.proposeLogged(cmd); err != nil {
		return
	}
	ok = true
	log.Info().Uint16("main", chosen.Node).Uint64("lastEpoch", chosen.LastEpoch).Uint64("lastSeq", chosen.LastSeq).
		Dur("took", c.now().Sub(start)).Msg("promotion: new main chosen")
}

// decidePromotion is the end of attempt epoch on g once its seals are collected: abandon
// it when the seals do not cover R voters of every config in use, else choose the sealed
// sibling with the highest last entry (returned as chosen). An abandoned attempt whose main
// is still serving (mainUp) gives that main a fresh epoch: the siblings the attempt sealed
// refuse its old one, and without a new epoch it would wait for a promotion that cannot
// happen (an amnesiac sole voter of a pending config, say).
//
// passOver (0: none) is a main that counts as down although it answered its seal: a chosen
// main whose barrier did not commit within down-after (docs/replication.md case 7). It is
// left out of the choice when the other seals alone cover R voters of every config: every
// committed entry is then on one of them, so the highest of them holds it. Otherwise it
// may be chosen again. atHome (nil: every node) says which nodes are in the home location,
// whom the choice prefers among the longest logs.
func decidePromotion(g *command.GroupInfo, epoch uint64, replies map[uint16]command.SealReply, mainUp bool, passOver uint16, atHome func(uint16) bool) (cmd dirCommand, chosen command.SealReply) {
	// A main named only by a rehome's record is not known to hold every acked write (the
	// record may predate a promotion of the old home): it never goes on in a fresh epoch.
	mainUp = mainUp && !rehomedWithoutMain(g)
	if _, v := newerConfigSealed(g, replies); v > 0 && rehomedWithoutMain(g) {
		// The record came from a rehome's stale view: its configs may miss writes a newer
		// config acknowledged (docs/locations.md "Moving a home", rule 5).
		return abandonPromotion{Server: g.Server, Epoch: epoch, Refresh: mainUp}, command.SealReply{}
	}
	if !sealsCover(g, replies) {
		return abandonPromotion{Server: g.Server, Epoch: epoch, Refresh: mainUp}, command.SealReply{}
	}
	candidates := replies
	if _, sealed := replies[passOver]; passOver != 0 && sealed {
		others := maps.Clone(replies)
		delete(others, passOver)
		if len(others) > 0 && sealsCover(g, others) {
			candidates = others
		}
	}
	chosen = chooseMainAt(candidates, atHome)
	return choosePromotion{Server: g.Server, Epoch: epoch, Main: chosen.Node, CopyID: chosen.CopyID}, chosen
}

// proposeLogged commits cmd through raft, logging a refusal or failure.
func (c *Controller) proposeLogged(cmd dirCommand) error {
	_, err := c.cons.propose(cmd)
	var ref *refusal
	switch {
	case errors.As(err, &ref):
		c.log.Debug().Str("kind", cmd.kind()).Err(err).Msg("command refused")
	case err != nil:
		c.log.Warn().Str("kind", cmd.kind()).Err(err).Msg("command failed")
	}
	return err
}

// seal sends req to every voter of every config in use and collects the replies until the
// seals cover every config, every voter answered, or down-after passed.
func (c *Controller) seal(t *leaderTerm, g *command.GroupInfo, req command.SealRequest) map[uint16]command.SealReply {
	d := c.directoryFor(t)
	voters := g.Voters()
	type answer struct {
		reply command.SealReply
		err   error
	}
	ctx, cancel := context.WithTimeout(c.ctx, 2*c.cfg.DownAfter)
	defer cancel()
	answers := make(chan answer, len(voters))
	for _, v := range voters {
		n := d.NodeByID(v)
		if n == nil {
			answers <- answer{err: fmt.Errorf("node %d unknown", v)}
			continue
		}
		go func(node uint16, addr string) {
			// A sibling that heard the main a moment later than this controller did refuses
			// an automatic seal, and a call can be lost (a broken connection, a node that
			// restarted): ask again until the attempt's deadline. Sealing twice at one epoch
			// is the same as once.
			for {
				tctx, tcancel := context.WithTimeout(ctx, c.cfg.DownAfter/2)
				r, err := c.sendSeal(tctx, addr, req)
				tcancel()
				if err == nil || ctx.Err() != nil {
					r.Node = node
					answers <- answer{reply: r, err: err}
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(c.cfg.DownAfter / 10):
				}
			}
		}(v, n.Addr)
	}
	replies := map[uint16]command.SealReply{}
	for range voters {
		select {
		case a := <-answers:
			if a.err != nil {
				c.log.Debug().Err(a.err).Uint16("group", g.Server).Msg("seal not accepted")
				continue
			}
			counted, complete := addSeal(g, replies, a.reply, len(voters))
			if !counted {
				c.log.Warn().Uint16("node", a.reply.Node).Str("copy", a.reply.CopyID).Str("recorded", member(g, a.reply.Node).CopyID).
					Msg("seal reply from a copy with another ID; not counted")
				continue
			}
			if complete {
				return replies
			}
		case <-ctx.Done():
			return replies
		}
	}
	return replies
}

// addSeal counts seal reply r in replies, unless it comes from another copy than the one
// the directory recorded (its disk was lost: it holds nothing it acked), for a sibling or,
// for the main, the copy a promotion chose (GroupInfo.MainCopyID). complete: every
// one of the voters answered and the seals cover every config in use.
func addSeal(g *command.GroupInfo, replies map[uint16]command.SealReply, r command.SealReply, voters int) (counted, complete bool) {
	if !sameCopy(g, r) {
		return false, false
	}
	replies[r.Node] = r
	return true, sealsCover(g, replies) && len(replies) == voters
}

// sameCopy: the reply comes from the copy the directory recorded when it became voting (or
// none was recorded). A copy that lost its disk reports a new ID and is not counted.
func sameCopy(g *command.GroupInfo, r command.SealReply) bool {
	recorded := ""
	if m := member(g, r.Node); m != nil {
		recorded = m.CopyID
	} else if r.Node == g.Main {
		recorded = g.MainCopyID
	}
	return recorded == "" || recorded == r.CopyID
}

func member(g *command.GroupInfo, node uint16) *command.Member {
	for i := range g.Siblings {
		if g.Siblings[i].Node == node {
			return &g.Siblings[i]
		}
	}
	return nil
}

// sealsCover: R = S-W+1 voters of every config in use are sealed, so every quorum that
// could have acked a write meets the sealed set (docs/replication.md case 1, rule 3).
func sealsCover(g *command.GroupInfo, replies map[uint16]command.SealReply) bool {
	return sealedInEachConfig(g, replies, func(s int) int { return s - (s/2 + 1) + 1 })
}

// sealedInEachConfig reports whether, in every config in use, at least need(S) of its S
// voters are sealed (a config without voters never is).
func sealedInEachConfig(g *command.GroupInfo, replies map[uint16]command.SealReply, need func(s int) int) bool {
	configs := []command.Config{g.Active}
	if g.Pending != nil {
		configs = append(configs, *g.Pending)
	}
	for _, cfg := range configs {
		s := len(cfg.Voters)
		if s == 0 {
			return false
		}
		got := 0
		for _, v := range cfg.Voters {
			if _, ok := replies[v]; ok {
				got++
			}
		}
		if got < need(s) {
			return false
		}
	}
	return true
}

// chooseMain picks the sealed sibling whose last log entry (epoch, seq) is highest (never
// its current epoch, docs/replication.md case 2); ties go to the lowest node ID.
func chooseMain(replies map[uint16]command.SealReply) command.SealReply {
	return chooseMainAt(replies, nil)
}

// chooseMainAt is chooseMain preferring, among the siblings with the highest last entry,
// one in the group's home location (atHome; nil: no preference), then the lowest node ID
// (docs/protocol.md §6). The log decides first: a home copy that lacks an entry another
// copy holds is never chosen over it.
func chooseMainAt(replies map[uint16]command.SealReply, atHome func(uint16) bool) command.SealReply {
	home := func(n uint16) bool { return atHome == nil || atHome(n) }
	var best command.SealReply
	found := false
	for _, r := range replies {
		better := r.LastEpoch > best.LastEpoch ||
			(r.LastEpoch == best.LastEpoch && (r.LastSeq > best.LastSeq ||
				(r.LastSeq == best.LastSeq && (home(r.Node) && !home(best.Node) ||
					home(r.Node) == home(best.Node) && r.Node < best.Node))))
		if !found || better {
			best, found = r, true
		}
	}
	return best
}

// atHome says which nodes of leader t's directory are in this controller's location.
func (c *Controller) atHome(t *leaderTerm) func(uint16) bool {
	d := c.directoryFor(t)
	return func(node uint16) bool {
		n := d.NodeByID(node)
		return n != nil && n.Location == c.cfg.Location
	}
}

func (c *Controller) sendSeal(ctx context.Context, addr string, req command.SealRequest) (command.SealReply, error) {
	var out command.SealReply
	body, _ := json.Marshal(req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(addr, "/v1/internal/seal"), bytes.NewReader(body))
	if err != nil {
		return out, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(hr)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusConflict {
		return out, fmt.Errorf("seal of group %d at %s: %w", req.Server, addr, errStillHears)
	}
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("seal of group %d at %s: HTTP %d", req.Server, addr, resp.StatusCode)
	}
	err = json.NewDecoder(resp.Body).Decode(&out)
	return out, err
}

// errStillHears is a sibling's refusal of an automatic seal: it still hears the main.
var errStillHears = errors.New("the sibling still hears the main")

// probe checks whether anything listens at a suspected main's address. A refused
// connection means its process is gone (a kill, a crash), which lets promotion start
// without waiting for down-after; anything else (a timeout, a frozen process) is left to
// the heartbeat timeout.
func (c *Controller) probe(t *leaderTerm, node uint16, addr string) {
	// A dying process closes its connections before its listener, so a first probe can
	// still connect: look again a few times before leaving it to the heartbeat timeout.
	for i := 0; i < 6; i++ {
		conn, err := dialTimeout(c.cfg.Dial, addr, c.cfg.DownAfter/4)
		if err == nil {
			conn.Close()
		} else if errors.Is(err, syscall.ECONNREFUSED) {
			c.log.Info().Uint16("node", node).Str("addr", addr).Msg("suspected main refuses connections; treating it as down")
			t.promo.markDead(node, c.now())
			t.requestRound()
			return
		}
		select {
		case <-t.stop:
			return
		case <-time.After(c.cfg.DownAfter / 40):
		}
	}
}
