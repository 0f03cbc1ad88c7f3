// Package store keeps a node's copies of groups on disk: each copy's log, its committed
// layer (resources, tombstones, dedupe records, tickets) and its meta (epoch, commit point,
// applied position, copy ID, epoch history).
//
// Open one Store per node with OpenDurable (the node's: a write-ahead log, package wal,
// shared by every group with group commit, in front of a bbolt state store that gets every
// change in large background flushes; docs/storage.md), OpenBolt (bbolt alone, one commit
// per write) or NewMemStore (in memory, for fast tests). All three pass the same contract
// tests. Store.Group returns a copy's GroupStore; its Write applies one Batch (an epoch, a
// truncation, entries to append, a commit point, effects to apply, a compaction) atomically
// and durably, and Snapshot, BeginResync, WriteResync and FinishResync carry a copy's
// committed layer to another node (package sync). Read gives one consistent View of a
// committed layer.
//
// The files: store.go (the interfaces), batch.go (planning a Batch against the buckets),
// group.go (the GroupStore shared by the implementations), bolt.go, mem.go, wal.go and
// wal_group.go (the durable store), fault.go (its disk faults: ErrDiskFault, Health, the
// self-repair), walrec.go (the log record of a planned batch),
// layer.go (the in-memory layer over bbolt between flushes), snapshot.go, tickets.go,
// view.go.
//
// Locks of the durable store, in order: walStore.flushMu, walGroup.wmu, walGroup.lmu,
// walStore.mu. Callers hold their own locks above these; the store never calls back.
package store
