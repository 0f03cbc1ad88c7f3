package client

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// DefaultRouteRefresh is how often a routing client reads the cluster's status when
// nothing asks for it sooner (Options.RouteRefresh).
const DefaultRouteRefresh = 5 * time.Second

const (
	// routeMinGap spaces the refreshes that failures ask for: the errors of a failover
	// cost one status call per gap, not one per request.
	routeMinGap = 250 * time.Millisecond
	// routeRedial is how long the router waits before dialling a node again after a dial
	// failed or the node's connection dropped; requests go through the default
	// connection meanwhile.
	routeRedial = time.Second
)

// router sends each request of a group to the group's main over a connection of its
// own. It holds a view of the mains (group -> main's URL) read from the status op on the
// default connection, refreshed every RouteRefresh and sooner when a reply says the view
// is stale, and one connection per main in use, dialled in the background the first time
// a request wants it. It never makes a request wait: without a view, a route, or an open
// connection to the main, the request goes through the default connection, whose node
// forwards it.
type router struct {
	c    *Client
	base *url.URL // scheme and path of routed URLs (the client's first address)

	ctx    context.Context // ends when the client closes
	cancel context.CancelFunc
	start  sync.Once     // starts the refresh loop at the first routable request
	kick   chan struct{} // (capacity 1) asks the refresh loop for a refresh now

	mu        sync.Mutex
	closed    bool
	view      map[command.ServerID]route // nil until the first status arrives
	conns     map[string]*conn           // open connections to mains, by URL
	dialing   map[string]bool            // URLs being dialled
	notBefore map[string]time.Time       // no dial of a URL before this (after a failure)
	refreshes int                        // status calls that updated the view
}

func newRouter(c *Client, base *url.URL) *router {
	ctx, cancel := context.WithCancel(context.Background())
	return &router{c: c, base: base, ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1),
		conns: map[string]*conn{}, dialing: map[string]bool{}, notBefore: map[string]time.Time{}}
}

// connFor returns the open connection to the main of group g, or nil when the request
// should go through the default connection: no route yet, the main is the default
// connection's node (defaultURL), or its connection is not open, in which case a dial
// starts in the background.
func (r *router) connFor(g command.ServerID, defaultURL string) *conn {
	r.start.Do(func() { go r.run() })
	r.mu.Lock()
	defer r.mu.Unlock()
	rt, ok := r.view[g]
	if r.closed || !ok || rt.url == defaultURL {
		return nil
	}
	if cn := r.conns[rt.url]; cn != nil {
		if cn.alive() {
			return cn
		}
		delete(r.conns, rt.url)
	}
	r.dialLocked(rt.url)
	return nil
}

// dialLocked starts dialling u unless a dial is under way or u failed recently.
func (r *router) dialLocked(u string) {
	if r.dialing[u] || time.Now().Before(r.notBefore[u]) {
		return
	}
	r.dialing[u] = true
	go r.dial(u)
}

func (r *router) dial(u string) {
	cn, err := r.c.dial(r.ctx, u)
	r.mu.Lock()
	delete(r.dialing, u)
	if err != nil || r.closed {
		r.notBefore[u] = time.Now().Add(routeRedial)
		r.mu.Unlock()
		if cn != nil {
			cn.close()
		}
		return
	}
	delete(r.notBefore, u)
	r.conns[u] = cn
	r.mu.Unlock()
	go r.watch(u, cn)
}

// watch waits for the connection to main u to end. One that dropped (rather than being
// closed by this client) asks for a refresh, since its node may have stopped being main,
// and is not dialled again for routeRedial.
func (r *router) watch(u string, cn *conn) {
	<-cn.dead
	if errors.Is(cn.cause(), ErrClosed) {
		return
	}
	r.mu.Lock()
	if r.conns[u] == cn {
		delete(r.conns, u)
	}
	r.notBefore[u] = time.Now().Add(routeRedial)
	r.mu.Unlock()
	r.refreshSoon()
}

// answered looks at the outcome of a request of group g, sent over a main's connection
// (routed) or the default one. A retryable error of a routed request drops the group's
// route until the next refresh, so that its retries are forwarded by the default node;
// any retryable error, and a reply from an epoch later than the view's, asks for a
// refresh.
func (r *router) answered(g command.ServerID, routed bool, rep *command.Reply, err error) {
	stale := false
	r.mu.Lock()
	rt, known := r.view[g]
	switch {
	case err != nil && retryable(err):
		stale = true
		if routed && known {
			delete(r.view, g)
		}
	case err == nil && rep != nil && known && rep.Epoch > rt.epoch:
		stale = true
	}
	r.mu.Unlock()
	if stale {
		r.refreshSoon()
	}
}

// refreshSoon asks the refresh loop for a refresh; it never blocks.
func (r *router) refreshSoon() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// run refreshes the view at once, then every RouteRefresh and when asked, at most once
// per routeMinGap, until the client closes.
func (r *router) run() {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var last time.Time
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-timer.C:
		case <-r.kick:
		}
		if wait := routeMinGap - time.Since(last); !last.IsZero() && wait > 0 {
			if sleepCtx(r.ctx, wait) != nil {
				return
			}
		}
		last = time.Now()
		r.refresh()
		timer.Reset(r.c.opts.RouteRefresh)
	}
}

// refresh reads the status over the default connection and installs the view it shows.
// A failed read keeps the view it has. Connections to nodes that are no longer main of
// any group are closed once no request waits on them.
func (r *router) refresh() {
	ctx, cancel := context.WithTimeout(r.ctx, r.c.opts.RequestTimeout)
	defer cancel()
	rep, err := r.c.Do(ctx, &command.Request{Op: command.OpStatus})
	if err != nil || rep.Status == nil {
		return
	}
	view := buildView(rep.Status, r.base)
	inUse := make(map[string]bool, len(view))
	for _, rt := range view {
		inUse[rt.url] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.view = view
	r.refreshes++
	for u, cn := range r.conns {
		if !inUse[u] && cn.closeIfIdle() {
			delete(r.conns, u)
		}
	}
}

// close stops the refresh loop and closes every connection to a main; requests in flight
// on them fail with unavailable.
func (r *router) close() {
	r.cancel()
	r.mu.Lock()
	r.closed = true
	conns := r.conns
	r.conns = map[string]*conn{}
	r.mu.Unlock()
	for _, cn := range conns {
		cn.close()
	}
}

// routeOf returns the URL of the main of group g when requests of g go straight to it:
// it is the default connection's node (defaultURL), or its own connection is open.
func (r *router) routeOf(g command.ServerID, defaultURL string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	rt, ok := r.view[g]
	switch {
	case !ok || r.closed:
		return ""
	case rt.url == defaultURL:
		return rt.url
	}
	if cn := r.conns[rt.url]; cn != nil && cn.alive() {
		return rt.url
	}
	return ""
}
