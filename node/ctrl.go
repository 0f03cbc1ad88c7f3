package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
	"github.com/sibylhq/sibyl/tlsconf"
)

// ctrlClient speaks the node <-> controller protocol of command/directory.go. Only the raft
// leader answers; a follower names it (421 with a LeaderHint) and the client goes there.
// Every request carries the cluster secret (join, heartbeat, suspect, the directory poll,
// abandon, admin calls, status), which the controllers require when they have one.
type ctrlClient struct {
	addrs  []string
	scheme string // http, or https with TLS
	secret string
	log    zerolog.Logger
	http   *http.Client
	// long has no timeout of its own: admin calls (a registration, a drain) last as long as
	// their context allows.
	long   *http.Client
	mu     sync.Mutex
	leader string
}

func newCtrlClient(addrs []string, log zerolog.Logger, dial DialFunc, tlsConf *tls.Config, secret string) *ctrlClient {
	var clean []string
	for _, a := range addrs {
		a = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(a, "http://"), "https://"))
		if a != "" {
			clean = append(clean, strings.TrimSuffix(a, "/"))
		}
	}
	return &ctrlClient{addrs: clean, scheme: tlsconf.Scheme(tlsConf, "http"), secret: secret, log: log,
		http: &http.Client{Timeout: 15 * time.Second, Transport: HTTPTransport(dial, tlsConf)},
		long: &http.Client{Transport: HTTPTransport(dial, tlsConf)}}
}

// candidates lists controller addresses, the last known leader first.
func (c *ctrlClient) candidates() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.addrs)+1)
	if c.leader != "" {
		out = append(out, c.leader)
	}
	for _, a := range c.addrs {
		if a != c.leader {
			out = append(out, a)
		}
	}
	return out
}

// knows reports whether addr is one of this client's controllers.
func (c *ctrlClient) knows(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return addr == c.leader || slices.Contains(c.addrs, addr)
}

// do sends one request to the leader, following hints, and decodes the answer into out.
func (c *ctrlClient) do(ctx context.Context, method, path string, body, out any) error {
	return c.doWith(c.http, ctx, method, path, "", body, out)
}

// doWith is do on client hc; token, when set, goes as "Authorization: Bearer" (an
// operator's admin token on an admin call).
func (c *ctrlClient) doWith(hc *http.Client, ctx context.Context, method, path, token string, body, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	var lastErr error
	tried := map[string]bool{}
	queue := c.candidates()
	for len(queue) > 0 {
		addr := queue[0]
		queue = queue[1:]
		if tried[addr] {
			continue
		}
		tried[addr] = true
		req, err := http.NewRequestWithContext(ctx, method, c.scheme+"://"+addr+path, bytes.NewReader(payload))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if c.secret != "" {
			req.Header.Set(command.SecretHeader, c.secret)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			c.mu.Lock()
			c.leader = addr
			c.mu.Unlock()
			return json.Unmarshal(b, out)
		case http.StatusMisdirectedRequest:
			var hint command.LeaderHint
			if json.Unmarshal(b, &hint) == nil && hint.Leader != "" {
				queue = append([]string{hint.Leader}, queue...)
			}
			lastErr = fmt.Errorf("controller %s is not the leader (hint %q)", addr, hint.Leader)
		default:
			// A controller's refusal carries a protocol error: pass it on as it is.
			var eb struct {
				Error *command.Error `json:"error"`
			}
			if resp.StatusCode < 500 && json.Unmarshal(b, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
				return eb.Error
			}
			lastErr = fmt.Errorf("controller %s: %s %s: HTTP %d: %s", addr, method, path, resp.StatusCode, bytes.TrimSpace(b))
		}
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("no controller address configured")
	}
	return lastErr
}

// admin forwards an operator's admin call to the controller leader. req.Bearer, the token
// the operator authenticated with (set by the API layer), goes as the call's bearer token,
// not in its body: the controllers check it against their admin tokens. The body's token
// field goes only with revokeToken, whose subject it is.
func (c *ctrlClient) admin(ctx context.Context, req *command.Request) (*command.Reply, error) {
	var out struct {
		command.Reply
		Error *command.Error `json:"error"`
	}
	body := *req
	if req.Op != command.OpRevokeToken {
		body.Token = ""
	}
	err := c.doWith(c.long, ctx, http.MethodPost, "/v1/internal/admin/"+req.Op, req.Bearer, &body, &out)
	if err != nil {
		var ce *command.Error
		if errors.As(err, &ce) {
			return nil, ce
		}
		return nil, command.Errorf(command.CodeUnavailable, "%s: %v", req.Op, err)
	}
	if out.Error != nil {
		return nil, out.Error
	}
	return &out.Reply, nil
}

