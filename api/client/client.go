package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sibylhq/sibyl/command"
)

// Defaults of Options.
const (
	DefaultRequestTimeout = 10 * time.Second
	DefaultMaxFrameBytes  = 1 << 20
)

// Options configure a Client.
type Options struct {
	// Addrs are the nodes to talk to, tried in order: "host:port", "ws://host:port",
	// "http://host:port" or their TLS forms wss:// and https:// (the path defaults to
	// /v1/ws). A bare host:port is dialled with TLS when TLS is set.
	Addrs []string
	// TLS, when set, verifies the nodes' certificates (RootCAs: the cluster's CA, as
	// tlsconf.Load makes it from --tls-ca); nil with a wss:// or https:// address uses the
	// system's roots.
	TLS *tls.Config
	// Token is sent as "Authorization: Bearer" on every connection; empty for dev mode.
	Token string
	// RequestTimeout bounds one request and one connection attempt (default 10 s).
	RequestTimeout time.Duration
	// MaxFrameBytes is the server's frame limit (default 1 MiB). Larger requests fail here
	// with too_large, because the server's too_large reply carries no id to match.
	MaxFrameBytes int
	// Seed seeds the retry jitter; 0 takes one from the clock. Tests fix it to replay.
	Seed uint64
	// Dial, when set, opens the client's connections (nil: TCP); tests reach in-memory
	// clusters through it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// NoRouting sends every request over the default connection, whose node forwards it
	// to the main of its group. By default a request of one group goes straight to the
	// group's main over a connection to that node (see the package documentation); turn
	// it off for tests of forwarding, or where the client cannot reach the addresses the
	// nodes advertise.
	NoRouting bool
	// RouteRefresh is how often a routing client reads the cluster's status to learn
	// which node is main of which group (default 5 s); failures that suggest a main moved
	// make it read sooner.
	RouteRefresh time.Duration
}

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("sibyl client is closed")

// Client talks to a Sibyl cluster over one pipelined default WebSocket connection at a
// time, moving to the next address when it drops, and, unless Options.NoRouting, over
// one pipelined connection per node that is main of a group it sends requests to. It is
// safe for concurrent use.
type Client struct {
	opts Options
	urls []string

	// lock guards cur, next and closed, and is held while dialling. It is a channel so that
	// a request waiting for another's dial gives up at its own deadline (and so that, in a
	// simulated clock's bubble, that wait counts as blocked and lets time move on).
	lock   chan struct{}
	cur    *conn
	next   int // index in urls of the first address to try at the next dial
	closed bool
	curURL atomic.Pointer[string] // URL of the last default connection, read without mu

	routes *router // nil with NoRouting

	floorMu sync.Mutex
	floors  map[command.ServerID]uint64 // highest seq seen per group

	rngMu sync.Mutex
	rng   *rand.Rand

	placeMu sync.Mutex
	places  map[string]int64 // per node URL: the group its creates go to (see placement)
}

