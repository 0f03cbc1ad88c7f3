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
//     replaced without waiting for heartbeats to time out.
//   - seal.go: a promotion's seal: the copy fsyncs the new epoch before it answers with
//     its last entry, commit point and copy ID, and refuses the old main from then on.
//   - handover.go: a planned promotion: the main freezes (executes nothing) until the
//     target holds everything, committed; writes that waited go to the new main.
//   - admin_progress.go: registerSibling's progress events on the caller's connection.
//   - store*.go: the Store interface, with the bbolt store and an in-memory one that pass
//     the same contract tests.
//   - tickets.go: the main's ticket expiry. Ticket state is replicated like resources
//     (the store's tickets bucket, the overlay's pending states); only the main turns a
//     ticket's ttl into a deadline, on its monotonic clock, and writes the expiry as an
//     entry. A new main re-arms inherited tickets from when it took the role.
//   - events_*.go: subscriptions. publish hands every applied entry to its group's hub,
//     which fans events out to bounded per-subscription buffers the connection pulls from;
//     groups this node holds no copy of come through one feed per group from a holder;
//     resume tokens, catch-up from the log, resync and lagged. docs/events.md.
//
// docs/ has the sequence diagrams of a write, a promotion and a sibling registration.
package node
