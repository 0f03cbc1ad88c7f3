package scenarios

import (
	"fmt"
	"sync"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/node/wal"
	resync "github.com/sibylhq/sibyl/sync"
)

// faultyStore puts a node's memory store behind a disk that fails when its wal.Faults say
// (at wal.FaultWrite), as the durable store behaves on a failing disk: a write that meets
// the fault changes nothing and answers store.ErrDiskFault, every write is refused while
// the fault lasts, and the store reports it (store.Health) until a retry finds the disk
// working again.
type faultyStore struct {
	store.Store
	f *wal.Faults

	mu      sync.Mutex
	fault   error
	changed chan struct{}
}

func newFaultyStore(s store.Store, f *wal.Faults) *faultyStore {
	return &faultyStore{Store: s, f: f, changed: make(chan struct{})}
}

// retryEvery is how often a faulted store tries its disk again.
const retryEvery = 100 * time.Millisecond

// Fault reports the disk fault; while faulted, the returned channel closes after
// retryEvery, so the node looks again (and the store retries its disk then).
func (s *faultyStore) Fault() (error, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fault != nil && s.f.Check(wal.FaultWrite) == nil {
		s.fault = nil
		close(s.changed)
		s.changed = make(chan struct{})
	}
	if s.fault == nil {
		return nil, s.changed
	}
	retry := make(chan struct{})
	time.AfterFunc(retryEvery, func() { close(retry) })
	return s.fault, retry
}

// check fails an operation while the disk fails, recording the fault.
func (s *faultyStore) check(op string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fault != nil {
		return s.fault
	}
	if err := s.f.Check(wal.FaultWrite); err != nil {
		s.fault = fmt.Errorf("%s: %w: %w", op, store.ErrDiskFault, err)
		close(s.changed)
		s.changed = make(chan struct{})
		return s.fault
	}
	return nil
}

func (s *faultyStore) Group(g command.ServerID) (store.GroupStore, error) {
	gs, err := s.Store.Group(g)
	if err != nil {
		return nil, err
	}
	return &faultyGroup{GroupStore: gs, s: s}, nil
}

func (s *faultyStore) DropGroup(g command.ServerID) error {
	if err := s.check("drop group"); err != nil {
		return err
	}
	return s.Store.DropGroup(g)
}

type faultyGroup struct {
	store.GroupStore
	s *faultyStore
}

func (g *faultyGroup) Write(b *store.Batch) error {
	if err := g.s.check("write"); err != nil {
		return err
	}
	return g.GroupStore.Write(b)
}

func (g *faultyGroup) Reset(epoch uint64) error {
	if err := g.s.check("reset"); err != nil {
		return err
	}
	return g.GroupStore.Reset(epoch)
}

func (g *faultyGroup) BeginResync(h resync.Header) (resync.Position, error) {
	if err := g.s.check("begin resync"); err != nil {
		return resync.Position{}, err
	}
	return g.GroupStore.BeginResync(h)
}

func (g *faultyGroup) WriteResync(recs []resync.Record) error {
	if err := g.s.check("resync"); err != nil {
		return err
	}
	return g.GroupStore.WriteResync(recs)
}

func (g *faultyGroup) FinishResync(h resync.Header) error {
	if err := g.s.check("finish resync"); err != nil {
		return err
	}
	return g.GroupStore.FinishResync(h)
}
