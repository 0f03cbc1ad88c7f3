package node

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/sibylhq/sibyl/command"
)

// A location taking a group over (admin rehome, docs/locations.md "Moving a home") cannot
// read the directory of the home it replaces: that home has no controller left. It asks the
// nodes instead, which keep the last directory every location answered them, and learns
// from their copies the epochs already promised.

// serveGroupView answers GET /v1/internal/group?server=N with what this node knows of
// group N (command.GroupView): the latest record any location's directory gave it (home
// generation, then epoch), even one its own copy's home record makes it no longer follow.
func (n *Node) serveGroupView(w http.ResponseWriter, r *http.Request) {
	server, err := strconv.ParseUint(r.URL.Query().Get("server"), 10, 16)
	if err != nil || server == 0 {
		http.Error(w, "server: want a server ID in 1..65535", http.StatusBadRequest)
		return
	}
	id := command.ServerID(server)
	var view command.GroupView
	n.mu.RLock()
	for loc, l := range n.links {
		if l.dir == nil {
			continue
		}
		gi := l.dir.Group(uint16(id))
		if gi == nil || (gi.Home != "" && gi.Home != loc) {
			continue
		}
		if view.Group == nil || gi.HomeGen > view.Group.HomeGen || (gi.HomeGen == view.Group.HomeGen && gi.Epoch > view.Group.Epoch) {
			c := *gi
			c.Home = loc
			view.Group, view.Index = &c, l.dir.Index
		}
	}
	n.mu.RUnlock()
	if g := n.localGroup(id); g != nil {
		if m, err := g.gs.Meta(); err == nil {
			view.Copy = &command.CopyView{Epoch: m.Epoch, LastEpoch: m.LastEpoch, LastSeq: m.LastSeq, Config: n.configs.get(id)}
			if rec, ok := n.homes.get(id); ok {
				view.Copy.Home, view.Copy.HomeGen = rec.Home, rec.Gen
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(view)
}

// rehomeCtrl returns the controllers of the location a rehome names, which take the group
// over; nil when this node knows no such location.
func (n *Node) rehomeCtrl(loc string) *ctrlClient {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if l := n.links[loc]; l != nil {
		return l.ctrl
	}
	return nil
}
