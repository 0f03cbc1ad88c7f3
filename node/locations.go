package node

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// A node follows every location (docs/locations.md): a group is owned by the controllers of
// its home location, wherever its copies live, so a node holding a copy of a group homed
// elsewhere must take its role from that home's directory. The node therefore has one
// link per location: it joins that location's controllers (as a guest in every location
// but its own, which the controllers record without making it a group), heartbeats them
// with the position of every copy it holds, and long-polls their directory. The directory
// of location L is authoritative for the groups homed in L and only for them; the node
// merges all of them into one view for routing (a client at any node reaches any group's
// main) and takes each group's role from its home's directory alone. A seal names the
// location that sent it, and a copy refuses one from any location but its group's home
// (docs/replication.md case 6).

// link is this node's tie to one location's controllers.
type link struct {
	loc  string
	own  bool
	ctrl *ctrlClient
	// dir is the directory this location last answered, and heard when its controllers
	// last answered one; guarded by Node.mu.
	dir   *command.Directory
	heard time.Time
}

// discoverEvery is how often a node asks the controllers for the locations they know.
const discoverEvery = 2 * time.Second

// discoverLoop asks the controllers for every location they know (GET /v1/locations) and
// starts a link to each new one.
func (n *Node) discoverLoop() {
	defer n.wg.Done()
	for {
		n.discover()
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(discoverEvery):
		}
	}
}

func (n *Node) discover() {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.DownAfter)
	defer cancel()
	for _, l := range n.linkList() {
		lr, _, err := l.ctrl.locations(ctx)
		if err != nil {
			continue
		}
		for _, li := range lr.Locations {
			if li.Name == "" || li.Name == n.cfg.Location || len(li.Controllers) == 0 {
				continue
			}
			n.mu.Lock()
			known := n.links[li.Name]
			if known == nil {
				known = n.newLink(li.Name, li.Controllers)
				n.links[li.Name] = known
				n.wg.Add(1)
				go n.runLink(known)
				n.log.Info().Str("location", li.Name).Strs("controllers", li.Controllers).Msg("following another location's controllers")
			}
			n.mu.Unlock()
			known.ctrl.addAddrs(li.Controllers)
		}
		n.rememberLocations()
		return
	}
}

// newLink makes the link to location loc's controllers at addrs; the caller starts it.
func (n *Node) newLink(loc string, addrs []string) *link {
	return &link{loc: loc, ctrl: newCtrlClient(addrs, n.log.With().Str("location", loc).Logger(), n.cfg.Dial, n.cfg.ClientTLS, n.cfg.ClusterSecret)}
}

// linkList returns the links, this node's own location first.
func (n *Node) linkList() []*link {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]*link, 0, len(n.links))
	for _, l := range n.links {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].own != out[j].own {
			return out[i].own
		}
		return out[i].loc < out[j].loc
	})
	return out
}

// runLink joins another location's controllers, then heartbeats them and follows their
// directory until the node closes.
func (n *Node) runLink(l *link) {
	defer n.wg.Done()
	if !n.join(l) {
		return
	}
	n.wg.Add(1)
	go n.watchLoop(l)
	n.heartbeatLoop(l)
}

// homeLink returns the link of the location whose directory holds group id, or the own
// location's when no directory does.
func (n *Node) homeLink(id command.ServerID) *link {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.dir != nil {
		if gi := n.dir.Group(uint16(id)); gi != nil {
			if l := n.links[gi.Home]; l != nil {
				return l
			}
		}
	}
	return n.own
}

// ctrlFor returns the controllers to ask about group id: its home's.
func (n *Node) ctrlFor(id command.ServerID) *ctrlClient { return n.homeLink(id).ctrl }

// adminCtrl returns the controllers an admin call goes to: the home's of the group it
// names, the own location's for a call about a node (drain, removeNode), those of the
// location a rehome names (nil when this node knows no such location).
func (n *Node) adminCtrl(req *command.Request) *ctrlClient {
	if req.Op == command.OpRehome {
		return n.rehomeCtrl(req.Location)
	}
	if req.Server != nil && *req.Server > 0 && *req.Server <= 65535 {
		return n.ctrlFor(command.ServerID(*req.Server))
	}
	return n.ctrl
}

// homeOf names the home location of group id as the directories show it ("" when none
// lists it).
func (n *Node) homeOf(id command.ServerID) string {
	if gi := n.directoryGroup(id); gi != nil {
		return gi.Home
	}
	return ""
}

