package wal

import "time"

// Gathering records for a write. Every durable write costs the node the same whatever
// it carries: a disk round trip for the data, one for the cache flush, and under a
// hypervisor an exit for each; on this machine about 45 µs of CPU, a third of what a
// replicated write costs in all. Under load a log writes back to back, and each write
// carries what queued during the one before. Waiting GatherDelay before taking what is
// pending lets more records ride in the same write, and the node's one scheduler slot
// serves other work while it waits (the write itself holds it: fdatasync's comment).
//
// The wait is taken only when other appenders are active: the previous write carried the
// records of more than one appender that waited for it, or records queued while it was in
// flight. (With one scheduler slot, held by the write, records rarely queue during it:
// they queue when the gather lets the goroutines that read them run.) A lone writer (one
// client) writes one record at a time and never waits, so its latency is unchanged.
//
// Measured with sibyl bench (4 nodes on 2 CPUs, 64 clients, 8-s runs, interleaved
// triples of no wait, 150 µs and 300 µs): 12,852 / 14,134 / 12,538, 12,047 / 15,210 /
// 15,566 and 14,467 / 15,098 / 14,782 writes/s; the machine's idle time fell from 8-14 %
// to 5-6 % and the bytes written to the disk per write by a fifth (3.80 against 3.0 KiB).

// DefaultGatherDelay is Options.GatherDelay's default.
const DefaultGatherDelay = 150 * time.Microsecond

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
