package location

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/rs/zerolog"
	"go.etcd.io/bbolt"
)

// consensus is everything the controller needs from its replication layer. The real one is
// raftNode (hashicorp/raft); keeping it this narrow lets a deterministic stand-in drive the
// controller logic in simulations.
type consensus interface {
	// propose commits cmd to the log and applies it; it returns the command's index, the
	// FSM's refusal (a *refusal), or errNotLeader / another replication error.
	propose(cmd dirCommand) (uint64, error)
	leaderID() string
	isLeader() bool
	verifyLeader() error
	// barrier waits until everything committed before it is applied to the local FSM.
	barrier() error
	// leaderEvents reports this controller gaining (true) or losing (false) leadership.
	leaderEvents() <-chan bool
	// leaderChanges reports the ID of every newly observed leader ("" when lost).
	leaderChanges() <-chan string
	members() ([]raftMember, error)
	stats() raftStats
	shutdown() error
}

type raftMember struct {
	ID   string
	Addr string
}

type raftStats struct {
	State       string // "Leader", "Follower", "Candidate", "Shutdown"
	Term        uint64
	LastIndex   uint64
	CommitIndex uint64
	Applied     uint64
}

// errNotLeader means a command or leader-only request reached a controller that is not (or
// no longer) the leader.
var errNotLeader = errors.New("this controller is not the raft leader")

const (
	applyTimeout   = 2 * time.Second
	barrierTimeout = 5 * time.Second
	// A snapshot is taken once this many entries follow the last one, and this many stay in
	// the log after it: a controller further behind than that catches up from a snapshot.
	snapshotThreshold = 1024
	trailingLogs      = 1024
)

// raftNode is consensus over hashicorp/raft with raft-boltdb as log and stable store.
type raftNode struct {
	raft         *raft.Raft
	store        *raftboltdb.BoltStore
	transport    raft.Transport
	observer     *raft.Observer
	changes      chan string
	stopObserver chan struct{}
	bootstrapped bool // this start bootstrapped a new cluster

	// raft answers a VerifyLeader request only while it runs: one still queued when it
	// shuts down is never answered, and its caller would wait for ever. shutdown therefore
	// waits for the verifications under way, and none starts once it began.
	verifyMu  sync.Mutex
	closing   bool
	verifying sync.WaitGroup
}

// raftSetup is what openRaft needs besides the FSM.
type raftSetup struct {
	ID       string
	RaftAddr string            // advertised address of this controller's transport
	Listener net.Listener      // accepts the transport's connections on RaftAddr
	Peers    map[string]string // id -> raft address, self included; used only to bootstrap
	DataDir  string
	Timeout  time.Duration // heartbeat and election timeout; the lease is half
	Logger   hclog.Logger
	// Transport, when set, carries raft's RPCs instead of a TCP transport on Listener
	// (RaftAddr and Listener are then unused); tests pass raft's in-memory transport.
	Transport raft.Transport
	// Dial, when set, opens the TCP transport's outgoing connections (nil: TCP).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Secret, when set, is the cluster secret every connection of the TCP transport must
	// open with (raft_auth.go); Log receives the refusals.
	Secret string
	Log    zerolog.Logger
	// ServerTLS, when set, makes the TCP transport accept only TLS connections, and
	// ClientTLS makes it dial TLS, verified with it (raft_tls.go).
	ServerTLS, ClientTLS *tls.Config
}