// learn asks the controllers this client knows for the locations they know (GET
// /v1/locations, docs/protocol.md §6) and, when one of them names location loc with
// controllers, talks to those from then on: --controllers may list any location's
// controllers, and a node's own link is to its own location's. It reports whether it found
// loc.
func (c *ctrlClient) learn(ctx context.Context, loc string) bool {
	lr, from, err := c.locations(ctx)
	if err != nil {
		return false
	}
	for _, l := range lr.Locations {
		if l.Name != loc || len(l.Controllers) == 0 {
			continue
		}
		c.mu.Lock()
		c.addrs, c.leader = append([]string(nil), l.Controllers...), ""
		if l.Leader != nil {
			c.leader = *l.Leader
		}
		c.mu.Unlock()
		c.log.Info().Str("location", loc).Strs("controllers", l.Controllers).Str("from", from).
			Msg("learnt this location's controllers from another location's")
		return true
	}
	return false
}

// errNoControllers: a client without a controller address.
var errNoControllers = errors.New("no controller address configured")

// decodeLimited decodes a controller's JSON answer of at most 64 MiB into out.
func decodeLimited(resp *http.Response, out any) error {
	return json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out)
}

func (c *ctrlClient) status(ctx context.Context) (*command.Status, error) {
	var st command.Status
	if err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
		return nil, command.Errorf(command.CodeUnavailable, "status from the controllers: %v", err)
	}
	return &st, nil
}

