package node

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// Helpers for the named docs/replication.md case tests that need real nodes: the in-process
// cluster of cluster_test.go (group 1: main 1, voting siblings 2, 3, 4) and its fake
// controller, whose directory the tests change to play the controller's promotions.

// gatedStore blocks every write that appends to a log while it is closed, so a test can
// hold a main's own fsync of its new entries (the main's persistLoop runs it outside the
// group's lock).
type gatedStore struct {
	store.Store
	mu     sync.Mutex
	closed chan struct{} // nil: open
}

func (s *gatedStore) Group(g command.ServerID) (store.GroupStore, error) {
	gs, err := s.Store.Group(g)
	if err != nil {
		return nil, err
	}
	return &gatedGroup{GroupStore: gs, s: s}, nil
}

func (s *gatedStore) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed == nil {
		s.closed = make(chan struct{})
	}
}

func (s *gatedStore) open() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed != nil {
		close(s.closed)
		s.closed = nil
	}
}

type gatedGroup struct {
	store.GroupStore
	s *gatedStore
}

func (g *gatedGroup) Write(b *store.Batch) error {
	if len(b.Append) > 0 {
		g.s.mu.Lock()
		ch := g.s.closed
		g.s.mu.Unlock()
		if ch != nil {
			<-ch
		}
	}
	return g.GroupStore.Write(b)
}

// casesCluster is testCluster with an optional store per node (nil: bbolt in a temp dir).
func casesCluster(t *testing.T, stores map[uint16]store.Store) (*fakeController, []*testNode) {
	t.Helper()
	return testClusterWith(t, func(c *Config) { c.Store = stores[uint16(c.ID)] })
}

// createIn1 creates a resource in group 1 through s once the group serves.
func createIn1(t *testing.T, s *Session, data string) *command.Reply {
	t.Helper()
	var out *command.Reply
	waitUntil(t, 10*time.Second, "a create in group 1", func() bool {
		r, err := do(t, s, command.Request{Op: command.OpCreate, Type: "t", Data: json.RawMessage(data), Server: i64(1)})
		out = r
		return err == nil
	})
	return out
}

// promote1 makes the fake controller commit epoch e of group 1 with main and the given
// voters (active); the old main and any other listed nodes are learners.
func promote1(fc *fakeController, epoch uint64, main uint16, voters []uint16, learners ...uint16) {
	setGroup(fc, 1, epoch, main, voters, learners...)
}

// setGroup makes the fake controller commit epoch e of group server with main, the given
// voters (active) and learners.
func setGroup(fc *fakeController, server uint16, epoch uint64, main uint16, voters []uint16, learners ...uint16) {
	fc.update(func(d *command.Directory) {
		g := &d.Groups[server-1]
		g.Epoch, g.Main = epoch, main
		g.Active = command.Config{Version: g.Active.Version + 1, Voters: voters}
		g.Pending = nil
		g.Siblings = nil
		for _, v := range voters {
			g.Siblings = append(g.Siblings, command.Member{Node: v, State: command.SiblingVoting})
		}
		for _, l := range learners {
			g.Siblings = append(g.Siblings, command.Member{Node: l, State: command.SiblingSyncing})
		}
	})
}

func lastSeqOf1(tn *testNode) uint64 { return lastSeqOf(tn, 1) }

// lastSeqOf is node tn's last log seq of group gid (as a main or a sibling), 0 without a copy.
func lastSeqOf(tn *testNode, gid command.ServerID) uint64 {
	g := tn.n.localGroup(gid)
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.c.Replication() != nil:
		return g.c.Replication().LastSeq()
	case g.c.Follower() != nil:
		_, s := g.c.Follower().Last()
		return s
	}
	return 0
}

func appliedOf1(tn *testNode) uint64 { return appliedOf(tn, 1) }

func appliedOf(tn *testNode, gid command.ServerID) uint64 {
	g := tn.n.localGroup(gid)
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.applied
}

// pendingWrite sends req to s and returns a channel with its outcome.
func pendingWrite(s *Session, req command.Request) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := s.Start(context.Background(), &req, true)()
		done <- err
	}()
	return done
}
