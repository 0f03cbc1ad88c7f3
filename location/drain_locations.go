package location

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/sibylhq/sibyl/command"
)

// drain and removeNode across locations (docs/locations.md "Drain and removeNode across
// locations"). A node is a member of its own location and a guest of every other one, and
// each location's controllers own the copies of their own groups, wherever they live. So
// the node's own location runs the call: before acting on its own groups it sends the same
// call to every other location it knows, marked with forLocationHeader, and each of them
// acts on its own groups alone (moves their main roles and copies off the node, then marks
// its guest record spare, so that it places nothing there again; or, for removeNode,
// refuses while it homes a group the node holds a copy of). A location that is asked by an
// operator about a node of another location passes the call to that node's location.

// forLocationHeader names the location whose leader sent a drain or removeNode to another
// location: the receiver acts on its own groups only and passes the call nowhere.
const forLocationHeader = "X-Sibyl-For-Location"

// adminVia is how an admin call about a node arrived: the operator's bearer token (passed
// on with the call to other locations, which check it themselves) and, when another
// location's leader sent it, that location's name.
type adminVia struct {
	token string
	from  string
}

func adminViaOf(r *http.Request) adminVia {
	return adminVia{token: bearerToken(r), from: r.Header.Get(forLocationHeader)}
}

// nodeRouting decides where an admin call about node n runs. act: this location acts on its
// own groups; others: the locations to send the call to first (marked as coming from this
// one); passTo: the location to hand the whole call to instead ("" for none).
func (c *Controller) nodeRouting(n *command.NodeInfo, via adminVia) (act bool, others []string, passTo string) {
	guest := n.Location != "" && n.Location != c.cfg.Location
	switch {
	case via.from != "":
		return true, nil, ""
	case guest:
		return false, nil, n.Location
	}
	for _, v := range c.remoteLocations(c.now()) {
		others = append(others, v.Name)
	}
	return true, others, ""
}

// adminAt sends admin call op (req) to location loc's leader, with the operator's token;
// from, when set, marks it as sent by this location for its own node. It returns the
// location's refusal as it is, or unavailable when no controller of loc answers.
func (c *Controller) adminAt(ctx context.Context, loc, op string, req *command.Request, via adminVia, from string) *command.Error {
	var addrs []string
	for _, v := range c.remoteLocations(c.now()) {
		if v.Name != loc {
			continue
		}
		if v.LeaderAddr != "" {
			addrs = append(addrs, v.LeaderAddr)
		}
		for _, ad := range v.Controllers {
			addrs = append(addrs, ad.Addr)
		}
		addrs = append(addrs, v.Seeds...)
	}
	if len(addrs) == 0 {
		return command.Errorf(command.CodeUnavailable, "%s of node %d: location %s is not known here", op, *req.Node, loc)
	}
	body, _ := json.Marshal(req)
	var last error
	tried := map[string]bool{}
	for attempt := 0; len(addrs) > 0 && attempt < 10; attempt++ {
		addr := addrs[0]
		addrs = addrs[1:]
		if addr == "" || tried[addr] {
			continue
		}
		tried[addr] = true
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(addr, "/v1/internal/admin/"+op), bytes.NewReader(body))
		if err != nil {
			return command.Errorf(command.CodeInternal, "%s of node %d at %s: %v", op, *req.Node, addr, err)
		}
		hr.Header.Set("Content-Type", "application/json")
		if via.token != "" {
			hr.Header.Set("Authorization", "Bearer "+via.token)
		}
		if from != "" {
			hr.Header.Set(forLocationHeader, from)
		}
		resp, err := c.long.Do(hr)
		if err != nil {
			last = err
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			return nil
		case resp.StatusCode == http.StatusMisdirectedRequest:
			var h command.LeaderHint
			if json.Unmarshal(b, &h) == nil && h.Leader != "" {
				addrs = append([]string{h.Leader}, addrs...)
				tried[h.Leader] = false
			}
			last = fmt.Errorf("%s is not the leader", addr)
			continue
		}
		var eb errorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error != nil {
			if resp.StatusCode == http.StatusServiceUnavailable && eb.Error.Code == command.CodeUnavailable {
				last = eb.Error // a controller becoming leader: another may answer
				continue
			}
			return command.Errorf(eb.Error.Code, "location %s: %s", loc, eb.Error.Message)
		}
		last = fmt.Errorf("%s: HTTP %d %s", addr, resp.StatusCode, bytes.TrimSpace(b))
	}
	return command.Errorf(command.CodeUnavailable, "%s of node %d: no controller of location %s answered: %v", op, *req.Node, loc, last)
}

// acrossLocations runs the part of admin call op about node n that other locations own: it
// passes the whole call to n's own location when n is a guest here (done: nothing is left
// to do here), else sends it to every other location first. Any refusal ends the call.
func (c *Controller) acrossLocations(ctx context.Context, op string, req *command.Request, n *command.NodeInfo, via adminVia) (done bool, e *command.Error) {
	act, others, passTo := c.nodeRouting(n, via)
	if passTo != "" {
		return true, c.adminAt(ctx, passTo, op, req, via, "")
	}
	slices.Sort(others)
	for _, loc := range others {
		if e := c.adminAt(ctx, loc, op, req, via, c.cfg.Location); e != nil {
			return true, e
		}
	}
	return !act, nil
}
