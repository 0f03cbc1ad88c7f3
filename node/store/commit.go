package store

import (
	"errors"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// committer is the node-wide group commit of the bbolt store. bbolt lets one write
// transaction run at a time and each one costs its own fsyncs; a node writes for many
// groups at once (its main role and every sibling copy), so the committer runs every write
// queued while the previous commit was in flight as one transaction: one fsync for all of
// them, and no waiting when the disk is idle.
type committer struct {
	db    *bolt.DB
	mu    sync.Mutex
	queue []*commitOp
	wake  chan struct{}
	done  chan struct{}
	once  sync.Once
}

type commitOp struct {
	fn  func(*bolt.Tx) error
	err chan error
}

var errStoreClosed = errors.New("store is closed")

func newCommitter(db *bolt.DB) *committer {
	c := &committer{db: db, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go c.run()
	return c
}

// update runs fn in a write transaction, possibly shared with other writes, and returns
// once that transaction is durable (or failed for fn).
func (c *committer) update(fn func(*bolt.Tx) error) error {
	op := &commitOp{fn: fn, err: make(chan error, 1)}
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		return errStoreClosed
	default:
	}
	c.queue = append(c.queue, op)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return <-op.err
}

func (c *committer) run() {
	for {
		select {
		case <-c.done:
			c.mu.Lock()
			q := c.queue
			c.queue = nil
			c.mu.Unlock()
			for _, op := range q {
				op.err <- errStoreClosed
			}
			return
		case <-c.wake:
		}
		c.mu.Lock()
		q := c.queue
		c.queue = nil
		c.mu.Unlock()
		if len(q) > 0 {
			c.commit(q)
		}
	}
}

// errOpFailed aborts a shared transaction when one of its writes fails.
var errOpFailed = errors.New("a write of the shared transaction failed")

func (c *committer) commit(q []*commitOp) {
	if len(q) > 1 {
		err := c.db.Update(func(tx *bolt.Tx) error {
			for _, op := range q {
				if err := op.fn(tx); err != nil {
					return errOpFailed
				}
			}
			return nil
		})
		if err == nil {
			for _, op := range q {
				op.err <- nil
			}
			return
		}
	}
	// Alone, so a write that fails (or a failed shared commit) changes nothing for the others.
	for _, op := range q {
		op.err <- c.db.Update(op.fn)
	}
}

func (c *committer) close() {
	c.once.Do(func() {
		c.mu.Lock()
		close(c.done)
		c.mu.Unlock()
	})
}
