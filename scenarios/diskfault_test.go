package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/wal"
	"github.com/sibylhq/sibyl/scenarios/memnet"
)

// TestInProcDiskFaults runs a location of 3 controllers and 4 nodes on the durable store
// (write-ahead log and bbolt files) in one process and fails disks under a keyed write
// load: first group 1's main's (every fsync and segment creation fails, as on a dying
// disk), then a voting sibling's (writes fail with ENOSPC). The main must be shown
// degraded with its reason and replaced by promotion after down-after, the sibling's
// failure must not stop the group, both nodes must come back by themselves when their
// disks work, and the history must be linearizable with no acknowledged write lost.
func TestInProcDiskFaults(t *testing.T) {
	var h *History
	var ws []*writer
	lost := 0
	var replaced, back time.Duration
	var reason string
	synctest.Test(t, func(t *testing.T) {
		m := startMemClusterWith(t, memnet.New(), 3, inprocNodes, true)
		defer m.stop()
		m.waitFor(60*time.Second, "group 1 with 2 voting siblings", func() bool {
			g := m.group(1)
			return g != nil && g.Main != 0 && voting(g) >= 2 && g.Pending == nil
		})
		h = NewHistory()
		var clients []*client.Client
		defer func() {
			for _, cl := range clients {
				cl.Close()
			}
		}()
		newClient := func(host string, seed uint64, nodes ...int) *client.Client {
			cl := m.client(host, seed, nodes...)
			clients = append(clients, cl)
			return cl
		}
		for i := range 4 {
			w := newWriter(t, i, newClient(fmt.Sprintf("10.0.9.%d", i+1), uint64(i), 1+i%inprocNodes, 1+(i+1)%inprocNodes), 1, h)
			w.keyed, w.opTimeout, w.pace, w.mix = true, 10*time.Second, 20*time.Millisecond, true
			w.seed(uint64(i))
			ws = append(ws, w)
		}
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, w := range ws {
			wg.Go(func() { w.run(ctx) })
		}
		wg.Go(func() { readLoop(ctx, 100, newClient("10.0.9.50", 50, 2, 3), h, ws) })
		time.Sleep(time.Second) // a second of writes before the fault; not synchronisation

		// The main's disk dies: every fsync and new segment fails.
		g := m.group(1)
		main := m.nodes[g.Main-1]
		m.note(fmt.Sprintf("fault: node %d's disk fails (EIO)", main.id))
		main.disk.Set(wal.FaultSync, wal.ErrIO)
		main.disk.Set(wal.FaultCreate, wal.ErrIO)
		main.disk.Set(wal.FaultCommit, wal.ErrIO)
		start := time.Now()
		m.waitFor(10*time.Second, fmt.Sprintf("node %d degraded in /v1/status", main.id), func() bool {
			reason = nodeStatus(m, main.id)
			return strings.HasPrefix(reason, command.NodeDegraded+":")
		})
		m.waitFor(30*time.Second, "group 1 promoted away from the failing main", func() bool {
			g := m.group(1)
			return g != nil && g.Main != 0 && g.Main != uint16(main.id)
		})
		replaced = time.Since(start)
		before := acked(ws)
		m.waitFor(30*time.Second, "writes acknowledged by the new main", func() bool { return acked(ws) >= before+20 })

		main.disk.Heal()
		healed := time.Now()
		m.waitFor(30*time.Second, fmt.Sprintf("node %d up and a sibling of group 1 again", main.id), func() bool {
			g := m.group(1)
			return nodeStatus(m, main.id) == command.NodeUp && g != nil && member(g, main.id) && main.n.Healthy()
		})
		back = time.Since(healed)

		// A voting sibling's disk fills up: with three voting siblings (W=2) the group keeps
		// its quorum with the other two.
		m.waitFor(60*time.Second, "group 1 with 3 voting siblings", func() bool {
			g := m.group(1)
			return g != nil && voting(g) == 3 && g.Pending == nil
		})
		g = m.group(1)
		var sib *memNode
		for _, s := range g.Siblings {
			if s.State == command.SiblingVoting {
				sib = m.nodes[s.Node-1]
				break
			}
		}
		m.note(fmt.Sprintf("fault: node %d's disk is full (ENOSPC)", sib.id))
		sib.disk.Set(wal.FaultWrite, wal.ErrNoSpace)
		sib.disk.Set(wal.FaultCreate, wal.ErrNoSpace)
		sib.disk.Set(wal.FaultCommit, wal.ErrNoSpace)
		m.waitFor(10*time.Second, fmt.Sprintf("node %d degraded", sib.id), func() bool {
			return strings.HasPrefix(nodeStatus(m, sib.id), command.NodeDegraded)
		})
		before = acked(ws)
		m.waitFor(30*time.Second, "writes acknowledged while a sibling's disk is full", func() bool { return acked(ws) >= before+20 })
		sib.disk.Heal()
		m.waitFor(30*time.Second, fmt.Sprintf("node %d up again", sib.id), func() bool {
			return nodeStatus(m, sib.id) == command.NodeUp && sib.n.Healthy()
		})
		before = acked(ws)
		m.waitFor(30*time.Second, "writes acknowledged after both disks healed", func() bool { return acked(ws) >= before+20 })
		stop()
		wg.Wait()
		rc := newClient("10.0.9.60", 60, 1, 2, 3, 4)
		for _, w := range ws {
			lost += w.lostWrites(t, rc)
		}
		lost += doubledCreates(t, rc, 1)
		if t.Failed() {
			t.Log(m.logTail(80))
		}
	})
	if lost > 0 {
		t.Errorf("%d acknowledged writes lost", lost)
	}
	if err := h.Check(60 * time.Second); err != nil {
		t.Error(err)
	}
	t.Logf("status while degraded: %s", reason)
	t.Logf("%d ops (%s), %d acknowledged, %d lost; main replaced %v after its disk failed; back as a sibling %v after the disk healed (virtual time)",
		h.Len(), h.CountsString(), acked(ws), lost, replaced.Round(time.Millisecond), back.Round(time.Millisecond))
}

// nodeStatus is node id's state in the controller leader's /v1/status, with ": reason"
// when it has one ("" when no controller leads).
func nodeStatus(m *memCluster, id int) string {
	l := m.leader()
	if l == nil {
		return ""
	}
	rec := httptest.NewRecorder()
	l.c.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/status", nil))
	var st command.Status
	if json.Unmarshal(rec.Body.Bytes(), &st) != nil {
		return ""
	}
	for _, n := range st.Nodes {
		if int(n.ID) == id {
			if n.Reason != "" {
				return n.State + ": " + n.Reason
			}
			return n.State
		}
	}
	return ""
}

func member(g *command.GroupInfo, node int) bool {
	for _, s := range g.Siblings {
		if int(s.Node) == node {
			return true
		}
	}
	return false
}