// join registers this process with the controllers of link l's location (as a guest in
// any location but its own), retrying until it succeeds or the node closes (false).
func (n *Node) join(l *link) bool {
	instance, incarnation, wiped := n.joinIdentity()
	req := command.JoinRequest{ID: uint16(n.cfg.ID), Addr: n.cfg.HTTPAddr, Location: n.cfg.Location,
		Instance: instance, Incarnation: incarnation, Wiped: wiped}
	warned, learnt := false, false
	faults := n.diskFaults()
	for {
		var d command.Directory
		err := l.ctrl.do(n.ctx, http.MethodPost, "/v1/internal/join", req, &d)
		if err == nil && d.Location != "" && d.Location != l.loc {
			// Controllers of another location than the link's: the own link's
			// --controllers may name any location's; find this location's.
			if l.own && !learnt {
				if learnt = l.ctrl.learn(n.ctx, l.loc); learnt {
					continue
				}
			}
			err = command.Errorf(command.CodeUnavailable, "the controllers at %v are of location %q, not %q", l.ctrl.candidates(), d.Location, l.loc)
		}
		if err == nil {
			n.adoptIncarnation(&d)
			n.joinedAt(l, d.Index, faults, req.Instance)
			n.applyDirectory(l, &d)
			if l.own {
				n.mu.Lock()
				n.joined = true
				n.mu.Unlock()
				n.joins.Add(1)
			}
			n.log.Info().Uint64("index", d.Index).Str("location", l.loc).Bool("guest", !l.own).Msg("joined the location controller")
			return true
		}
		if command.CodeOf(err) == command.CodeBadRequest && l.own && !learnt {
			// A controller that refuses the join (of an older version, or another
			// location's): find this location's.
			if learnt = l.ctrl.learn(n.ctx, l.loc); learnt {
				continue
			}
		}
		if command.CodeOf(err) == command.CodeUnauthorized && !warned {
			// A configuration error, not a passing failure: say so once, loudly.
			n.log.Error().Err(err).Msg("the controller refused this node's cluster secret; check --cluster-secret on nodes and controllers")
			warned = true
		} else {
			n.log.Debug().Err(err).Str("location", l.loc).Msg("join failed; retrying")
		}
		select {
		case <-n.ctx.Done():
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// adoptIncarnation takes the incarnation the controller recorded for this process when it
// is above the node's own: a node whose data directory was wiped starts again at 1, and
// the controller answers its join with the recorded incarnation + 1. The node heartbeats
// with it from now on and persists it, so its next start counts up from there. Called only
// by every link's goroutine; the other links then rejoin with it (their controllers refuse
// a heartbeat of another incarnation).
func (n *Node) adoptIncarnation(d *command.Directory) {
	n.incMu.Lock()
	defer n.incMu.Unlock()
	me := d.NodeByID(uint16(n.cfg.ID))
	cur := n.incarnation.Load()
	if me == nil || me.Instance != n.instance || me.Incarnation <= cur {
		return
	}
	n.log.Warn().Uint64("incarnation", cur).Uint64("recorded", me.Incarnation).
		Msg("the controller knew a later incarnation of this node (its data directory was replaced); adopting it")
	n.incarnation.Store(me.Incarnation)
	n.adopted = n.instance
	if n.cfg.Store == nil && n.cfg.DataDir != "" {
		if err := writeIncarnation(filepath.Join(n.cfg.DataDir, "incarnation"), me.Incarnation); err != nil {
			n.log.Error().Err(err).Msg("cannot persist the adopted incarnation")
		}
	}
}

// run follows every location: the ones the node recorded before a restart and those the
// controllers name (discoverLoop), each on its own link, and its own: it joins its own
// location's controller leader, then keeps heartbeating and following the directory. The
// other locations do not wait for the own join: a node restarted while its own location
// has no controller still takes its roles in the groups homed elsewhere.
func (n *Node) run() {
	defer n.wg.Done()
	for _, l := range n.linkList() {
		if !l.own {
			n.wg.Add(1)
			go n.runLink(l)
		}
	}
	n.wg.Add(1)
	go n.discoverLoop()
	if !n.join(n.own) {
		return
	}
	n.wg.Add(1)
	go n.watchLoop(n.own)
	n.heartbeatLoop(n.own)
}

// heartbeatLoop heartbeats link l's controllers every down-after/4.
func (n *Node) heartbeatLoop(l *link) {
	tick := time.NewTicker(n.cfg.DownAfter / 4)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		if l.own && n.rejoinDue() {
			// The disk works again: a new life joins its own location first; the other
			// locations' controllers refuse its next heartbeat there (another instance) and
			// their links join again as well.
			if err := n.newLife(); err != nil {
				n.log.Error().Err(err).Msg("cannot join again after the disk healed; retrying")
			} else if !n.join(l) {
				return
			}
		}
		n.heartbeat(l)
	}
}

// heartbeat reports every copy this node holds to link l's controller leader (each
// location takes what concerns its groups) and applies the directory it answers.
func (n *Node) heartbeat(l *link) {
	instance, incarnation := n.identity()
	hb := command.Heartbeat{Node: uint16(n.cfg.ID), Instance: instance, Incarnation: incarnation,
		Generation: n.generation.Add(1), Degraded: n.degradedReason()}
	n.mu.RLock()
	groups := make([]*group, 0, len(n.groups))
	for _, g := range n.groups {
		groups = append(groups, g)
	}
	n.mu.RUnlock()
	for _, g := range groups {
		hb.Groups = append(hb.Groups, g.report())
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.DownAfter)
	defer cancel()
	var d command.Directory
	if err := l.ctrl.do(ctx, http.MethodPost, "/v1/internal/heartbeat", hb, &d); err != nil {
		// The leader does not know this node, or knows another instance of it (its state
		// was restored or reset): join again rather than heartbeat into a refusal forever.
		if c := command.CodeOf(err); c == command.CodeNotFound || c == command.CodeConflict {
			n.log.Warn().Err(err).Str("location", l.loc).Msg("the controller does not know this node as it is; joining again")
			n.join(l)
			return
		}
		n.log.Debug().Err(err).Str("location", l.loc).Msg("heartbeat failed")
		return
	}
	n.applyDirectory(l, &d)
}

// reportSuspect tells the group's home controller leader that this copy lost its stream
// from main.
func (n *Node) reportSuspect(g command.ServerID, main uint16) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.DownAfter)
	defer cancel()
	var ok map[string]bool
	sp := command.Suspect{Node: uint16(n.cfg.ID), Server: uint16(g), Main: main}
	if err := n.ctrlFor(g).do(ctx, http.MethodPost, "/v1/internal/suspect", sp, &ok); err != nil {
		n.log.Debug().Err(err).Uint16("group", uint16(g)).Msg("could not report a lost main stream")
	}
}

