package wal

import "time"

// Gathering records for a write. Every durable write costs the node about the same
// whatever it carries: a disk round trip for the data, one for the cache flush, and under
// a hypervisor an exit for each. Under load a log writes back to back, and with one
// scheduler slot, which the write holds (fdatasync's comment), nothing reads the network
// while it lasts: the next write would carry only what the goroutines already runnable
// queue. So when other appenders are active, the leader first waits until another record
// is queued, or GatherDelay has passed: the slot is free meanwhile, the runtime polls the
// network, and the records that arrived during the last write ride in this one.
//
// Other appenders count as active when the previous write carried the records of more
// than one appender that waited for it, or records queued while it was in flight. A lone
// writer (one client) writes one record at a time and never waits, so its latency is
// unchanged. The runtime's timers wake an otherwise idle process at millisecond grain, so
// a wait that no record ends lasts up to about a millisecond, not GatherDelay.
//
// Measured with sibyl bench (4 nodes on 2 CPUs, 8-s runs on fresh clusters, interleaved
// with the log that never waits): at 64 clients 13,642 against 12,914 writes/s on average
// over nine pairs (+5.6 %, six pairs in favour; the best 15,342 against 13,218), with
// 3.35-3.39 against 3.74-3.81 KiB to the disk per write; at 16 clients 6,218 against
// 5,961 over four pairs, 6.7 against 8.0 KiB per write; at 1 client p50 0.71 and 0.69
// against 0.64 and 0.80 ms, no write having waited. A fixed 150 µs sleep did as well at
// 64 clients but cost 5-17 % more node CPU per write at 16, where it was mostly a
// millisecond.

// DefaultGatherDelay is Options.GatherDelay's default.
const DefaultGatherDelay = 150 * time.Microsecond

// gather waits until another record is queued or wait has passed. Call with l.mu held;
// it is released meanwhile.
func (l *Log) gather(wait time.Duration) {
	ch := make(chan struct{})
	l.gathered = ch
	l.mu.Unlock()
	t := time.NewTimer(wait)
	select {
	case <-ch:
	case <-t.C:
	}
	t.Stop()
	l.mu.Lock()
	l.gathered = nil
}

// waitedFor counts the records of a write whose appenders waited for it (not lazy).
func waitedFor(lazy []bool) int {
	n := 0
	for _, z := range lazy {
		if !z {
			n++
		}
	}
	return n
}

// gatherDelay is how long the next write waits before taking what is pending. Call with
// l.mu held.
func (l *Log) gatherDelay() time.Duration {
	if !l.contended {
		return 0
	}
	switch d := l.opts.GatherDelay; {
	case d < 0:
		return 0
	case d == 0:
		return DefaultGatherDelay
	default:
		return d
	}
}
