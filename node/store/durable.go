package store

import (
	"errors"

	"github.com/sibylhq/sibyl/node/wal"
)

// Durable is the store OpenDurable returns, with what operators' tools and fault tests
// need beyond Store.
type Durable interface {
	Store
	// Flush runs a flush now, as the store does in the background: everything logged so
	// far reaches the state store, but for the log entries flushes keep in memory for a
	// while (layer_carry.go).
	Flush() error
	// FlushStats counts the flushes and the log entries they wrote or never had to.
	FlushStats() FlushStats
	// Replayed says what the last boot read from the log.
	Replayed() ReplayStats
	// LogEnd is the write-ahead log's end position in bytes since the store was created.
	LogEnd() uint64
	// WALStats counts the write-ahead log's records, writes, fsyncs and bytes.
	WALStats() wal.Stats
	// Kill stops the store as a killed process would: nothing more is flushed to the
	// state store, and what the log holds is all the next open has beyond the last flush.
	Kill() error
	// Health reports a disk fault the store is waiting out.
	Health
}

func (s *walStore) Flush() error { return s.flush(s.opts.KeepFlushes) }

func (s *walStore) LogEnd() uint64 { return s.log.End() }

func (s *walStore) Kill() error { return s.crash() }

func (s *walStore) crash() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	return errors.Join(s.log.Close(), s.db.Close())
}
