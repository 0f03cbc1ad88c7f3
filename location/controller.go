package location

import (
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// Config configures one controller process.
type Config struct {
	ID       string            // e.g. "c1"
	HTTPAddr string            // host:port of the HTTP listener (status, node protocol)
	RaftAddr string            // host:port of the raft transport
	DataDir  string            // raft-boltdb files and snapshots
	Peers    map[string]string // id -> raft address of every controller of this location, self included
	Location string            // location name, "default" if empty
	// DownAfter is how long a node may be silent before it is marked down (default 1 s).
	DownAfter time.Duration
	Logger    zerolog.Logger
}

// Controller is one location controller process.
type Controller struct{}

// New starts raft (bootstrapping the cluster from Peers when the data directory is new)
// and the controller's background loops.
func New(cfg Config) (*Controller, error) { panic("not implemented") }

// Handler serves GET /healthz, /metrics, /v1/status, / and the node protocol of
// command/directory.go.
func (c *Controller) Handler() http.Handler { panic("not implemented") }

// Close stops the controller.
func (c *Controller) Close() error { panic("not implemented") }
