package api

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sibylhq/sibyl/command"
)

// The token bucket lets a burst of one second's requests through, refuses the next with
// the time until a token is back, and refills at the rate.
func TestRateLimiterBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := newRateLimiter(10, clock)
	for i := 0; i < 10; i++ {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("request %d of a burst of 10 refused", i+1)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("11th request: ok %v, retry after %v; want refused, about 100ms", ok, wait)
	}
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("another caller was refused for the first one's burst")
	}
	mu.Lock()
	now = now.Add(wait)
	mu.Unlock()
	if ok, _ := l.allow("a"); !ok {
		t.Fatalf("refused after waiting the %v it was told", wait)
	}
	if newRateLimiter(0, clock) != nil {
		t.Fatal("a rate of 0 must mean no limiter")
	}
}

// Over the request rate a request gets rate_limited with retryAfterMs; the connection
// stays usable and serves again once the wait is over.
func TestRateLimitOnAConnection(t *testing.T) {
	h := newHarness(t, Options{RatePerSecond: 5})
	ws := h.dial(nil)
	var limited *command.Error
	for i := 0; i < 20 && limited == nil; i++ {
		r := ws.roundTrip(`{"id":"l","op":"list"}`)
		if !r.OK {
			limited = r.Error
		}
	}
	if limited == nil || limited.Code != command.CodeRateLimited || limited.RetryAfterMs <= 0 {
		t.Fatalf("20 requests at a limit of 5/s: %+v; want rate_limited with retryAfterMs", limited)
	}
	time.Sleep(time.Duration(limited.RetryAfterMs) * time.Millisecond) // the wait the server asked for
	mustOK(t, ws.roundTrip(`{"id":"after","op":"list"}`), "after")
}

// A client IP with the maximum of connections open gets its next one refused with 429
// rate_limited; closing one lets the next in.
func TestConnectionsPerIP(t *testing.T) {
	h := newHarness(t, Options{MaxConnsPerIP: 2})
	a := h.dial(nil)
	h.dial(nil)
	url := "ws" + strings.TrimPrefix(h.http.URL, "http") + "/v1/ws"
	_, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection from one IP: %v (response %v), want 429", err, resp)
	}
	resp.Body.Close()
	a.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, resp, err := websocket.DefaultDialer.Dial(url, nil)
		if err == nil {
			resp.Body.Close()
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a connection after one of two closed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
