package location

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Two locations of real controllers; nodes 1 and 2 of loc1, 3, 4 and 5 of loc2, each a
// member of its own location and a guest of the other (one fakeNode per location it
// heartbeats). Each node answers hand-overs (a planned promotion off it) at its address.
type drainWorld struct {
	t     *testing.T
	locs  map[string]*testCluster
	nodes map[string][]*fakeNode // by the location they heartbeat
	stops map[uint16]chan struct{}
	wg    sync.WaitGroup
}

func newDrainWorld(t *testing.T) *drainWorld {
	// A down-after well above the fake nodes' 50 ms beats: a loaded test machine must not
	// have a location promote away from a live node in the middle of a drain.
	slow := func(c *Config) { c.DownAfter = 3 * time.Second }
	w := &drainWorld{t: t, locs: newTestLocations(t, []string{"loc1", "loc2"}, 1, "", slow),
		nodes: map[string][]*fakeNode{}, stops: map[uint16]chan struct{}{}}
	handover := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.WriteHeader(http.StatusOK) // frozen and caught up at once: the fake main holds nothing
	}))
	t.Cleanup(handover.Close)
	own := map[uint16]string{1: "loc1", 2: "loc1", 3: "loc2", 4: "loc2", 5: "loc2"}
	for id := uint16(1); id <= 5; id++ {
		w.stops[id] = make(chan struct{})
		for _, loc := range []string{"loc1", "loc2"} {
			n := &fakeNode{id: id, instance: fmt.Sprintf("inst-%d", id), ctls: w.locs[loc].httpAddrs(), location: own[id],
				addr: strings.TrimPrefix(handover.URL, "http://")}
			w.nodes[loc] = append(w.nodes[loc], n)
		}
	}
	// Members first, so that each location creates its own groups before guests arrive.
	for _, loc := range []string{"loc1", "loc2"} {
		for _, n := range w.nodes[loc] {
			if n.location == loc {
				eventuallyOK(t, 10*time.Second, fmt.Sprintf("node %d joined %s", n.id, loc), n.join)
			}
		}
	}
	for _, loc := range []string{"loc1", "loc2"} {
		for _, n := range w.nodes[loc] {
			if n.location != loc {
				eventuallyOK(t, 10*time.Second, fmt.Sprintf("node %d joined %s as a guest", n.id, loc), n.join)
			}
			w.wg.Add(1)
			go n.run(w.stops[n.id], &w.wg)
		}
	}
	t.Cleanup(w.stopAll)
	return w
}

func (w *drainWorld) stopAll() {
	for id, ch := range w.stops {
		select {
		case <-ch:
		default:
			close(ch)
		}
		delete(w.stops, id)
	}
	w.wg.Wait()
}

// stopNode ends node id's heartbeats in every location (its process stopped).
func (w *drainWorld) stopNode(id uint16) {
	close(w.stops[id])
	delete(w.stops, id)
}

func (w *drainWorld) dir(loc string) command.Directory {
	return w.locs[loc].leader(10 * time.Second).c.Directory()
}

