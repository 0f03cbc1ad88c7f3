package statuspage

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Path is where a Stream is served.
const Path = "/v1/status/stream"

// Defaults of StreamOptions.
const (
	DefaultPoll  = 200 * time.Millisecond
	DefaultEvery = time.Second
	// fetchTimeout bounds one call of the Source.
	fetchTimeout = 2 * time.Second
)

// Source returns the status the page shows: the process's GET /v1/status object.
type Source func(ctx context.Context) (*command.Status, error)

// Served names the process a page is served by.
type Served struct {
	Kind     string `json:"kind"` // "node" or "controller"
	ID       string `json:"id"`
	Location string `json:"location,omitempty"`
}

// Frame is one event of the stream: the status (or why there is none) as of TimeMs, the
// serving process's clock in Unix milliseconds.
type Frame struct {
	Served Served          `json:"served"`
	TimeMs int64           `json:"timeMs"`
	Status *command.Status `json:"status,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// StreamOptions configure a Stream; zero fields take the defaults.
type StreamOptions struct {
	Served Served
	Poll   time.Duration // how often the Source is asked while a page listens
	Every  time.Duration // longest time between two frames
	Now    func() time.Time
}

// Stream fans one Source out to server-sent-event clients.
type Stream struct {
	src  Source
	opts StreamOptions
	poke chan struct{}

	mu      sync.Mutex
	clients map[*client]struct{}
	running bool
	last    []byte // the newest frame sent, for a client that connects between frames
	closed  bool
	done    chan struct{} // closed by Close
}

// client holds the newest frame not yet written to one connection.
type client struct{ frames chan []byte }

// NewStream makes a stream of src. It polls only while a client is connected.
func NewStream(src Source, opts StreamOptions) *Stream {
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.Every <= 0 {
		opts.Every = DefaultEvery
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Stream{src: src, opts: opts, poke: make(chan struct{}, 1), clients: map[*client]struct{}{}, done: make(chan struct{})}
}

// Poke asks for a poll now (the status probably changed). It never blocks.
func (s *Stream) Poke() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// Close ends every open stream and refuses new ones; an http.Server's Shutdown does not
// wait for them then.
func (s *Stream) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
}

// ServeHTTP streams frames to one client until it goes away or the stream is closed.
func (s *Stream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &client{frames: make(chan []byte, 1)}
	if !s.add(c) {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.remove(c)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	// retry: how long the browser waits before it reconnects after the stream breaks.
	if _, err := w.Write([]byte("retry: 1000\n\n")); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case f := <-c.frames:
			var b bytes.Buffer
			b.Grow(len(f) + 8)
			b.WriteString("data: ")
			b.Write(f)
			b.WriteString("\n\n")
			if _, err := w.Write(b.Bytes()); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
	}
}

// add registers c, hands it the newest frame, and starts the poller if it is not running.
func (s *Stream) add(c *client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.clients[c] = struct{}{}
	if s.last != nil {
		c.frames <- s.last
	}
	if !s.running {
		s.running = true
		go s.run()
	}
	return true
}

func (s *Stream) remove(c *client) {
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
}

// run polls the source and broadcasts frames until no client is left or the stream closes.
func (s *Stream) run() {
	tick := time.NewTicker(s.opts.Poll)
	defer tick.Stop()
	var prev []byte // the last status (or error) sent, to tell a change
	var sentAt time.Time
	for {
		s.mu.Lock()
		if len(s.clients) == 0 || s.closed {
			s.running = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()

		frame := s.fetch()
		body, _ := json.Marshal(struct {
			Status *command.Status `json:"status,omitempty"`
			Error  string          `json:"error,omitempty"`
		}{frame.Status, frame.Error})
		now := s.opts.Now()
		if !bytes.Equal(body, prev) || now.Sub(sentAt) >= s.opts.Every-s.opts.Poll/2 {
			prev, sentAt = body, now
			b, err := json.Marshal(frame)
			if err == nil {
				s.broadcast(b)
			}
		}
		select {
		case <-tick.C:
		case <-s.poke:
		case <-s.done:
		}
	}
}

func (s *Stream) fetch() Frame {
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	f := Frame{Served: s.opts.Served}
	st, err := s.src(ctx)
	if err != nil {
		f.Error = err.Error()
	} else {
		f.Status = st
	}
	f.TimeMs = s.opts.Now().UnixMilli()
	return f
}

// broadcast hands b to every client, replacing a frame it has not written yet.
func (s *Stream) broadcast(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = b
	for c := range s.clients {
		select {
		case <-c.frames:
		default:
		}
		c.frames <- b
	}
}
