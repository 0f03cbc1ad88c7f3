// Package resync streams a snapshot of a group's committed state from its main to a copy
// that cannot catch up from the log: a new sibling whose position is below the main's
// compaction horizon, a copy that was demoted to stale, or one whose divergence point the
// epoch history cannot locate.
//
// It is imported as resync so that call sites do not clash with the standard library's
// sync package.
//
// The transfer is driven by two loops over one ordered, framed connection (Conn):
//
//	main (Send)                           copy (Receive)
//	Offer{header}                  ->     Accept(header); Sink.Begin(header)
//	                               <-     Resume{after}     (nil: from the start)
//	Chunk{n, records}  (window W)  ->     Sink.Write(records) (durable)
//	                               <-     ChunkAck{n}
//	...
//	Done{records, bytes}           ->     Sink.Finish(header)
//	                               <-     DoneAck
//
// Records are (bucket, key, value) triples sent in (bucket, key) order, so a position in
// the stream is the last (bucket, key) the copy holds durably. A broken connection loses
// nothing: when the main offers the same snapshot (same ID) again, the copy answers with
// its durable position and the stream continues after it. A different snapshot restarts
// the copy from nothing.
//
// Chunks are capped in bytes and records, at most Window chunks are unacknowledged, and
// an optional byte rate holds the transfer below the disk and network bandwidth that
// foreground writes need. Either side gives up when the other is silent for StallTimeout
// (ErrStalled) and says why in an Abort frame (AbortError); no side ever waits forever.
//
// The package knows nothing of buckets' meaning or of bbolt: node/ implements Source over
// a bbolt read transaction and Sink over the copy's buckets. Pipe gives an in-memory Conn.
package resync
