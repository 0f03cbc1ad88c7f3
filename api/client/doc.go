// Package client is the Go client of Sibyl's WebSocket API (docs/protocol.md §2).
//
//	c, err := client.Dial(ctx, client.Options{Addrs: []string{"127.0.0.1:7701", "127.0.0.1:7702"}})
//	rep, err := c.Create(ctx, "doc", json.RawMessage(`{"a":1}`), client.WithKey("k-1"))
//	got, err := c.Get(ctx, rep.Resource.ID, command.SiblingRead)
//	c.Close()
//
// Options.TLS (a *tls.Config whose RootCAs hold the cluster's CA) dials nodes over wss;
// routed connections use the same settings.
//
// A Client keeps a default connection to one of its addresses and pipelines requests
// over it: ids are a counter per connection, a writer lock serializes frames, and one
// reader goroutine hands each reply to the request waiting for it. Server errors come
// back as *command.Error with the server's code. When the default connection drops, the
// requests in flight fail with unavailable (their outcome is unknown) and the next call
// dials again, trying the addresses in order starting after the one that failed.
//
// Routing. Any node forwards a request to the main of its resource's group, at the cost
// of a hop; a routing client (the default; Options.NoRouting turns it off) sends it
// straight to the main instead. The group of a request is the server ID prefix of its
// rid (get, update, patch, delete, ticket ops), or the server a create or list names;
// sibling reads, status, admin ops, subscriptions, creates without a server and lists
// across groups always take the default connection. The client learns which node is main
// of which group, and each node's address, from the status op on the default connection:
// at its first request of a group, then every Options.RouteRefresh (5 s), and sooner
// (at most every 250 ms) when a request fails with a retryable code (no_main, timeout,
// unavailable, quorum_unavailable), a reply carries a later epoch than the status showed,
// or a main's connection drops. It opens one pipelined connection per main in use, in
// the background the first time a request wants it, using the scheme and path of the
// first address; a node that is main of nothing any more has its connection closed once
// no request waits on it. A request never waits for any of this: while the client has no
// status, the group has no main (or its node is down or shows no dialable address), the
// main's connection is not open yet, has dropped (it is dialled again after 1 s), or a
// routed request of the group just failed with a retryable code, requests go over the
// default connection and its node forwards them. A request whose main's connection ended
// before it was written is sent over the default connection instead; one in flight
// when it drops fails with unavailable, as on the default connection. When the main is
// the default connection's node, the default connection carries its requests. While a
// route changes, concurrent calls of one group may take different connections: the
// protocol orders pipelined writes per connection, and calls that do not wait for each
// other have no order anyway.
//
// Do sends once. DoRetry, which the typed helpers use, repeats reads and keyed writes
// while the error is retryable and ctx lasts, with capped exponential backoff and jitter
// from a per-client seeded generator; a write without a key is never repeated, because
// it may already have taken effect. Bound retrying calls with a ctx deadline.
//
// Create always names a server (placement), so that a keyed create retried through
// another node reaches the group that knows its key. The client remembers the highest
// seq it has seen per group and sends it as minSeq on sibling reads, so that reads never
// go backwards across reconnects.
//
// Subscribe returns a Subscription whose Events channel carries one filter's events in
// order. The connection's read loop hands events to the subscription without blocking
// (it also carries every reply); the subscription buffers up to 4096 and, when its
// consumer falls further behind, drops its server-side subscription and opens it again
// from the last event it holds. It resumes the same way, from the last event's token,
// after lagged and after its connection drops (on the next address), so the consumer
// sees no gap and no repeat.
package client
