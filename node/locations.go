package node

// LocationOf names the location of the process listening at addr (host:port) as this node
// knows it: a node of its directories, or a controller it talks to; "" when it knows no
// process there. The WAN delay of `sibyl dev` (docs/locations.md) uses it to tell
// connections between locations from those within one.
func (n *Node) LocationOf(addr string) string {
	n.mu.RLock()
	d := n.dir
	n.mu.RUnlock()
	if d != nil {
		for _, ni := range d.Nodes {
			if ni.Addr == addr {
				return ni.Location
			}
		}
	}
	if addr == n.cfg.HTTPAddr || n.ctrl.knows(addr) {
		return n.cfg.Location
	}
	return ""
}
