package scenarios

import (
	"context"
	"encoding/json"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/scenarios/memnet"
)

func voting(g *command.GroupInfo) int {
	k := 0
	for _, s := range g.Siblings {
		if s.State == command.SiblingVoting {
			k++
		}
	}
	return k
}

func TestInProcSmoke(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		net := memnet.New()
		net.Latency = func(from, to string) time.Duration { return 500 * time.Microsecond }
		m := startMemCluster(t, net, 3, 4)
		defer m.stop()
		m.waitFor(60*time.Second, "group 1 with 2 voting siblings", func() bool {
			g := m.group(1)
			return g != nil && g.Main != 0 && voting(g) >= 2
		})
		t.Logf("ready after %v virtual", time.Since(start))
		cl := m.client("10.0.9.1", 1, 2, 3, 4)
		defer cl.Close()
		ctx := context.Background()
		r, err := cl.Create(ctx, "x", json.RawMessage(`1`), client.WithServer(1))
		if err != nil {
			t.Fatal(err)
		}
		old := m.group(1).Main
		t0 := time.Now()
		m.crashNode(m.nodes[old-1])
		m.waitFor(10*time.Second, "a new main", func() bool {
			g := m.group(1)
			return g != nil && g.Main != 0 && g.Main != old
		})
		t.Logf("new main %d after %v", m.group(1).Main, time.Since(t0))
		if _, err := cl.Update(ctx, r.Resource.ID, json.RawMessage(`2`)); err != nil {
			t.Fatal(err)
		}
	})
}
