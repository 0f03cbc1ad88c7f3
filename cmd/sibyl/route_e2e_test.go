package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// checkRouting shows on a running dev cluster that a routing client connected to a node
// that is not the main of rid's group sends the group's writes straight to the main, and
// follows the main to another node after a promotion, while a client without routing
// hands them to the node it is connected to. A node's API counts the requests it
// received from clients; a forwarded write is counted by the receiving node only.
func checkRouting(t *testing.T, cf clusterFile, rid string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	g, err := command.GroupOf(rid)
	if err != nil {
		t.Fatal(err)
	}
	wsURL := func(n clusterNode) string { return "ws://" + n.HTTP + "/v1/ws" }
	nodeByID := func(id uint16) clusterNode {
		for _, n := range cf.Nodes {
			if n.ID == id {
				return n
			}
		}
		t.Fatalf("node %d is not in cluster.json", id)
		return clusterNode{}
	}
	main, _ := groupOf(ctx, t, cf, g)
	var from clusterNode // a node that is not the main: the clients connect there
	for _, n := range cf.Nodes {
		if n.ID != main.ID {
			from = n
			break
		}
	}
	data := json.RawMessage(`{"text":"routed"}`)
	write := func(c *client.Client, n int) {
		t.Helper()
		for i := range n {
			if _, err := c.Update(ctx, rid, data); err != nil {
				t.Fatalf("update %d of %s through %s: %v", i, rid, c.Addr(), err)
			}
		}
	}
	deltas := func(before map[uint16]int) map[uint16]int {
		d := map[uint16]int{}
		for _, n := range cf.Nodes {
			d[n.ID] = apiUpdates(t, n.HTTP) - before[n.ID]
		}
		return d
	}
	counts := func() map[uint16]int { return deltas(map[uint16]int{}) }

	forwarding, err := client.Dial(ctx, client.Options{Addrs: []string{from.HTTP}, NoRouting: true})
	if err != nil {
		t.Fatal(err)
	}
	defer forwarding.Close()
	before := counts()
	write(forwarding, 5)
	if d := deltas(before); d[from.ID] != 5 || d[main.ID] != 0 {
		t.Fatalf("without routing, 5 updates of group %d through node %d: counted %v, want 5 on node %d only", g, from.ID, d, from.ID)
	}

	routed, err := client.Dial(ctx, client.Options{Addrs: []string{from.HTTP}})
	if err != nil {
		t.Fatal(err)
	}
	defer routed.Close()
	waitFor(t, 20*time.Second, fmt.Sprintf("the client on node %d to route group %d to node %d", from.ID, g, main.ID), func() bool {
		write(routed, 1)
		return routed.Route(g) == wsURL(main)
	})
	before = counts()
	write(routed, 20)
	if d := deltas(before); d[main.ID] != 20 || d[from.ID] != 0 {
		t.Fatalf("with routing, 20 updates of group %d through node %d: counted %v, want 20 on main %d only", g, from.ID, d, main.ID)
	}

	// Promote a voting sibling other than the client's node: the client follows it.
	var target clusterNode
	waitFor(t, 30*time.Second, fmt.Sprintf("a voting sibling of group %d besides node %d", g, from.ID), func() bool {
		_, voters := groupOf(ctx, t, cf, g)
		for _, id := range voters {
			if id != from.ID {
				target = nodeByID(id)
			}
		}
		return target.ID != 0
	})
	srv, nd := int64(g), int64(target.ID)
	// conflict: another sibling's registration is still pending.
	waitFor(t, 30*time.Second, fmt.Sprintf("node %d to be promoted in group %d", target.ID, g), func() bool {
		_, err := forwarding.Do(ctx, &command.Request{Op: command.OpPromote, Server: &srv, Node: &nd})
		if err != nil && command.CodeOf(err) != command.CodeConflict {
			t.Fatalf("promote node %d in group %d: %v", target.ID, g, err)
		}
		return err == nil
	})
	waitFor(t, 20*time.Second, fmt.Sprintf("the client to route group %d to its new main %d", g, target.ID), func() bool {
		write(routed, 1)
		return routed.Route(g) == wsURL(target)
	})
	before = counts()
	write(routed, 10)
	if d := deltas(before); d[target.ID] != 10 || d[main.ID] != 0 || d[from.ID] != 0 {
		t.Fatalf("after promoting node %d, 10 updates of group %d: counted %v, want 10 on node %d only", target.ID, g, d, target.ID)
	}
}

// groupOf reads the status from the first node and returns the main of group g and its
// voting siblings.
func groupOf(ctx context.Context, t *testing.T, cf clusterFile, g command.ServerID) (clusterNode, []uint16) {
	t.Helper()
	c, err := client.Dial(ctx, client.Options{Addrs: []string{cf.Nodes[0].HTTP}, NoRouting: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, sg := range st.Groups {
		if command.ServerID(sg.Server) != g || sg.Main == nil {
			continue
		}
		var voters []uint16
		for _, s := range sg.Siblings {
			if s.State == "voting" && !s.Stale {
				voters = append(voters, s.Node)
			}
		}
		for _, n := range cf.Nodes {
			if n.ID == *sg.Main {
				return n, voters
			}
		}
	}
	t.Fatalf("status shows no main of group %d: %+v", g, st.Groups)
	return clusterNode{}, nil
}

// apiUpdates is the number of updates node addr answered ok to its clients, from its
// /metrics.
func apiUpdates(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", addr, err)
	}
	defer resp.Body.Close()
	const prefix = `sibyl_requests_total{op="update",code="ok"} `
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("metrics of %s: %q: %v", addr, sc.Text(), err)
			}
			return n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("metrics of %s: %v", addr, err)
	}
	return 0
}