// openRaft opens (or creates) the raft state in DataDir and starts raft. A data directory
// without raft state gets the cluster bootstrapped from Peers; one with state never does,
// so a restarted controller rejoins with the configuration it had.
func openRaft(s raftSetup, f *fsm) (*raftNode, error) {
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create raft data directory %s: %w", s.DataDir, err)
	}
	dbPath := filepath.Join(s.DataDir, "raft.db")
	// The timeout turns a second controller opening the same directory into an error
	// instead of a silent hang on bolt's file lock.
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: &bbolt.Options{Timeout: 2 * time.Second}})
	if err != nil {
		return nil, fmt.Errorf("open raft store %s: %w", dbPath, err)
	}
	fail := func(err error) (*raftNode, error) {
		_ = store.Close()
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(s.DataDir, 2, s.Logger)
	if err != nil {
		return fail(fmt.Errorf("open raft snapshot store in %s: %w", s.DataDir, err))
	}
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fail(fmt.Errorf("inspect raft state in %s: %w", s.DataDir, err))
	}

	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(s.ID)
	conf.Logger = s.Logger
	// Controllers of one location sit on a LAN or loopback: fail over in about a second.
	conf.HeartbeatTimeout = s.Timeout
	conf.ElectionTimeout = s.Timeout
	conf.LeaderLeaseTimeout = s.Timeout / 2
	conf.CommitTimeout = 50 * time.Millisecond
	conf.SnapshotThreshold = snapshotThreshold
	conf.TrailingLogs = trailingLogs
	conf.NoLegacyTelemetry = true
	if err := raft.ValidateConfig(conf); err != nil {
		return fail(fmt.Errorf("raft config of %s: %w", s.ID, err))
	}

	trans := s.Transport
	if trans == nil {
		layer := &streamLayer{Listener: s.Listener, advertise: tcpAddr(s.RaftAddr, s.Listener.Addr()), dial: s.Dial, tls: s.ClientTLS}
		if s.Secret != "" || s.ServerTLS != nil {
			layer.Listener = newGuardedListener(s.Listener, s.ServerTLS, s.Secret, s.Log)
		}
		if s.Secret != "" {
			layer.preamble = raftPreamble(s.Secret)
		}
		trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: layer, MaxPool: 3, Timeout: 2 * time.Second, Logger: s.Logger,
		})
	}
	r, err := raft.NewRaft(conf, f, store, store, snaps, trans)
	if err != nil {
		_ = closeTransport(trans)
		return fail(fmt.Errorf("start raft for %s: %w", s.ID, err))
	}
	n := &raftNode{raft: r, store: store, transport: trans, changes: make(chan string, 16), stopObserver: make(chan struct{})}
	if !has {
		var servers []raft.Server
		for id, addr := range s.Peers {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(addr)})
		}
		slices.SortFunc(servers, func(a, b raft.Server) int {
			if a.ID < b.ID {
				return -1
			}
			if a.ID > b.ID {
				return 1
			}
			return 0
		})
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			_ = n.shutdown()
			return nil, fmt.Errorf("bootstrap raft cluster %v: %w", s.Peers, err)
		}
		n.bootstrapped = true
	}
	obs := make(chan raft.Observation, 16)
	n.observer = raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(n.observer)
	go n.forwardLeaderChanges(obs)
	return n, nil
}

// forwardLeaderChanges turns raft observations into leader IDs until shutdown.
func (n *raftNode) forwardLeaderChanges(obs <-chan raft.Observation) {
	for {
		select {
		case <-n.stopObserver:
			return
		case o := <-obs:
			if lo, ok := o.Data.(raft.LeaderObservation); ok {
				select {
				case n.changes <- string(lo.LeaderID):
				default: // a slow reader only loses log lines, never correctness
				}
			}
		}
	}
}

func (n *raftNode) propose(cmd dirCommand) (uint64, error) {
	data, err := encodeCommand(cmd)
	if err != nil {
		return 0, err
	}
	fut := n.raft.Apply(data, applyTimeout)
	if err := fut.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, fmt.Errorf("apply %s: %w (%v)", cmd.kind(), errNotLeader, err)
		}
		return 0, fmt.Errorf("apply %s through raft: %w", cmd.kind(), err)
	}
	res, ok := fut.Response().(applyResult)
	if !ok {
		return 0, fmt.Errorf("apply %s: unexpected FSM response %T", cmd.kind(), fut.Response())
	}
	return res.Index, res.Err
}

