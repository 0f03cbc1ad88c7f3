// Package core is one node's copy of one group as a pure state machine: the role the copy
// plays (main, sibling or none), the epoch it serves in, the commit point it acts on, and
// the replication core of its role (sibling.Main or sibling.Follower).
//
// A Group does no I/O, reads no clock and starts no goroutine. Each input is a method call:
//
//   - Follow: a directory record arrived; the copy takes the role it names (docs/promotion.md).
//   - Propose: the main appends an effect as the next entry of its log.
//   - Persisted: the main's own log is durable up to a seq (with the epoch it started).
//   - HandleAcks: siblings answered the main's appends.
//   - Step, then Written: appends from the main reach a sibling; the sibling makes each
//     returned Write durable, reports it written, then sends the returned acks.
//   - CheckSeal, then Seal: a controller seals the copy for a promotion.
//
// What an input decided accumulates in a Ready (new entries to log and index, role changes
// with the durable state they started from, a moved commit point, siblings to wake) that
// the driver takes with Ready and carries out: node/ drives it with a store, sockets and
// waiting clients; the location simulation drives the same code with an in-memory log.
//
// A Group is not safe for concurrent use; its driver serialises inputs.
package core
