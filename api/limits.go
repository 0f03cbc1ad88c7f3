package api

import (
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Limits of docs/protocol.md §7 kept by the server: connections per client IP and a
// request rate per token (per IP for callers without one). Each refusal is rate_limited
// with retryAfterMs and leaves the connection as it was.

// rateLimiter is a token bucket per key: rate tokens a second, up to burst (one second's
// worth). Idle buckets are dropped once full again.
type rateLimiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newRateLimiter(perSecond int, now func() time.Time) *rateLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &rateLimiter{rate: float64(perSecond), burst: float64(perSecond), now: now, buckets: map[string]*bucket{}}
}

// allow takes one token from key's bucket, or says how long until one is there.
func (l *rateLimiter) allow(key string) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// rateLimited is the refusal of a request over a limit.
func rateLimited(retryAfter time.Duration, format string, args ...any) *command.Error {
	e := command.Errorf(command.CodeRateLimited, format, args...)
	e.RetryAfterMs = max(1, int64(math.Ceil(float64(retryAfter)/float64(time.Millisecond))))
	return e
}

// checkRate applies the request rate limit to a caller known by the token it
// authenticated with when the server has tokens, else by its IP.
func (s *Server) checkRate(who *caller, ip string) *command.Error {
	if s.rate == nil {
		return nil
	}
	key := "ip " + ip
	if who != nil && who.token != "" && s.authOn() {
		key = "token " + who.token
	}
	if ok, wait := s.rate.allow(key); !ok {
		return rateLimited(wait, "more than %d requests a second from this caller", s.opts.RatePerSecond)
	}
	return nil
}

// ipConns counts open WebSocket connections per client IP.
type ipConns struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

// open reserves a connection for ip; false when ip has max open already.
func (c *ipConns) open(ip string) bool {
	if c.max <= 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[ip] >= c.max {
		return false
	}
	c.n[ip]++
	return true
}

func (c *ipConns) close(ip string) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[ip]--; c.n[ip] <= 0 {
		delete(c.n, ip)
	}
}

// clientIP is the address a request came from, without its port.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
