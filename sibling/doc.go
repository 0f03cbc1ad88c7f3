// Package sibling replicates a group's command log from its main to its siblings.
//
// The package holds two pure state machines and no I/O:
//
//   - Main, run by the group's main: it assigns seqs, tracks what each sibling holds
//     (Progress), builds the Append messages to send, counts acks into a commit point under
//     the group's quorum (a majority of every voting set in use, so a membership change
//     uses a joint quorum), and answers whether a read round is confirmed.
//   - Follower, run by each sibling: it checks an Append against its epoch and log and
//     returns a Step saying what to truncate, append and fsync, the new commit point, and
//     the Ack to send once that is durable.
//
// The node drives them: it persists what a Step or the main's assigned entries ask for, moves
// messages over its transport and calls back with acks and fsync completions. Because the
// cores never touch sockets, disks or clocks, tests step them under a seeded, lossy,
// reordering in-memory network (see sim_test.go).
//
// The rules implemented are those of docs/replication.md cases 2 and 3: entries keep their epoch,
// an append carries (prevEpoch, prevSeq), a sibling refuses lower epochs and appends it cannot
// attach, truncates only an uncommitted divergent suffix, and sets its commit point to
// min(commitSeq received in this epoch, last seq verified against this main); a main counts
// only acks of its own epoch and commits an older-epoch entry only through a later entry of
// its own epoch.
package sibling
