package memnet

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// pair dials a listener on b:1 from host a and returns both ends.
func pair(t *testing.T, n *Network) (client, server net.Conn) {
	t.Helper()
	l, err := n.Listen("b:1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	client, err = n.Dialer("a")(context.Background(), "tcp", "b:1")
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return client, server
}

func TestBytesArriveInOrderAfterLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New()
		n.Latency = func(from, to string) time.Duration { return 10 * time.Millisecond }
		c, s := pair(t, n)
		start := time.Now()
		for _, m := range []string{"one ", "two ", "three"} {
			if _, err := c.Write([]byte(m)); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
		got, err := io.ReadAll(s)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "one two three" {
			t.Fatalf("read %q", got)
		}
		// The dial took a round trip (20 ms), the bytes one way (10 ms).
		if d := time.Since(start); d != 10*time.Millisecond {
			t.Fatalf("delivered after %v, want 10ms", d)
		}
	})
}

func TestCutStallsAndHealDelivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New()
		c, s := pair(t, n)
		n.Cut("a", "b")
		if _, err := c.Write([]byte("held")); err != nil {
			t.Fatal(err)
		}
		s.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 8)
		if _, err := s.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read across a cut: %v, want a deadline error", err)
		}
		// The other direction still flows.
		if _, err := s.Write([]byte("back")); err != nil {
			t.Fatal(err)
		}
		if k, err := c.Read(buf); err != nil || string(buf[:k]) != "back" {
			t.Fatalf("read %q, %v", buf[:k], err)
		}
		n.Heal("a", "b")
		s.SetReadDeadline(time.Time{})
		if k, err := s.Read(buf); err != nil || string(buf[:k]) != "held" {
			t.Fatalf("after heal read %q, %v", buf[:k], err)
		}
	})
}

func TestDialAcrossCutHangsUntilContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New()
		l, _ := n.Listen("b:1")
		defer l.Close()
		n.Cut("b", "a") // even one way: the handshake needs both
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		_, err := n.Dialer("a")(ctx, "tcp", "b:1")
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("dial across a cut: %v, want a timeout", err)
		}
		if time.Since(start) != 2*time.Second {
			t.Fatalf("dial gave up after %v", time.Since(start))
		}
		n.Heal("b", "a")
		if _, err := n.Dialer("a")(context.Background(), "tcp", "b:2"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial of nothing: %v, want connection refused", err)
		}
	})
}

func TestCrashEndsConnectionsAndListeners(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New()
		c, s := pair(t, n)
		if _, err := s.Write([]byte("last")); err != nil {
			t.Fatal(err)
		}
		n.Crash("b")
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "last" {
			t.Fatalf("peer of a crashed host read %q, %v; want what was sent, then EOF", got, err)
		}
		if _, err := s.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("crashed side read: %v", err)
		}
		if _, err := n.Dialer("a")(context.Background(), "tcp", "b:1"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial of a crashed host: %v", err)
		}
		if _, err := n.Dialer("b")(context.Background(), "tcp", "a:1"); !errors.Is(err, syscall.ENETUNREACH) {
			t.Fatalf("dial from a crashed host: %v", err)
		}
		if _, err := n.Listen("b:1"); err != nil {
			t.Fatalf("listen again after a crash: %v", err)
		}
		c.Close()
		if k := n.Conns(); k != 0 {
			t.Fatalf("%d connections left", k)
		}
	})
}

func TestHTTPOverMemnet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New()
		n.Latency = func(from, to string) time.Duration { return time.Millisecond }
		l, _ := n.Listen("srv:80")
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })}
		go srv.Serve(l)
		hc := &http.Client{Transport: &http.Transport{DialContext: n.Dialer("cli")}}
		resp, err := hc.Get("http://srv:80/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello" {
			t.Fatalf("got %q", b)
		}
		hc.CloseIdleConnections()
		srv.Close()
		n.Close()
	})
}

func TestSeverResetsBothEndsAndAllowsRedial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New()
		c, s := pair(t, n)
		n.Sever("a", "b")
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("client read after sever: %v", err)
		}
		if _, err := s.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("server write after sever: %v", err)
		}
		if _, err := n.Dialer("a")(context.Background(), "tcp", "b:1"); err != nil {
			t.Fatalf("dial after sever: %v", err)
		}
	})
}
