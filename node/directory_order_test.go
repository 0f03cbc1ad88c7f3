package node

import (
	"slices"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/core"
)

// A directory that reaches a main after a newer one (the heartbeat and the watch each
// fetch directories) must not take it back to the older config: with group 1's first
// config (no voters) it would commit alone. Here the main gets version 2 (voters 2, 3, 4),
// then version 1 with no voters, and with every sibling stopped a write must not commit.
func TestMainKeepsItsConfigWhenAnOlderDirectoryArrivesLate(t *testing.T) {
	fc, nodes := testCluster(t)
	fc.update(func(d *command.Directory) { d.Groups[0].Active.Version = 2 })
	g1 := nodes[0].n.localGroup(1)
	waitUntil(t, 5*time.Second, "the main on config version 2", func() bool {
		g1.mu.Lock()
		defer g1.mu.Unlock()
		return g1.c.Role() == core.Main && g1.c.Replication().Quorum().Version == 2
	})
	older := *nodes[0].n.directoryGroup(1)
	older.Active = command.Config{Version: 1}
	older.Siblings = nil
	g1.follow(&older, 1, nodes[0].n.cfg.Location, nodes[0].n.directory().Index)
	g1.mu.Lock()
	q := g1.c.Replication().Quorum()
	g1.mu.Unlock()
	if q.Version != 2 || len(q.Sets) != 1 || !slices.Equal(q.Sets[0], []uint16{2, 3, 4}) {
		t.Fatalf("after a late directory of config 1 the main's quorum is %+v, want version 2 with voters 2, 3, 4", q)
	}
	for _, n := range nodes[1:] {
		n.stop()
	}
	s := nodes[0].n.NewSession()
	defer s.Close()
	if _, err := do(t, s, command.Request{Op: command.OpCreate, Type: "t", Data: []byte(`1`), Server: i64(1)}); err == nil {
		t.Fatal("a write committed with every voting sibling stopped")
	}
}
