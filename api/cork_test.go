package api

import (
	"bytes"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sibylhq/sibyl/api/internal/fake"
	"github.com/sibylhq/sibyl/command"
)

// recordConn is a socket that records each Write it gets.
type recordConn struct {
	net.Conn
	mu     sync.Mutex
	writes []string
	closed bool
}

func (r *recordConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func (r *recordConn) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

func (r *recordConn) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

func TestCorkConn(t *testing.T) {
	rec := &recordConn{}
	c := &corkConn{Conn: rec}
	c.Write([]byte("a"))
	c.cork()
	c.Write([]byte("b"))
	c.Write([]byte("c"))
	if got := rec.got(); len(got) != 1 {
		t.Fatalf("corked writes reached the socket: %q", got)
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("d"))
	if got := strings.Join(rec.got(), "|"); got != "a|bc|d" {
		t.Fatalf("socket writes %q, want a|bc|d", got)
	}

	// Past the limit, what is held goes out first, and a write larger than the limit
	// goes on its own.
	rec.writes = nil
	big := strings.Repeat("x", corkLimit)
	c.cork()
	c.Write([]byte("e"))
	c.Write([]byte(big))
	c.Write([]byte("f"))
	c.uncork()
	if got := rec.got(); len(got) != 3 || got[0] != "e" || got[1] != big || got[2] != "f" {
		t.Fatalf("socket writes of lengths %d, want e, the %d-byte write, f", len(got), corkLimit)
	}

	// A close frame written while corked still leaves on Close.
	rec.writes = nil
	c.cork()
	c.Write([]byte("close"))
	c.Close()
	if got := rec.got(); len(got) != 1 || got[0] != "close" || !rec.closed {
		t.Fatalf("on Close: writes %q closed %v, want the held bytes, then closed", got, rec.closed)
	}
}

// countingListener counts the socket writes of the connections it accepts.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, writes: l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// Replies that are ready together leave in one socket write, each its own frame.
func TestReadyRepliesShareOneSocketWrite(t *testing.T) {
	s := NewServer(fakeBackend{fake.New()}, Options{})
	hs := httptest.NewUnstartedServer(s.Handler())
	var writes atomic.Int64
	hs.Listener = countingListener{Listener: hs.Listener, writes: &writes}
	hs.Start()
	t.Cleanup(func() {
		s.Close()
		hs.Close()
	})
	ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	defer ws.Close()

	var c *wsConn
	for deadline := time.Now().Add(5 * time.Second); c == nil; {
		s.mu.Lock()
		for open := range s.conns {
			c = open
		}
		s.mu.Unlock()
		if c == nil && time.Now().After(deadline) {
			t.Fatal("the server did not register the connection")
		}
	}
	before := writes.Load()
	ids := []string{"r1", "r2", "r3"}
	c.amu.Lock()
	for _, id := range ids {
		c.answers = append(c.answers, answer{id: &id, op: command.OpGet, start: time.Now(),
			rep: &command.Reply{Resource: &command.Resource{ID: "1-x", Type: "t", Version: 1, Data: []byte(`{"v":1}`)}}})
	}
	c.amu.Unlock()
	c.answered <- struct{}{}

	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, id := range ids {
		_, frame, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(frame, []byte(`"id":"`+id+`"`)) {
			t.Fatalf("frame %s, want the reply to %s", frame, id)
		}
	}
	if n := writes.Load() - before; n != 1 {
		t.Fatalf("3 ready replies took %d socket writes, want 1", n)
	}
}
