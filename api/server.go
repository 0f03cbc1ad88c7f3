package api

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/sibylhq/sibyl/api/statuspage"
	"github.com/sibylhq/sibyl/command"
)

// Defaults of Options.
const (
	DefaultMaxFrameBytes     = 1 << 20
	DefaultMaxPendingPerConn = 1024
	DefaultMaxConnsPerIP     = 1000
	DefaultMaxDepth          = 64
)

// Options configure a Server. The zero value is a dev-mode server with default limits.
type Options struct {
	// ClientTokens and AdminTokens are the accepted bearer tokens. With none of either,
	// every caller is accepted and is admin (dev mode).
	ClientTokens []string
	AdminTokens  []string
	// Tokens, when set, adds the roles and tokens of the node's directory to the static
	// tokens (docs/protocol.md §7). They count only on a server with static tokens, whose
	// admin token is what creates them.
	Tokens TokenSource
	// MaxFrameBytes bounds a WebSocket frame and a REST body (default 1 MiB).
	MaxFrameBytes int
	// MaxPendingPerConn bounds the requests one connection has outstanding (default 1024);
	// the excess gets rate_limited.
	MaxPendingPerConn int
	// MaxDepth bounds the nesting of a frame's JSON (default 64; the frame is level 1).
	MaxDepth int
	// MaxConnsPerIP bounds the WebSocket connections open from one client IP (default
	// 1000; negative: none); one more is refused with 429 rate_limited.
	MaxConnsPerIP int
	// RatePerSecond bounds the requests a second per token, or per IP for callers without
	// one (0: no limit); the excess gets rate_limited with retryAfterMs.
	RatePerSecond int
	// Logger receives connection and failure logs; the zero value logs nothing.
	Logger zerolog.Logger
	// Metrics is where the server counts; nil gives the server its own. GET /metrics
	// serves it.
	Metrics *Metrics
	// Served names this process on the status page (kind "node", its ID and location).
	Served statuspage.Served
}

// Server serves the WebSocket command API, the REST mirror and the HTTP endpoints of
// docs/protocol.md for one Backend.
type Server struct {
	b       Backend
	opts    Options
	log     zerolog.Logger
	metrics *Metrics
	upgrade websocket.Upgrader
	handler http.Handler

	rate    *rateLimiter
	ipConns ipConns
	// stream pushes the status to open status pages (GET /v1/status/stream).
	stream *statuspage.Stream
	book   bookPtr       // the directory's tokens (Options.Tokens), kept by watchTokens
	stop   chan struct{} // closed by Close: ends watchTokens

	mu     sync.Mutex
	conns  map[*wsConn]struct{}
	closed bool
}

