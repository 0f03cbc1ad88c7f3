// Package wal is a node's write-ahead log: one append-only sequence of records shared by
// every group the node holds a copy of, in preallocated segment files, made durable by
// group commit: one direct, synchronous write per batch of records where the filesystem
// takes direct I/O (direct.go), else one buffered write and one fdatasync.
//
// Drive it with Open, which checks every segment, hands each intact record to a replay
// function in order, and starts a fresh segment at the end of the intact tail. Append then
// adds one record and returns once it is durable: callers that append while a write is in
// flight are written together by the next one, with one write and one fdatasync for all of
// them. TruncateBefore drops whole segments once the state they describe is stored
// elsewhere.
//
// Positions (LSNs) count the bytes of framed records from the start of the log; the LSN
// of a record is the position just after it, so "everything up to LSN p" includes the
// record whose LSN is p. A segment's file name is the LSN it starts at. On disk:
//
//	segment: "SIBYLWL2" | u64 start LSN | records... | zeros or an earlier life's bytes
//	record:  u32 length | u32 CRC-32C of (u64 LSN where the record starts | payload) | payload
//
// A record whose length is 0 or whose checksum does not match ends a segment: it is the
// torn tail of a write that never finished, and nothing after it was acknowledged. Keying
// the checksum with the position lets a segment file be reused (recycle.go): what it held
// before does not check at its new positions. Segments with the header "SIBYLWAL" predate
// keyed checksums and are read with the payload's checksum alone.
//
// Spent segments are recycled, so that direct writes land on blocks written before.
//
// A segment is read only up to where the next one starts (bytes past it are a failed write
// that Repair made again in the next segment); one that ends before it is corruption and
// Open fails.
//
// Disk faults: a failed write, fsync or segment creation fails the log (Fault); Appends
// fail and drop their records until Repair, which starts a new segment at the last
// durable position and writes the lazy records kept since (docs/storage.md). Faults
// injects such failures at chosen points for tests.
package wal
