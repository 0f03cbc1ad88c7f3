package node

import (
	"encoding/json"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
)

// slotHoldingStore records, at each write of new entries by group 1's main, whether the
// main still had entries its links had not sent, and then keeps the goroutine running
// without yielding for a while, as the log's raw fdatasync holds the node's scheduler
// slot (node/wal).
type slotHoldingStore struct {
	store.Store
	node *Node

	mu       sync.Mutex
	armed    bool
	writes   int
	unsentAt int // writes that started with unsent entries
}

func (s *slotHoldingStore) Group(g command.ServerID) (store.GroupStore, error) {
	gs, err := s.Store.Group(g)
	if err != nil {
		return nil, err
	}
	return &slotHoldingGroup{GroupStore: gs, s: s, id: g}, nil
}

type slotHoldingGroup struct {
	store.GroupStore
	s  *slotHoldingStore
	id command.ServerID
}

func (g *slotHoldingGroup) Write(b *store.Batch) error {
	s := g.s
	s.mu.Lock()
	armed := s.armed && len(b.Append) > 0 && s.node != nil
	s.mu.Unlock()
	if armed {
		grp := s.node.localGroup(g.id)
		grp.mu.Lock()
		unsent := grp.c.Replication() != nil && grp.c.Replication().Unsent()
		grp.mu.Unlock()
		s.mu.Lock()
		s.writes++
		if unsent {
			s.unsentAt++
		}
		s.mu.Unlock()
		for start := time.Now(); time.Since(start) < time.Millisecond; {
		}
	}
	return g.GroupStore.Write(b)
}

// A main sends its new entries to the siblings before its own log write: on a node with a
// single scheduler slot that write holds the slot for the whole fsync, and entries not
// sent before it would reach the siblings one fsync late (docs/write.md, "Batching").
func TestMainSendsNewEntriesBeforeItsOwnLogWrite(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	hold := &slotHoldingStore{Store: store.NewMemStore()}
	_, nodes := casesCluster(t, map[uint16]store.Store{1: hold})
	hold.mu.Lock()
	hold.node = nodes[0].n
	hold.mu.Unlock()
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	created := createIn1(t, s1, `0`)
	// Every sibling answered its probe: from here each new entry can be sent at once.
	waitUntil(t, 5*time.Second, "every sibling holds the create", func() bool {
		return lastSeqOf1(nodes[1]) >= created.Seq && lastSeqOf1(nodes[2]) >= created.Seq && lastSeqOf1(nodes[3]) >= created.Seq
	})
	hold.mu.Lock()
	hold.armed = true
	hold.mu.Unlock()
	const updates = 20
	for i := range updates {
		if _, err := do(t, s1, command.Request{Op: command.OpUpdate, RID: created.Resource.ID, Data: json.RawMessage(`1`)}); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	hold.mu.Lock()
	defer hold.mu.Unlock()
	if hold.writes < updates {
		t.Fatalf("%d writes of new entries for %d updates", hold.writes, updates)
	}
	if hold.unsentAt > 0 {
		t.Fatalf("%d of %d log writes of the main began while some sibling had not been sent the new entries", hold.unsentAt, hold.writes)
	}
}
