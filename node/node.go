package node

import (
	"context"
	"net/http"
	"time"

	"github.com/rs/zerolog"
	"github.com/sibylhq/sibyl/command"
)

// Config configures one node process.
type Config struct {
	ID          command.ServerID
	HTTPAddr    string   // host:port this node listens on and advertises
	DataDir     string   // holds sibyl.db (bbolt) and the incarnation counter
	Controllers []string // HTTP host:port (or http:// URL) of the location's controllers
	Location    string
	// WriteTimeout bounds a write from arrival to answer (default 5 s).
	WriteTimeout time.Duration
	// DownAfter is the failure-detection period; heartbeats go every DownAfter/4 (default 1 s).
	DownAfter time.Duration
	Logger    zerolog.Logger
}

// Node is one running node.
type Node struct{}

// New opens the node's store and starts its loops (join, heartbeats, directory watch,
// replication). The node serves a group only once the controller confirmed its role.
func New(cfg Config) (*Node, error) { panic("not implemented") }

// Handler serves the node-to-node endpoints under /v1/internal/.
func (n *Node) Handler() http.Handler { panic("not implemented") }

// NewSession starts a client connection's session (see api.Session).
func (n *Node) NewSession() *Session { panic("not implemented") }

// Status returns the cluster status (from the controller leader).
func (n *Node) Status(ctx context.Context) (*command.Status, error) { panic("not implemented") }

// Healthy reports whether the node has joined and serves.
func (n *Node) Healthy() bool { panic("not implemented") }

// Close stops the node and closes its store.
func (n *Node) Close() error { panic("not implemented") }

// Session is one client connection's state.
type Session struct{}

// Start begins req (see api.Session).
func (s *Session) Start(ctx context.Context, req *command.Request, admin bool) func() (*command.Reply, error) {
	panic("not implemented")
}

// Close ends the session.
func (s *Session) Close() {}