// mergeLocked builds the node's one view of every location's directory: the groups of each
// (each homed in the location that lists it; of two locations listing a group, the one of
// the later home generation, else the first by name, warned of; never one older than the
// home this node's copy recorded: a home that was replaced may list it still), and every node once, preferring the record of the node's
// own location's directory. Index is the own location's. n.mu is held.
func (n *Node) mergeLocked() *command.Directory {
	if n.own == nil {
		return &command.Directory{Location: n.cfg.Location}
	}
	out := &command.Directory{Location: n.cfg.Location}
	if n.own.dir != nil {
		// Roles and tokens are the own location's (docs/security.md).
		out.Index, out.Roles, out.Tokens = n.own.dir.Index, n.own.dir.Roles, n.own.dir.Tokens
	}
	locs := make([]string, 0, len(n.links))
	for loc, l := range n.links {
		if l.dir != nil {
			locs = append(locs, loc)
		}
	}
	sort.Strings(locs)
	nodes := map[uint16]command.NodeInfo{}
	groups := map[uint16]command.GroupInfo{}
	for _, loc := range locs {
		d := n.links[loc].dir
		for _, ni := range d.Nodes {
			// The node's own location's record wins: it is the one that watches it as a
			// member, not as a guest.
			if _, ok := nodes[ni.ID]; !ok || ni.Location == loc {
				nodes[ni.ID] = ni
			}
		}
		for _, gi := range d.Groups {
			if gi.Home == "" {
				gi.Home = loc
			}
			if gi.Home != loc {
				continue
			}
			if rec, ok := n.homes.get(command.ServerID(gi.Server)); ok && rec.Gen > gi.HomeGen {
				continue // a later home sealed this node's copy: this record is of a replaced home
			}
			if other, ok := groups[gi.Server]; ok {
				if other.HomeGen == gi.HomeGen {
					n.log.Warn().Uint16("group", gi.Server).Str("home", other.Home).Str("also", loc).
						Msg("two locations list the same group; following the first")
				}
				if other.HomeGen >= gi.HomeGen {
					continue
				}
			}
			groups[gi.Server] = gi
		}
	}
	for _, ni := range nodes {
		out.Nodes = append(out.Nodes, ni)
	}
	slices.SortFunc(out.Nodes, func(a, b command.NodeInfo) int { return int(a.ID) - int(b.ID) })
	for _, gi := range groups {
		out.Groups = append(out.Groups, gi)
	}
	slices.SortFunc(out.Groups, func(a, b command.GroupInfo) int { return int(a.Server) - int(b.Server) })
	return out
}

// nearCopy returns a node of this node's location, up and serving a copy of group gi (its
// main or a voting sibling), to read from at `sibling` consistency; 0 when there is none.
func (n *Node) nearCopy(gi *command.GroupInfo) uint16 {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.dir == nil {
		return 0
	}
	near := func(id uint16) bool {
		ni := n.dir.NodeByID(id)
		return ni != nil && ni.Location == n.cfg.Location && ni.State == command.NodeUp && id != uint16(n.cfg.ID)
	}
	for _, m := range gi.Siblings {
		if m.State == command.SiblingVoting && near(m.Node) {
			return m.Node
		}
	}
	if gi.Main != 0 && near(gi.Main) {
		return gi.Main
	}
	return 0
}

// LocationOf names the location of the process listening at addr (host:port) as this node
// knows it: a node of its directories, or a controller it talks to; "" when it knows no
// process there. The WAN delay of `sibyl dev` (docs/locations.md) uses it to tell
// connections between locations from those within one.
func (n *Node) LocationOf(addr string) string {
	if addr == n.cfg.HTTPAddr {
		return n.cfg.Location
	}
	n.mu.RLock()
	d := n.dir
	links := make([]*link, 0, len(n.links))
	for _, l := range n.links {
		links = append(links, l)
	}
	n.mu.RUnlock()
	if d != nil {
		for _, ni := range d.Nodes {
			if ni.Addr == addr {
				return ni.Location
			}
		}
	}
	for _, l := range links {
		if l.ctrl.knows(addr) {
			return l.loc
		}
	}
	return ""
}

// locations asks the controllers for the locations they know (GET /v1/locations); addr is
// the controller that answered.
func (c *ctrlClient) locations(ctx context.Context) (command.LocationsReply, string, error) {
	var lastErr error
	for _, addr := range c.candidates() {
		var lr command.LocationsReply
		if err := c.getJSON(ctx, addr, "/v1/locations", &lr); err != nil {
			lastErr = err
			continue
		}
		return lr, addr, nil
	}
	if lastErr == nil {
		lastErr = errNoControllers
	}
	return command.LocationsReply{}, "", lastErr
}

// getJSON GETs path from the controller at addr (any of them; no leader needed).
func (c *ctrlClient) getJSON(ctx context.Context, addr, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.scheme+"://"+addr+path, nil)
	if err != nil {
		return err
	}
	if c.secret != "" {
		req.Header.Set(command.SecretHeader, c.secret)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return command.Errorf(command.CodeUnavailable, "controller %s: GET %s: HTTP %d", addr, path, resp.StatusCode)
	}
	return decodeLimited(resp, out)
}

// addAddrs adds controller addresses this client did not know.
func (c *ctrlClient) addAddrs(addrs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range addrs {
		if a != "" && !slices.Contains(c.addrs, a) {
			c.addrs = append(c.addrs, a)
		}
	}
}