// Dial connects to the first reachable address of opts.Addrs.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	if len(opts.Addrs) == 0 {
		return nil, errors.New("sibyl client: no addresses to dial")
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.MaxFrameBytes <= 0 {
		opts.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if opts.Seed == 0 {
		opts.Seed = uint64(time.Now().UnixNano())
	}
	if opts.RouteRefresh <= 0 {
		opts.RouteRefresh = DefaultRouteRefresh
	}
	c := &Client{
		lock:   make(chan struct{}, 1),
		opts:   opts,
		floors: map[command.ServerID]uint64{},
		places: map[string]int64{},
		rng:    rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5b1b)),
	}
	for _, a := range opts.Addrs {
		u, err := wsURL(a, opts.TLS != nil)
		if err != nil {
			return nil, err
		}
		c.urls = append(c.urls, u)
	}
	if !opts.NoRouting {
		base, _ := url.Parse(c.urls[0]) // wsURL made it
		c.routes = newRouter(c, base)
	}
	if _, err := c.connect(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// wsURL turns an address into the URL of its WebSocket endpoint; a bare host:port gets
// wss with secure, ws without.
func wsURL(addr string, secure bool) (string, error) {
	if !strings.Contains(addr, "://") {
		if secure {
			addr = "wss://" + addr
		} else {
			addr = "ws://" + addr
		}
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("sibyl client: address %q is not host:port or a ws/http URL", addr)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("sibyl client: address %q has scheme %q, want ws, wss, http or https", addr, u.Scheme)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/ws"
	}
	return u.String(), nil
}

// connect returns the live connection, dialling the addresses in order from c.next when
// there is none. Callers wait for one dial rather than racing their own.
func (c *Client) connect(ctx context.Context) (*conn, error) {
	select {
	case c.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.lock }()
	if c.closed {
		return nil, ErrClosed
	}
	if c.cur != nil && c.cur.alive() {
		return c.cur, nil
	}
	var failures []string
	for i := range c.urls {
		at := (c.next + i) % len(c.urls)
		cn, err := c.dial(ctx, c.urls[at])
		if err == nil {
			c.cur = cn
			c.curURL.Store(&cn.addr)
			// When this one drops, start after it: it is the one most likely down.
			c.next = (at + 1) % len(c.urls)
			return cn, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		failures = append(failures, fmt.Sprintf("%s: %v", c.urls[at], err))
	}
	return nil, command.Errorf(command.CodeUnavailable, "no node reachable: %s", strings.Join(failures, "; "))
}

func (c *Client) dial(ctx context.Context, u string) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	header := http.Header{}
	if c.opts.Token != "" {
		header.Set("Authorization", "Bearer "+c.opts.Token)
	}
	d := *websocket.DefaultDialer
	d.NetDialContext = c.opts.Dial
	d.TLSClientConfig = c.opts.TLS
	ws, resp, err := d.DialContext(ctx, u, header)
	if err != nil {
		if resp != nil {
			if servesTLS(resp) {
				return nil, fmt.Errorf("the node serves TLS: connect with wss:// and the cluster's CA (Options.TLS, --tls-ca)")
			}
			return nil, fmt.Errorf("%w (HTTP %s)", err, resp.Status)
		}
		return nil, err
	}
	resp.Body.Close()
	return newConn(ws, u), nil
}

// servesTLS reports whether resp is Go's answer to plaintext on a TLS port.
func servesTLS(resp *http.Response) bool {
	if resp.StatusCode != http.StatusBadRequest || resp.Body == nil {
		return false
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return strings.Contains(string(b), "HTTP request to an HTTPS server")
}

// Do sends one request and waits for its reply. Server errors come back as
// *command.Error with the server's code. A request of one group goes over the connection
// to the group's main when that connection is open (see routeGroup), else over the
// default connection. If a connection drops, the requests in flight on it fail with
// unavailable (their outcome is unknown); the next Do reconnects the default connection,
// starting with the address after the one that failed. A sibling read carries at least
// the highest seq this client has seen of the rid's group as minSeq.
func (c *Client) Do(ctx context.Context, req *command.Request) (*command.Reply, error) {
	if req == nil {
		return nil, command.Errorf(command.CodeBadRequest, "nil request")
	}
	req = c.withFloor(req)
	group, routable := routeGroup(req)
	routable = routable && c.routes != nil
	if routable {
		if cn := c.routes.connFor(group, c.defaultURL()); cn != nil {
			rep, sent, err := cn.tryRoundTrip(ctx, req, c.opts.RequestTimeout, c.opts.MaxFrameBytes)
			if sent {
				c.routes.answered(group, true, rep, err)
				if err == nil {
					c.observe(req, rep)
				}
				return rep, err
			}
			// The main's connection ended before req left: the default one takes it.
		}
	}
	cn, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	rep, err := cn.roundTrip(ctx, req, c.opts.RequestTimeout, c.opts.MaxFrameBytes)
	if routable {
		c.routes.answered(group, false, rep, err)
	}
	if err == nil {
		c.observe(req, rep)
	}
	return rep, err
}

// defaultURL is the URL of the default connection, or of the last one while it redials.
func (c *Client) defaultURL() string {
	if u := c.curURL.Load(); u != nil {
		return *u
	}
	return ""
}

// Route returns the URL of the main of group when this client sends the group's requests
// straight to it, over the default connection (the main is that node) or its own, and ""
// while they go through the default connection's node, which forwards them (no routing,
// main unknown, or its connection not open).
func (c *Client) Route(group command.ServerID) string {
	if c.routes == nil {
		return ""
	}
	return c.routes.routeOf(group, c.defaultURL())
}

// Close ends the connections; calls in flight fail and later calls return ErrClosed.
func (c *Client) Close() error {
	if c.routes != nil {
		c.routes.close()
	}
	c.lock <- struct{}{}
	c.closed = true
	cur := c.cur
	c.cur = nil
	<-c.lock
	if cur != nil {
		cur.close()
	}
	return nil
}

// Addr returns the address of the current default connection, or "" when there is none.
func (c *Client) Addr() string {
	c.lock <- struct{}{}
	defer func() { <-c.lock }()
	if c.cur == nil || !c.cur.alive() {
		return ""
	}
	return c.cur.addr
}

// Floor returns the highest seq this client has seen of group: the minSeq of its next
// sibling read there.
func (c *Client) Floor(group command.ServerID) uint64 {
	c.floorMu.Lock()
	defer c.floorMu.Unlock()
	return c.floors[group]
}

// withFloor raises a sibling get's minSeq to the group's floor, on a copy: the caller's
// request is not changed.
func (c *Client) withFloor(req *command.Request) *command.Request {
	if req.Op != command.OpGet || req.Consistency != command.SiblingRead {
		return req
	}
	group, err := command.GroupOf(req.RID)
	if err != nil {
		return req // the server will refuse the rid
	}
	if floor := c.Floor(group); floor > req.MinSeq {
		r := *req
		r.MinSeq = floor
		return &r
	}
	return req
}

// observe raises the floor of the group a reply's seq belongs to.
func (c *Client) observe(req *command.Request, rep *command.Reply) {
	if rep == nil || rep.Seq == 0 {
		return
	}
	rid := req.RID
	if rep.Resource != nil {
		rid = rep.Resource.ID
	}
	group, err := command.GroupOf(rid)
	if err != nil {
		return
	}
	c.floorMu.Lock()
	if rep.Seq > c.floors[group] {
		c.floors[group] = rep.Seq
	}
	c.floorMu.Unlock()
}
