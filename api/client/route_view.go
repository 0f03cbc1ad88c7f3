package client

import (
	"net"
	"net/netip"
	"net/url"

	"github.com/sibylhq/sibyl/command"
)

// route is where the requests of one group go: the WebSocket URL of its main, as the
// cluster's status last showed it.
type route struct {
	node  uint16
	url   string
	epoch uint64 // the group's epoch in that status
}

// routeGroup names the group whose main should receive req: the group of the rid for
// linearizable reads, writes and ticket ops, the named server for creates and lists.
// Sibling reads stay on the default connection, whose node serves them from its own copy
// (and keeps them monotonic there); status, admin ops, subscriptions, creates without a
// server and lists across groups have no group and stay there too.
func routeGroup(req *command.Request) (command.ServerID, bool) {
	switch req.Op {
	case command.OpGet:
		if req.Consistency == command.SiblingRead {
			return 0, false
		}
		return ridGroup(req.RID)
	case command.OpUpdate, command.OpPatch, command.OpDelete,
		command.OpAcquireTicket, command.OpRenewTicket, command.OpReleaseTicket:
		return ridGroup(req.RID)
	case command.OpCreate, command.OpList:
		if req.Server != nil && *req.Server >= 1 && *req.Server <= 65535 {
			return command.ServerID(*req.Server), true
		}
	}
	return 0, false
}

func ridGroup(rid string) (command.ServerID, bool) {
	g, err := command.GroupOf(rid)
	return g, err == nil
}

// buildView maps every group with a main on a node that is not down and has a dialable
// address to the main's WebSocket URL: base (the client's first address) with the node's
// address as host, so the scheme (ws or wss) and path are the client's own.
func buildView(st *command.Status, base *url.URL) map[command.ServerID]route {
	addrs := make(map[uint16]string, len(st.Nodes))
	for _, n := range st.Nodes {
		if n.State != command.NodeDown && dialable(n.Addr) {
			addrs[n.ID] = n.Addr
		}
	}
	view := make(map[command.ServerID]route, len(st.Groups))
	for _, g := range st.Groups {
		if g.Main == nil || g.Server == 0 {
			continue
		}
		addr, ok := addrs[*g.Main]
		if !ok {
			continue
		}
		u := *base
		u.Host = addr
		view[command.ServerID(g.Server)] = route{node: *g.Main, url: u.String(), epoch: g.Epoch}
	}
	return view
}

// dialable reports whether a node's advertised address names a host a client can reach:
// host:port with a host that is not empty or an unspecified IP (0.0.0.0, ::), which
// only a listener can use.
func dialable(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" || port == "0" {
		return false
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		return false
	}
	return true
}
