// Package client is the Go client of Sibyl's WebSocket API (PROTOCOL.md §2).
//
//	c, err := client.Dial(ctx, client.Options{Addrs: []string{"127.0.0.1:7701", "127.0.0.1:7702"}})
//	rep, err := c.Create(ctx, "doc", json.RawMessage(`{"a":1}`), client.WithKey("k-1"))
//	got, err := c.Get(ctx, rep.Resource.ID, command.SiblingRead)
//	c.Close()
//
// A Client keeps one connection and pipelines every request over it: ids are a counter
// per connection, a writer lock serializes frames, and one reader goroutine hands each
// reply to the request waiting for it. Server errors come back as *command.Error with
// the server's code. When the connection drops, the requests in flight fail with
// unavailable (their outcome is unknown) and the next call dials again, trying the
// addresses in order starting after the one that failed.
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