// NewServer makes a server for b. Call Handler to serve it and Close to end it.
func NewServer(b Backend, opts Options) *Server {
	if opts.MaxFrameBytes <= 0 {
		opts.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if opts.MaxPendingPerConn <= 0 {
		opts.MaxPendingPerConn = DefaultMaxPendingPerConn
	}
	if opts.MaxDepth <= 0 {
		opts.MaxDepth = DefaultMaxDepth
	}
	if opts.MaxConnsPerIP == 0 {
		opts.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	s := &Server{
		b:       b,
		opts:    opts,
		log:     opts.Logger.With().Str("component", "api").Logger(),
		metrics: opts.Metrics,
		conns:   map[*wsConn]struct{}{},
		rate:    newRateLimiter(opts.RatePerSecond, time.Now),
		ipConns: ipConns{max: opts.MaxConnsPerIP, n: map[string]int{}},
		stop:    make(chan struct{}),
	}
	if s.metrics == nil {
		s.metrics = NewMetrics()
	}
	s.stream = statuspage.NewStream(func(ctx context.Context) (*command.Status, error) {
		st, err := s.b.Status(ctx)
		if err = realError(err); err != nil {
			return nil, err
		}
		return normalizeStatus(st), nil
	}, statuspage.StreamOptions{Served: opts.Served})
	s.upgrade = websocket.Upgrader{
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		// Idle connections (a subscriber waiting for events) hold no write buffer: it is
		// taken from the pool for a write and given back after.
		WriteBufferPool: &sync.Pool{},
		// Any origin may connect: callers authenticate with bearer tokens (header or hello
		// frame), never with cookies a browser would attach on its own, so a cross-site
		// page gains nothing it could not get by connecting directly.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	s.handler = s.routes()
	if opts.Tokens != nil && s.authOn() {
		book, _ := opts.Tokens.Tokens()
		s.book.Store(book)
		go s.watchTokens(opts.Tokens, s.stop)
	}
	return s
}

// Handler returns the HTTP handler of every endpoint.
func (s *Server) Handler() http.Handler { return s.handler }

// Close refuses new WebSocket connections and closes the open ones with 1001 (going
// away); their outstanding requests are cancelled. Open status streams end. REST calls are
// left to the HTTP server.
func (s *Server) Close() error {
	s.stream.Close()
	s.mu.Lock()
	if !s.closed {
		close(s.stop)
	}
	s.closed = true
	conns := make([]*wsConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown(websocket.CloseGoingAway, "server shutting down")
	}
	return nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ws", s.serveWS)
	mux.HandleFunc("GET /v1/status", s.needToken(s.serveStatus))
	mux.HandleFunc("GET /healthz", s.serveHealth)
	mux.Handle("GET /metrics", s.metrics.Handler())
	mux.HandleFunc("GET /{$}", s.needToken(statuspage.ServePage))
	mux.HandleFunc("GET "+statuspage.Path, s.streamWhileValid(s.stream.ServeHTTP))
	s.restRoutes(mux)
	return s.recoverHTTP(mux)
}

// bearer returns the token of an "Authorization: Bearer TOKEN" header, or "".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) {
		return strings.TrimSpace(h[len(prefix):])
	}
	return ""
}

// start calls sess.Start and returns the function that waits for the outcome. A panic in
// the backend, in Start or in the wait, becomes internal for this request alone.
func (s *Server) start(ctx context.Context, sess Session, req *command.Request, admin bool) func() (*command.Reply, error) {
	var wait func() (*command.Reply, error)
	if err := s.guard(req.Op, func() error {
		if req.Op == command.OpStatus {
			wait = func() (*command.Reply, error) { return s.status(ctx) }
			return nil
		}
		wait = sess.Start(ctx, req, admin)
		if wait == nil {
			return command.Errorf(command.CodeInternal, "backend returned no result for op %q", req.Op)
		}
		return nil
	}); err != nil {
		return func() (*command.Reply, error) { return nil, err }
	}
	return func() (rep *command.Reply, err error) {
		err = s.guard(req.Op, func() error {
			var werr error
			rep, werr = wait()
			return realError(werr)
		})
		return rep, err
	}
}

// startAsync begins req and calls done once with its outcome: through the session's
// StartAsync when it has one (no goroutine waits), else by waiting for Start's outcome on a
// goroutine. A panic in Start or StartAsync becomes internal for this request alone.
func (s *Server) startAsync(ctx context.Context, sess Session, req *command.Request, admin bool, done func(*command.Reply, error)) {
	as, ok := sess.(AsyncSession)
	if !ok || req.Op == command.OpStatus {
		wait := s.start(ctx, sess, req, admin)
		go func() { done(wait()) }()
		return
	}
	var once sync.Once
	answer := func(rep *command.Reply, err error) {
		once.Do(func() { done(rep, realError(err)) })
	}
	if err := s.guard(req.Op, func() error {
		as.StartAsync(ctx, req, admin, answer)
		return nil
	}); err != nil {
		answer(nil, err)
	}
}

// guard runs f and turns a panic into an internal error, logging the stack.
func (s *Server) guard(op string, f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error().Str("op", op).Str("panic", fmt.Sprint(p)).Bytes("stack", debug.Stack()).Msg("request panicked")
			err = command.Errorf(command.CodeInternal, "server failed while handling op %q", op)
		}
	}()
	return f()
}

// status answers the status op from the backend directly: it needs no session state.
func (s *Server) status(ctx context.Context) (*command.Reply, error) {
	st, err := s.b.Status(ctx)
	if err = realError(err); err != nil {
		return nil, err
	}
	return &command.Reply{Status: st}, nil
}

// realError maps a typed nil *command.Error to nil. Backends return *command.Error from
// many helpers, and passing a nil one on as an error makes a non-nil interface that would
// otherwise be answered as a failure, or crash the encoding of it.
func realError(err error) error {
	if e, ok := err.(*command.Error); ok && e == nil {
		return nil
	}
	return err
}

// recoverHTTP is the last line against a panic outside the backend calls (which guard
// handles per request): the caller gets internal, the process keeps serving.
func (s *Server) recoverHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error().Str("path", r.URL.Path).Str("panic", fmt.Sprint(p)).Bytes("stack", debug.Stack()).Msg("handler panicked")
				writeError(w, command.Errorf(command.CodeInternal, "server failed while handling %s %s", r.Method, r.URL.Path))
			}
		}()
		next.ServeHTTP(w, r)
	})
}
