package memnet

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// pipeCap is how many bytes one direction of a connection buffers before writes wait, as
// a socket's send and receive buffers do.
const pipeCap = 4 << 20

// Network is one in-memory network. Its methods are safe for concurrent use.
type Network struct {
	// Latency, when set, gives the one-way delay of a write from host from to host to.
	// It is called with the network's lock held.
	Latency func(from, to string) time.Duration

	mu        sync.Mutex
	changed   signal // partitions, crashes, listeners: wakes every waiter
	listeners map[string]*listener
	conns     map[*conn]struct{}
	blocked   map[[2]string]bool // {from, to}: bytes from from do not reach to
	hosts     map[string]bool
	down      map[string]bool // crashed hosts, until they listen again
	nextPort  int
}

// New returns an empty network without latency or partitions.
func New() *Network {
	return &Network{listeners: map[string]*listener{}, conns: map[*conn]struct{}{},
		blocked: map[[2]string]bool{}, hosts: map[string]bool{}, down: map[string]bool{}, nextPort: 40000}
}

// signal wakes the goroutines waiting on it when it fires. Use it with the network's lock
// held; its channel is made only when someone waits.
type signal struct{ ch chan struct{} }

func (s *signal) channel() <-chan struct{} {
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) fire() {
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// broadcastLocked wakes every goroutine waiting on the network.
func (n *Network) broadcastLocked() { n.changed.fire() }

// wait releases the lock until the network changes, sig (when not nil) fires, until (when
// not zero) passes or ctx ends, and takes it again. It reports ctx's error, if that is
// what ended the wait.
func (n *Network) wait(ctx context.Context, until time.Time, sig *signal) error {
	ch := n.changed.channel()
	var local <-chan struct{}
	if sig != nil {
		local = sig.channel()
	}
	n.mu.Unlock()
	defer n.mu.Lock()
	var timer <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		timer = t.C
	}
	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	select {
	case <-ch:
	case <-local:
	case <-timer:
	case <-done:
		return ctx.Err()
	}
	return nil
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// Cut stops bytes from host from reaching host to, until Heal.
func (n *Network) Cut(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.blocked[[2]string{from, to}] = true
	n.broadcastLocked()
}

// Heal undoes Cut(from, to); held bytes are delivered.
func (n *Network) Heal(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.blocked, [2]string{from, to})
	n.broadcastLocked()
}

// Isolate cuts host h from every other host, both ways.
func (n *Network) Isolate(h string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for o := range n.hosts {
		if o != h {
			n.blocked[[2]string{h, o}] = true
			n.blocked[[2]string{o, h}] = true
		}
	}
	n.broadcastLocked()
}

// HealAll removes every partition.
func (n *Network) HealAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.blocked)
	n.broadcastLocked()
}

// Crash ends host h as a process death does: its listeners close, every connection it
// has ends (its own side at once; its peers read EOF after what was already sent), and it
// dials nothing more until it listens again (a restarted process).
func (n *Network) Crash(h string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down[h] = true
	for addr, l := range n.listeners {
		if hostOf(addr) == h {
			l.closeLocked()
		}
	}
	for c := range n.conns {
		for i := range c.ends {
			if c.ends[i].host == h {
				c.closeLocked(i)
			}
		}
	}
	n.broadcastLocked()
}

// Sever ends every connection between hosts a and b, as a reset from a middlebox does:
// both ends see an error at once, and new connections may be dialled straight away.
func (n *Network) Sever(a, b string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for c := range n.conns {
		h0, h1 := c.ends[0].host, c.ends[1].host
		if (h0 == a && h1 == b) || (h0 == b && h1 == a) {
			c.reset = true
			c.closeLocked(0)
			c.closeLocked(1)
		}
	}
	n.broadcastLocked()
}

// Close crashes every host: every connection and listener ends.
func (n *Network) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, l := range n.listeners {
		l.closeLocked()
	}
	for c := range n.conns {
		c.closeLocked(0)
		c.closeLocked(1)
	}
	n.broadcastLocked()
}