// admin sends admin call op about node to loc's leader, with header (may be nil).
func (w *drainWorld) admin(loc, op string, node uint16, header http.Header) (int, command.Code, string) {
	n := int64(node)
	b, _ := json.Marshal(command.Request{Op: op, Node: &n})
	req, err := http.NewRequest(http.MethodPost, "http://"+w.locs[loc].leader(10*time.Second).httpAddr+"/v1/internal/admin/"+op, bytes.NewReader(b))
	if err != nil {
		w.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		w.t.Fatalf("%s of node %d at %s: %v", op, node, loc, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var eb errorBody
	var code command.Code
	if json.Unmarshal(body, &eb) == nil && eb.Error != nil {
		code = eb.Error.Code
	}
	return resp.StatusCode, code, string(body)
}

// holdsCopies lists the groups of d node is main or a sibling of.
func holdsCopies(d command.Directory, node uint16) []uint16 {
	var out []uint16
	for i := range d.Groups {
		if d.Groups[i].Main == node || member(&d.Groups[i], node) != nil {
			out = append(out, d.Groups[i].Server)
		}
	}
	return out
}

func nodeStateIn(d command.Directory, node uint16) string {
	if n := d.NodeByID(node); n != nil {
		return n.State
	}
	return "absent"
}

// settled waits until every group of both locations has three voting siblings and one of
// loc2's groups holds a copy on node, so that a drain has copies of both homes to move.
func (w *drainWorld) settled(node uint16) {
	eventuallyOK(w.t, 30*time.Second, "groups placed in both locations", func() error {
		for _, loc := range []string{"loc1", "loc2"} {
			d := w.dir(loc)
			for _, g := range d.Groups {
				if g.Main == 0 || len(g.Active.Voters) < 3 || g.Pending != nil {
					return fmt.Errorf("%s group %d: main %d, voters %v, pending %v", loc, g.Server, g.Main, g.Active.Voters, g.Pending)
				}
			}
		}
		if len(holdsCopies(w.dir("loc2"), node)) == 0 {
			return fmt.Errorf("node %d holds no copy of a loc2 group", node)
		}
		return nil
	})
}

// A drain asked at the node's own location moves the copies of every location's groups off
// it and leaves it spare in every location, so that none places a copy there again; asked at
// a location where the node is a guest, it is passed to the node's own location.
func TestDrainMovesEveryLocationsCopies(t *testing.T) {
	w := newDrainWorld(t)
	w.settled(1)
	t.Logf("before: node 1 holds copies of loc1 groups %v and loc2 groups %v", holdsCopies(w.dir("loc1"), 1), holdsCopies(w.dir("loc2"), 1))
	if status, code, body := w.admin("loc1", command.OpDrain, 1, nil); status != http.StatusOK {
		t.Fatalf("drain node 1 at loc1: HTTP %d %s %s", status, code, body)
	}
	for _, loc := range []string{"loc1", "loc2"} {
		d := w.dir(loc)
		if held := holdsCopies(d, 1); len(held) > 0 {
			t.Errorf("after the drain node 1 still holds copies of %s's groups %v", loc, held)
		}
		if s := nodeStateIn(d, 1); s != command.NodeSpare {
			t.Errorf("after the drain node 1 is %s in %s's directory, want spare", s, loc)
		}
	}

	// Asked at loc2, where node 2 is a guest: loc1 runs it, for both locations.
	w.settled(2)
	if status, code, body := w.admin("loc2", command.OpDrain, 2, nil); status != http.StatusOK {
		t.Fatalf("drain node 2 at loc2: HTTP %d %s %s", status, code, body)
	}
	for _, loc := range []string{"loc1", "loc2"} {
		d := w.dir(loc)
		if held := holdsCopies(d, 2); len(held) > 0 {
			t.Errorf("after the drain asked at loc2 node 2 still holds copies of %s's groups %v", loc, held)
		}
		if s := nodeStateIn(d, 2); s != command.NodeSpare {
			t.Errorf("after the drain asked at loc2 node 2 is %s in %s's directory, want spare", s, loc)
		}
	}
}

// removeNode is refused with conflict while the node holds a copy of any location's group,
// even when its own location holds nothing of it any more; once every location moved its
// copies off, it removes the node from every directory.
func TestRemoveNodeRefusedWhileAnotherLocationsCopyRemains(t *testing.T) {
	w := newDrainWorld(t)
	w.settled(1)
	// loc1 drains node 1 of its own groups only, as it does when loc2 asks it (the header).
	only := http.Header{forLocationHeader: []string{"loc2"}}
	if status, code, body := w.admin("loc1", command.OpDrain, 1, only); status != http.StatusOK {
		t.Fatalf("drain node 1 of loc1's groups: HTTP %d %s %s", status, code, body)
	}
	if held := holdsCopies(w.dir("loc1"), 1); len(held) > 0 || nodeStateIn(w.dir("loc1"), 1) != command.NodeSpare {
		t.Fatalf("node 1 in loc1 after its drain there: copies %v, state %s", held, nodeStateIn(w.dir("loc1"), 1))
	}
	held2 := holdsCopies(w.dir("loc2"), 1)
	if len(held2) == 0 {
		t.Fatal("node 1 holds no copy of loc2's groups: nothing to refuse")
	}
	w.stopNode(1)
	eventuallyOK(t, 10*time.Second, "removeNode refused by loc2", func() error {
		status, code, body := w.admin("loc1", command.OpRemoveNode, 1, nil)
		switch {
		case code == command.CodeConflict && strings.Contains(body, "loc2") && strings.Contains(body, "holds copies"):
			return nil
		case code == command.CodeConflict && strings.Contains(body, "still running"):
			return fmt.Errorf("not down yet: %s", body) // its last heartbeat is recent
		}
		t.Fatalf("removeNode of node 1 holding copies of loc2's groups %v: HTTP %d %s %s, want conflict naming loc2", held2, status, code, body)
		return nil
	})
	if s := nodeStateIn(w.dir("loc1"), 1); s != command.NodeSpare {
		t.Fatalf("after the refused removeNode node 1 is %s in loc1's directory, want spare", s)
	}
	if nodeStateIn(w.dir("loc2"), 1) == "absent" {
		t.Fatal("the refused removeNode removed loc2's record of node 1")
	}

	// The full drain moves loc2's copies off too; then removeNode removes it everywhere.
	if status, code, body := w.admin("loc1", command.OpDrain, 1, nil); status != http.StatusOK {
		t.Fatalf("drain node 1: HTTP %d %s %s", status, code, body)
	}
	if held := holdsCopies(w.dir("loc2"), 1); len(held) > 0 {
		t.Fatalf("after the drain node 1 still holds copies of loc2's groups %v", held)
	}
	if status, code, body := w.admin("loc1", command.OpRemoveNode, 1, nil); status != http.StatusOK {
		t.Fatalf("removeNode of the drained, stopped node 1: HTTP %d %s %s", status, code, body)
	}
	for _, loc := range []string{"loc1", "loc2"} {
		if s := nodeStateIn(w.dir(loc), 1); s != "absent" {
			t.Errorf("after removeNode node 1 is %s in %s's directory", s, loc)
		}
	}
}
