package store

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/sibylhq/sibyl/command"
)

// NewMemStore returns a Store held in memory, for fast tests. It shares all group logic
// with the bbolt store (store_group.go, store_batch.go) and differs only in where the
// bytes live, so it keeps the same values encoded the same way: a caller can never alias
// stored state.
func NewMemStore() Store {
	return &memStore{groups: make(map[command.ServerID]*memGroup)}
}

// ReopenMemStore returns a new handle on the data of s, a memory store that was closed:
// what a restarted process finds when it opens its store file again. It panics if s is
// not a memory store.
func ReopenMemStore(s Store) Store {
	old := s.(*memStore)
	old.mu.Lock()
	defer old.mu.Unlock()
	return &memStore{groups: old.groups}
}

var errMemClosed = errors.New("memory store is closed")

// memStore serialises writers and lets readers share, like bbolt.
type memStore struct {
	mu     sync.RWMutex
	closed bool
	groups map[command.ServerID]*memGroup
}

type memGroup struct {
	buckets [7]memBucket // in subBucketNames order
}

func (g *memGroup) groupBuckets() *groupBuckets {
	b := &g.buckets
	return &groupBuckets{log: &b[0], meta: &b[1], epochs: &b[2], resources: &b[3],
		tombstones: &b[4], dedupe: &b[5], tickets: &b[6]}
}

func (s *memStore) Groups() ([]command.ServerID, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("list groups: %w", errMemClosed)
	}
	gs := make([]command.ServerID, 0, len(s.groups))
	for g := range s.groups {
		gs = append(gs, g)
	}
	slices.Sort(gs)
	return gs, nil
}

func (s *memStore) Group(g command.ServerID) (GroupStore, error) {
	if g == 0 {
		return nil, fmt.Errorf("open group 0: server IDs are 1..65535")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("open group %d: %w", g, errMemClosed)
	}
	if s.groups[g] == nil {
		mg := &memGroup{}
		if err := initGroup(mg.groupBuckets()); err != nil {
			return nil, fmt.Errorf("create group %d: %w", g, err)
		}
		s.groups[g] = mg
	}
	return &groupStore{g: g, txns: memTxns{s: s, g: g}, checkFromLog: true}, nil
}

func (s *memStore) DropGroup(g command.ServerID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("drop group %d: %w", g, errMemClosed)
	}
	delete(s.groups, g)
	return nil
}

func (s *memStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// memTxns looks the group up on every transaction, so a handle of a dropped group reports
// ErrNoCopy, as in bbolt.
type memTxns struct {
	s *memStore
	g command.ServerID
}

func (t memTxns) view(fn func(*groupBuckets) error) error {
	t.s.mu.RLock()
	defer t.s.mu.RUnlock()
	return t.run(fn)
}

// update has no rollback: Write plans the whole batch before its first mutation, and
// memBucket mutations cannot fail, so an error never leaves half a batch behind.
func (t memTxns) update(fn func(*groupBuckets) error) error {
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	return t.run(fn)
}

func (t memTxns) run(fn func(*groupBuckets) error) error {
	if t.s.closed {
		return errMemClosed
	}
	g := t.s.groups[t.g]
	if g == nil {
		return ErrNoCopy
	}
	bk := g.groupBuckets()
	bk.reset = func(i int) (storeKV, error) {
		g.buckets[i] = memBucket{}
		return &g.buckets[i], nil
	}
	return fn(bk)
}

// snapshot copies the group: the memory store has no multi-version pages to hold.
func (t memTxns) snapshot() (*groupBuckets, uint64, func(), error) {
	t.s.mu.RLock()
	defer t.s.mu.RUnlock()
	if t.s.closed {
		return nil, 0, nil, errMemClosed
	}
	g := t.s.groups[t.g]
	if g == nil {
		return nil, 0, nil, ErrNoCopy
	}
	cp := &memGroup{}
	for i, b := range g.buckets {
		cp.buckets[i] = memBucket{keys: slices.Clone(b.keys), vals: make(map[string][]byte, len(b.vals))}
		for k, v := range b.vals {
			cp.buckets[i].vals[k] = v // stored values are never mutated in place
		}
	}
	return cp.groupBuckets(), 0, func() {}, nil
}

// memBucket is an ordered map: values by key plus the keys kept sorted. Inserting in the
// middle is O(n), which is fine for tests; logs are appended at the end anyway.
type memBucket struct {
	keys []string
	vals map[string][]byte
}

func (b *memBucket) get(k []byte) []byte { return b.vals[string(k)] }

func (b *memBucket) put(k, v []byte) error {
	key := string(k)
	if b.vals == nil {
		b.vals = make(map[string][]byte)
	}
	if _, ok := b.vals[key]; !ok {
		i, _ := slices.BinarySearch(b.keys, key)
		b.keys = slices.Insert(b.keys, i, key)
	}
	b.vals[key] = slices.Clone(v)
	return nil
}

func (b *memBucket) del(k []byte) error {
	key := string(k)
	if _, ok := b.vals[key]; !ok {
		return nil
	}
	delete(b.vals, key)
	i, _ := slices.BinarySearch(b.keys, key)
	b.keys = slices.Delete(b.keys, i, i+1)
	return nil
}

func (b *memBucket) putKey(k string, v []byte) error { return b.put([]byte(k), v) }
func (b *memBucket) delKey(k string) error           { return b.del([]byte(k)) }

func (b *memBucket) each(from []byte, fn func(k, v []byte) (bool, error)) error {
	i, _ := slices.BinarySearch(b.keys, string(from))
	for ; i < len(b.keys); i++ {
		more, err := fn([]byte(b.keys[i]), b.vals[b.keys[i]])
		if err != nil || !more {
			return err
		}
	}
	return nil
}