// Conns returns how many connections are open (at least one end not closed).
func (n *Network) Conns() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.conns)
}

func (n *Network) cutLocked(from, to string) bool { return n.blocked[[2]string{from, to}] }

func (n *Network) latencyLocked(from, to string) time.Duration {
	if n.Latency == nil || from == to {
		return 0
	}
	return n.Latency(from, to)
}

// Listen opens a listener on addr ("host:port"). An address whose listener was closed (or
// crashed) can be listened on again.
func (n *Network) Listen(addr string) (net.Listener, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l, ok := n.listeners[addr]; ok && !l.closed {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Addr: memAddr(addr), Err: syscall.EADDRINUSE}
	}
	l := &listener{n: n, addr: addr}
	n.listeners[addr] = l
	n.hosts[hostOf(addr)] = true
	delete(n.down, hostOf(addr))
	n.broadcastLocked()
	return l, nil
}

// Dialer returns the dial function of a process on host h.
func (n *Network) Dialer(h string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	n.hosts[h] = true
	n.mu.Unlock()
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return n.dial(ctx, h, addr) }
}

func (n *Network) dial(ctx context.Context, from, addr string) (net.Conn, error) {
	to := hostOf(addr)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down[from] {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: memAddr(addr), Err: syscall.ENETUNREACH}
	}
	// The handshake crosses the link both ways: a partition either way makes it hang.
	for n.cutLocked(from, to) || n.cutLocked(to, from) {
		if err := n.wait(ctx, time.Time{}, nil); err != nil {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: memAddr(addr), Err: os.ErrDeadlineExceeded}
		}
	}
	if rtt := n.latencyLocked(from, to) + n.latencyLocked(to, from); rtt > 0 {
		if err := n.wait(ctx, time.Now().Add(rtt), nil); err != nil {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: memAddr(addr), Err: os.ErrDeadlineExceeded}
		}
	}
	l, ok := n.listeners[addr]
	if !ok || l.closed {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: memAddr(addr), Err: syscall.ECONNREFUSED}
	}
	n.nextPort++
	local := net.JoinHostPort(from, strconv.Itoa(n.nextPort))
	c := &conn{n: n}
	c.ends[0] = end{host: from, addr: local}
	c.ends[1] = end{host: to, addr: addr}
	n.conns[c] = struct{}{}
	l.pending = append(l.pending, &endpoint{c: c, side: 1})
	l.arrived.fire()
	return &endpoint{c: c, side: 0}, nil
}

type memAddr string

func (a memAddr) Network() string { return "tcp" }
func (a memAddr) String() string  { return string(a) }

type listener struct {
	n       *Network
	addr    string
	pending []*endpoint
	arrived signal
	closed  bool
}

func (l *listener) Accept() (net.Conn, error) {
	l.n.mu.Lock()
	defer l.n.mu.Unlock()
	for {
		if l.closed {
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: memAddr(l.addr), Err: net.ErrClosed}
		}
		if len(l.pending) > 0 {
			e := l.pending[0]
			l.pending = l.pending[1:]
			return e, nil
		}
		_ = l.n.wait(nil, time.Time{}, &l.arrived)
	}
}

func (l *listener) Close() error {
	l.n.mu.Lock()
	defer l.n.mu.Unlock()
	l.closeLocked()
	l.n.broadcastLocked()
	return nil
}

// closeLocked closes the listener and refuses the connections not yet accepted.
func (l *listener) closeLocked() {
	l.closed = true
	l.arrived.fire()
	for _, e := range l.pending {
		e.c.closeLocked(e.side)
	}
	l.pending = nil
}

func (l *listener) Addr() net.Addr { return memAddr(l.addr) }

// String names the listener in test failures.
func (l *listener) String() string { return fmt.Sprintf("memnet listener %s", l.addr) }

var _ io.Closer = (*listener)(nil)
