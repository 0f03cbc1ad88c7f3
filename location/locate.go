package location

// LocationOf names the location of the process listening at addr (host:port) as this
// controller knows it: the nodes of its directory (guests of other locations included),
// its own controllers, the other locations' configured seeds and every ad it holds; ""
// when it knows no process there. The WAN delay of `sibyl dev` (docs/locations.md) uses
// it to tell connections between locations from those within one.
func (c *Controller) LocationOf(addr string) string {
	if loc := c.fsm.locationAt(addr, c.cfg.Location); loc != "" {
		return loc
	}
	if c.cfg.RaftAddr == addr || c.cfg.HTTPAddr == addr {
		return c.cfg.Location
	}
	c.gossip.mu.Lock()
	defer c.gossip.mu.Unlock()
	b := c.gossip.book
	for loc, seeds := range b.cfg.Seeds {
		for _, a := range seeds {
			if a == addr {
				return loc
			}
		}
	}
	for _, h := range b.held {
		if h.ad.Addr == addr {
			return h.ad.Location
		}
	}
	return ""
}

// locationAt is the location of the directory's node or controller (of location own) at
// addr, "" when none is there.
func (f *fsm) locationAt(addr, own string) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, n := range f.st.Nodes {
		if n.Addr == addr {
			return n.Location
		}
	}
	for _, r := range f.st.Controllers {
		if r.HTTPAddr == addr || r.RaftAddr == addr {
			return own
		}
	}
	return ""
}
