// Package node is the Sibyl node process: its bbolt store, the groups it holds a copy of
// and the role it plays for each (main or sibling), routing of client requests to mains,
// and restart recovery.
//
// Drive it with New (which opens the store, joins the location controller leader and
// follows its directory), mount Handler on the node's listener under /v1/internal/ for
// node-to-node traffic, and hand NewEventSession (with the connection's Outbox, so that it
// can subscribe) to the API server for each client connection.
//
// The pieces, in the order a write meets them:
//
//   - session.go: a client connection. It validates, picks the request's group, and either
//     calls the local group (this node is its main) or forwards to the main (forward.go),
//     one ordered stream per node pair.
//   - group_main.go: the main role. submit executes the command against the pending
//     overlay (overlay.go) into an effect, assigns its seq and queues the entry;
//     persistLoop writes queued entries and applies committed ones, many per fsync; the
//     replication core (sibling.Main) decides what each sibling link (peer.go) sends and
//     when an entry is committed; waiters are answered on commit.
//   - group_sibling.go: the sibling role. Frames from the main are stepped through
//     sibling.Follower and made durable in one write per batch before they are acked.
//   - ctrl.go: join, heartbeats with each copy's position, and a long poll of the
//     directory; applyDirectory sets every group's role. A stream from the main that
//     breaks is reported to the controller at once (peer.go), so a crashed main is
//     replaced without waiting for heartbeats to time out. Every call to a controller
//     carries the cluster secret, and an admin call its caller's token.
//   - node.go: Handler, the node-to-node and controller-to-node endpoints under
//     /v1/internal/, each refusing a call without the cluster secret (Config.ClusterSecret,
//     compared in constant time) with unauthorized.
//   - seal.go: a promotion's seal: the copy fsyncs the new epoch before it answers with
//     its last entry, commit point and copy ID, and refuses the old main from then on.
//   - handover.go: a planned promotion: the main freezes (executes nothing) until the
//     target holds everything, committed; writes that waited go to the new main.
//   - admin_progress.go: registerSibling's progress events on the caller's connection.
//   - store*.go: the Store interface and its implementations, which pass the same contract
//     tests: the durable store (store_wal*.go, the node's: a write-ahead log, package wal,
//     shared by every group with group commit, in front of the bbolt state store, which
//     gets every change in large flushes; docs/storage.md), the bbolt store alone, and an
//     in-memory one for fast tests.
//   - tickets.go: the main's ticket expiry. Ticket state is replicated like resources
//     (the store's tickets bucket, the overlay's pending states); only the main turns a
//     ticket's ttl into a deadline, on its monotonic clock, and writes the expiry as an
//     entry. A new main re-arms inherited tickets from when it took the role.
//   - events_*.go: subscriptions. publish hands every applied entry to its group's hub,
//     which fans events out to bounded per-subscription buffers the connection pulls from;
//     groups this node holds no copy of come through one feed per group from a holder;
//     resume tokens, catch-up from the log, resync and lagged. docs/events.md.
//
// Goroutines: per node, the watch long poll and the heartbeat loop (both apply
// directories), the store's flusher; per group this node is main of, persistLoop, the
// vacuum loop and one goroutine per sibling link plus its ack reader; per replication
// connection accepted, a frame reader and the loop that steps and acks; per client
// request, the API server's waiter.
//
// Lock order: Node.applyMu, then a group's mu, then Node.mu (a group reads the directory
// under its own lock; nothing takes a group's mu while holding Node.mu). The durable
// store's locks (walStore.flushMu, walGroup.wmu, walGroup.lmu, walStore.mu, in that order)
// come after a group's mu and never call back into a group.
//
// docs/ has the sequence diagrams of a write, a promotion and a sibling registration, and
// docs/storage.md the store's files, flushes and recovery.
package node
