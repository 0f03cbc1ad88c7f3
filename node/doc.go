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
//   - group.go: a copy of a group is a driver around its core (package core), a pure state
//     machine that decides roles, epochs, commit points and seals. Every input (a
//     directory, a client's write, an ack, appends from the main, a finished write, a
//     seal) is one call to the core under the group's lock, then drain carries out what
//     the core decided (core.Ready): start or end a role, log and index new entries,
//     answer committed waiters, wake sibling links. The location simulation drives the
//     same core.
//   - group_main.go: the main role. submit executes the command against the pending
//     overlay (overlay.go) into an effect, which the core gives the next seq;
//     persistLoop writes queued entries and applies committed ones, many per fsync; the
//     replication core (sibling.Main, inside core) decides what each sibling link
//     (peer.go) sends and when an entry is committed; waiters are answered on commit.
//   - group_sibling.go: the sibling role. Frames from the main are stepped through the
//     core and made durable in one write per batch before they are acked.
//   - ctrl.go: join, heartbeats with each copy's position, and a long poll of the
//     directory; applyDirectory sets every group's role. locations.go: one such link per
//     location (a guest in every location but its own); each group's role comes from its
//     home location's directory alone, and the directories are merged for routing. A stream from the main that
//     breaks is reported to the controller at once (peer.go), so a crashed main is
//     replaced without waiting for heartbeats to time out. Every call to a controller
//     carries the cluster secret, and an admin call its caller's token.
//   - disk.go: a degraded node (its store's disk fails): every role stops and none is
//     taken, heartbeats to every location carry the fault, and once the disk works the
//     node joins as a new life (fresh epochs for the groups it is main of) before serving
//     again: its own location first, then each other one, whose groups wait for that
//     location's answer.
//   - auth.go: the roles and token hashes of the latest directory, which the API server
//     resolves its callers' tokens with (Tokens). A request's Scope (the types its
//     caller's role grants for the op's kind) travels with it when forwarded; the main's
//     Execute refuses a write to a resource of another type, and a subscription skips
//     events of types outside its scope (events_hub.go, events_catchup.go).
//   - node.go: Handler, the node-to-node and controller-to-node endpoints under
//     /v1/internal/, each refusing a call without the cluster secret (Config.ClusterSecret,
//     compared in constant time) with unauthorized. With Config.ClientTLS every call the
//     node makes to another node or a controller is https or wss, verified with it
//     (peerURL, wsDialer, HTTPTransport); the caller serves the node on a TLS listener.
//   - seal.go: a promotion's seal: the copy fsyncs the new epoch before it answers with
//     its last entry, commit point and copy ID, and refuses the old main from then on.
//   - handover.go: a planned promotion: the main freezes (executes nothing) until the
//     target holds everything, committed; writes that waited go to the new main.
//   - admin_progress.go: registerSibling's progress events on the caller's connection.
//   - package store: the copies on disk, behind the Store and GroupStore interfaces (the
//     durable store with its write-ahead log, bbolt alone, and memory; docs/storage.md).
//     package core: each copy's decisions as a pure state machine.
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
// vacuum loop, the expiry loop (write timeouts of queued writes) and one goroutine per
// sibling link plus its ack reader; per replication
// connection accepted, a frame reader and the loop that steps and acks. A client's write
// to a group this node is main of has no goroutine of its own: Session.StartAsync queues
// it as a waiter that the commit (or a step-down, or the expiry loop) answers
// through the connection's writer. Other requests (reads, forwarded writes, admin ops)
// are waited for on one goroutine each.
//
// Lock order: Node.applyMu, then a group's mu, then Node.mu (a group reads the directory
// under its own lock; nothing takes a group's mu while holding Node.mu). The durable
// store's locks (package store) come after a group's mu and never call back into a group.
//
// docs/ has the sequence diagrams of a write, a promotion and a sibling registration, and
// docs/storage.md the store's files, flushes and recovery.
package node