// watchLoop long-polls link l's leader so directory changes reach the node as they commit.
func (n *Node) watchLoop(l *link) {
	defer n.wg.Done()
	for n.ctx.Err() == nil {
		after := uint64(0)
		n.mu.RLock()
		if l.dir != nil {
			after = l.dir.Index
		}
		n.mu.RUnlock()
		var d command.Directory
		err := l.ctrl.do(n.ctx, http.MethodGet, "/v1/internal/directory?after="+strconv.FormatUint(after, 10), nil, &d)
		if err != nil {
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		n.applyDirectory(l, &d)
	}
}

// applyDirectory adopts a directory of link l's location no older than the one it had and
// sets this node's role for every group it names: the groups homed there.
func (n *Node) applyDirectory(l *link, d *command.Directory) {
	// One directory at a time, all the way through its groups: the heartbeat, the watch
	// and a join each fetch directories, and two applied at once could reach a group in the
	// wrong order, handing a main the older of two configs.
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	n.mu.Lock()
	if d.Location == "" || d.Location == l.loc {
		l.heard = time.Now()
	}
	if (d.Location != "" && d.Location != l.loc) || (l.dir != nil && d.Index < l.dir.Index) {
		n.mu.Unlock()
		return
	}
	l.dir = d
	n.dir = n.mergeLocked()
	// Tokens made at any location are valid here (docs/security.md).
	n.tokens.update(l.loc, d)
	self := uint16(n.cfg.ID)
	type todo struct {
		g  *group
		gi command.GroupInfo
	}
	var work []todo
	for _, gi := range d.Groups {
		if gi.Home == "" {
			gi.Home = l.loc
		}
		if merged := n.dir.Group(gi.Server); gi.Home != l.loc || merged == nil || merged.Home != l.loc {
			continue // not homed here, or another location's record is followed
		}
		holder := gi.Main == self
		for _, m := range gi.Siblings {
			holder = holder || m.Node == self
		}
		g := n.groups[command.ServerID(gi.Server)]
		if !holder {
			if g != nil {
				work = append(work, todo{g, gi})
			}
			continue
		}
		if g == nil {
			gs, err := n.store.Group(command.ServerID(gi.Server))
			if err == nil {
				g, err = newGroup(n, command.ServerID(gi.Server), gs)
			}
			if err != nil {
				n.log.Error().Err(err).Uint16("group", gi.Server).Msg("cannot open copy")
				continue
			}
			n.groups[command.ServerID(gi.Server)] = g
		}
		work = append(work, todo{g, gi})
	}
	n.mu.Unlock()
	for _, w := range work {
		w.g.follow(&w.gi, self, l.loc, d.Index)
	}
	n.subs.directoryChanged()
}

// follow sets the copy's role from its directory record, taken from the directory of the
// given index of location loc (the group's home).
func (g *group) follow(gi *command.GroupInfo, self uint16, loc string, index uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	isSibling, stale := false, false
	for _, m := range gi.Siblings {
		if m.Node != self {
			continue
		}
		stale = m.State == command.SiblingStale
		if stale || (m.StaleCopyID != "" && m.StaleCopyID == g.copyID) {
			g.retireStale(m.StaleCopyID)
		}
		isSibling = !stale
	}
	if g.n.rolesHeld(loc, index) {
		// The disk failed: no role until it works and the node joined as a new life
		// (disk.go); the directory is followed again then.
		return
	}
	if g.resyncing && gi.Main != self {
		// Being rebuilt: the transfer (endResync) or the next append that is not a snapshot's
		// (resyncAbandoned) decides the role, never a directory update in the middle.
		return
	}
	if err := g.c.Follow(gi, isSibling, g.disk, time.Now()); err != nil {
		g.log.Error().Err(err).Msg("cannot take the role the directory assigns")
	}
	if g.c.Role() == core.Main {
		// The main's own appends carry its quorum's version: it follows it as its siblings do.
		if err := g.n.configs.raise(g.id, quorumVersion(gi)); err != nil {
			g.n.noteDiskFault(err)
			g.c.Stop(command.Errorf(command.CodeUnavailable, "group %d: the main cannot record its config version; retry: %v", g.id, err))
		}
	}
	g.drain()
}

// quorumVersion is the config version a main of gi writes under: the pending config's
// while there is one (the joint quorum), else the active one's.
func quorumVersion(gi *command.GroupInfo) uint64 {
	if gi.Pending != nil {
		return gi.Pending.Version
	}
	return gi.Active.Version
}
