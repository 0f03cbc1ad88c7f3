package api

import (
	"context"

	"github.com/sibylhq/sibyl/command"
)

// Backend is what the API server drives: a node. The server owns framing, auth, limits and
// error encoding; the backend owns routing and execution.
type Backend interface {
	// NewSession is called once per client connection (or per REST request).
	NewSession() Session
	// Status returns the object of GET /v1/status.
	Status(ctx context.Context) (*command.Status, error)
	// Healthy reports whether the node serves (GET /healthz answers 200 then).
	Healthy() bool
}

// Session carries one connection's state: its sibling-read floors and its ordered
// forwarding streams.
type Session interface {
	// Start begins req. Calls are made in the order requests arrived, and Start fixes that
	// order for writes to one group; it must not block for long. The returned Pending is
	// waited on concurrently with later Starts. (The type is spelled out rather than named
	// so that a backend satisfies it without importing this package.)
	Start(ctx context.Context, req *command.Request, admin bool) func() (*command.Reply, error)
	Close()
}
