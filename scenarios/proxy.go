package scenarios

import (
	"bufio"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Proxy is a loopback TCP proxy in front of one node. Node-to-node connections name their
// source in the request line (?from=N); Block cuts and refuses those from a given node,
// which partitions replication and forwarding without touching clients or controllers.
type Proxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	blocked map[string]bool
	conns   map[net.Conn]string // accepted connection -> its source ("" for clients)
	closed  bool
}

// NewProxy listens on a free loopback port and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, blocked: map[string]bool{}, conns: map[net.Conn]string{}}
	go p.serve()
	return p, nil
}

// Addr is the address to advertise.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Block refuses connections from node from and cuts the open ones.
func (p *Proxy) Block(from string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked[from] = true
	for c, src := range p.conns {
		if src == from {
			c.Close()
		}
	}
}

// Unblock lets node from connect again.
func (p *Proxy) Unblock(from string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.blocked, from)
}

// Close stops the proxy and cuts every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *Proxy) handle(c net.Conn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	from := sourceOf(line)
	p.mu.Lock()
	if p.closed || p.blocked[from] {
		p.mu.Unlock()
		return
	}
	p.conns[c] = from
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	if _, err := io.WriteString(up, line); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, br); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// sourceOf reads ?from=N out of an HTTP request line ("GET /path?from=3 HTTP/1.1").
func sourceOf(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return ""
	}
	u, err := url.ParseRequestURI(f[1])
	if err != nil {
		return ""
	}
	return u.Query().Get("from")
}
