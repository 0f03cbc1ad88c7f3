package api

import (
	"context"
	"encoding/json"

	"github.com/sibylhq/sibyl/command"
)

// Backend is what the API server drives: a node. The server owns framing, auth, limits and
// error encoding; the backend owns routing and execution.
type Backend interface {
	// NewSession is called once per client connection, with the connection's Outbox, or
	// per REST request with a nil Outbox (a REST call cannot subscribe).
	NewSession(out Outbox) Session
	// Status returns the object of GET /v1/status.
	Status(ctx context.Context) (*command.Status, error)
	// Healthy reports whether the node serves (GET /healthz answers 200 then).
	Healthy() bool
}

// Outbox is a WebSocket connection as a session pushing events sees it. Events are pulled,
// not pushed: the backend keeps each subscription's bounded buffer (and decides when a
// slow one is lagged), and the connection's single writer takes frames from it at the
// pace the client reads, so no goroutine waits per subscription.
type Outbox interface {
	// Wake says the session has event frames ready; the connection's writer then calls
	// Session.Events. It never blocks, so a backend may call it with its locks held.
	Wake()
}

// Session carries one connection's state: its sibling-read floors, its ordered
// forwarding streams and its subscriptions.
type Session interface {
	// Start begins req. Calls are made in the order requests arrived, and Start fixes that
	// order for writes to one group; it must not block for long. The returned Pending is
	// waited on concurrently with later Starts. (The type is spelled out rather than named
	// so that a backend satisfies it without importing this package.) For subscribe, the
	// server sets req.Sub to the request's id: it names the subscription's events.
	Start(ctx context.Context, req *command.Request, admin bool) func() (*command.Reply, error)
	// Events appends up to max event frames that are ready (complete JSON objects with
	// "sub") to dst and returns it. The connection's writer calls it after a Wake and
	// sends the frames in that order.
	Events(dst []json.RawMessage, max int) []json.RawMessage
	// Subscribed is called by the writer once the successful reply to subscribe request
	// id has been written. The session holds that subscription's events until then, so
	// that no event reaches the client before the reply that names its subscription.
	Subscribed(id string)
	Close()
}

// AsyncSession is a Session that can answer a request without a goroutine waiting for it.
// The server uses StartAsync instead of Start when a session has it.
type AsyncSession interface {
	// StartAsync begins req as Start does and calls done exactly once with the outcome,
	// from any goroutine, possibly before it returns. done does not block.
	StartAsync(ctx context.Context, req *command.Request, admin bool, done func(*command.Reply, error))
}