func (n *raftNode) leaderID() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

func (n *raftNode) isLeader() bool { return n.raft.State() == raft.Leader }

func (n *raftNode) verifyLeader() error {
	n.verifyMu.Lock()
	if n.closing {
		n.verifyMu.Unlock()
		return fmt.Errorf("verify leadership: %w (%v)", errNotLeader, raft.ErrRaftShutdown)
	}
	n.verifying.Add(1)
	n.verifyMu.Unlock()
	defer n.verifying.Done()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("verify leadership: %w (%v)", errNotLeader, err)
	}
	return nil
}

func (n *raftNode) barrier() error {
	if err := n.raft.Barrier(barrierTimeout).Error(); err != nil {
		return fmt.Errorf("raft barrier: %w", err)
	}
	return nil
}

func (n *raftNode) leaderEvents() <-chan bool    { return n.raft.LeaderCh() }
func (n *raftNode) leaderChanges() <-chan string { return n.changes }

func (n *raftNode) members() ([]raftMember, error) {
	fut := n.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	var out []raftMember
	for _, s := range fut.Configuration().Servers {
		out = append(out, raftMember{ID: string(s.ID), Addr: string(s.Address)})
	}
	return out, nil
}

func (n *raftNode) stats() raftStats {
	return raftStats{
		State: n.raft.State().String(), Term: n.raft.CurrentTerm(), LastIndex: n.raft.LastIndex(),
		CommitIndex: n.raft.CommitIndex(), Applied: n.raft.AppliedIndex(),
	}
}

// shutdown stops raft, then the transport and the store; it is safe to call once.
func (n *raftNode) shutdown() error {
	n.verifyMu.Lock()
	n.closing = true
	n.verifyMu.Unlock()
	n.verifying.Wait()
	var errs []error
	if n.observer != nil {
		n.raft.DeregisterObserver(n.observer)
		close(n.stopObserver)
	}
	if err := n.raft.Shutdown().Error(); err != nil {
		errs = append(errs, fmt.Errorf("shut down raft: %w", err))
	}
	if err := closeTransport(n.transport); err != nil {
		errs = append(errs, fmt.Errorf("close raft transport: %w", err))
	}
	if err := n.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close raft store: %w", err))
	}
	return errors.Join(errs...)
}

// closeTransport closes t if it can be closed, as both transports Sibyl uses can.
func closeTransport(t raft.Transport) error {
	if c, ok := t.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// streamLayer is raft's TCP stream layer over a listener the caller opened, so tests (and
// cmd/sibyl) can bind ephemeral ports before the controller starts.
// With a cluster secret or TLS its listener is a guardedListener; every connection it dials
// is TLS with tls set, and opens with preamble with a secret.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	dial      func(ctx context.Context, network, addr string) (net.Conn, error) // nil: TCP
	tls       *tls.Config                                                       // nil: no TLS
	preamble  []byte                                                            // nil: no secret
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	conn, err := dialTimeout(s.dial, string(address), timeout)
	if err == nil && s.tls != nil {
		conn, err = clientHandshake(conn, s.tls, string(address), timeout)
	}
	if err != nil || s.preamble == nil {
		return conn, err
	}
	if err := writePreamble(conn, s.preamble, timeout); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// dialTimeout connects to addr through dial, or over TCP when dial is nil.
func dialTimeout(dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string, timeout time.Duration) (net.Conn, error) {
	if dial == nil {
		return net.DialTimeout("tcp", addr, timeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return dial(ctx, "tcp", addr)
}

// tcpAddr is the address raft advertises: the configured one when it names a concrete
// host and port, else the listener's.
func tcpAddr(configured string, bound net.Addr) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", configured)
	if err != nil || a.Port == 0 || a.IP == nil || a.IP.IsUnspecified() {
		return bound
	}
	return a
}
