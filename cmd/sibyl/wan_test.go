package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sort"
	"testing"
	"time"
)

// echoServer accepts connections on loopback and echoes every byte back.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// medianRTT sends one byte and waits for its echo n times.
func medianRTT(t *testing.T, c net.Conn, n int) time.Duration {
	t.Helper()
	var rtts []time.Duration
	b := []byte{1}
	for i := 0; i < n; i++ {
		start := time.Now()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	return rtts[n/2]
}

func TestWANDelayAddsTwiceTheDelayToARoundTrip(t *testing.T) {
	addr := echoServer(t)
	const delay = 20 * time.Millisecond
	locate := func(a string) string {
		if a == addr {
			return "loc2"
		}
		return ""
	}
	near, err := wanDialer("loc2", delay, locate, nil)(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer near.Close()
	far, err := wanDialer("loc1", delay, locate, nil)(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()
	if _, ok := near.(*wanConn); ok {
		t.Fatal("a connection within one location was delayed")
	}
	base, wan := medianRTT(t, near, 9), medianRTT(t, far, 9)
	t.Logf("round trip within a location %v, across locations with %v one-way delay %v", base, delay, wan)
	if wan < 2*delay || wan > 2*delay+base+15*time.Millisecond {
		t.Fatalf("round trip across locations %v: want about 2×%v (+%v base)", wan, delay, base)
	}
}

func TestWANConnKeepsBytesAndOrderWhilePipelined(t *testing.T) {
	addr := echoServer(t)
	const delay = 20 * time.Millisecond
	conn, err := wanDialer("a", delay, func(string) string { return "b" }, nil)(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	want := make([]byte, 4<<20)
	_, _ = rand.Read(want)
	start := time.Now()
	go func() {
		for off := 0; off < len(want); off += 7000 {
			end := min(off+7000, len(want))
			if _, err := conn.Write(want[off:end]); err != nil {
				return
			}
		}
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes changed or reordered on the way")
	}
	// Pipelined writes pay the delay once, not once per write: paid per write, the 600
	// writes would take at least 600 × delay (12 s). The bound is half of that, far above
	// the one delay a pipelined link pays, so a loaded machine does not trip it.
	writes := (len(want) + 6999) / 7000
	if took := time.Since(start); took > time.Duration(writes)*delay/2 {
		t.Fatalf("4 MiB in %d writes through a %v link took %v: the delay is paid per write", writes, delay, took)
	}
}

func TestWANConnDeadlinesAndClose(t *testing.T) {
	addr := echoServer(t)
	conn, err := wanDialer("a", 50*time.Millisecond, func(string) string { return "b" }, nil)(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	// The echo is due after 100 ms: a 20 ms deadline passes first, and the bytes are still
	// there for the next read.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	buf := make([]byte, 5)
	if _, err := conn.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read before the bytes are due: err %v, want a deadline error", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read after the deadline was lifted: %q %v", buf, err)
	}
	// A deadline set while a read waits wakes it.
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = conn.SetReadDeadline(time.Now())
	}()
	if _, err := conn.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read woken by a deadline: err %v", err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if _, err := conn.Write(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

func TestWANConnSendsWhatWasWrittenBeforeClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(c)
		got <- b
	}()
	conn, err := wanDialer("a", 30*time.Millisecond, func(string) string { return "b" }, nil)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("last words"))
	conn.Close()
	select {
	case b := <-got:
		if string(b) != "last words" {
			t.Fatalf("peer read %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the peer never saw the connection end")
	}
}

func TestDevGivesEveryChildTheWANDelay(t *testing.T) {
	layout, err := layoutDev(7700, 4, 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	o := devOptions{Exe: "/bin/sibyl", Dir: "/tmp/x", WANDelay: 10 * time.Millisecond}
	has := func(args []string) bool {
		for i := range args[:len(args)-1] {
			if args[i] == "--wan-delay" && args[i+1] == "10ms" {
				return true
			}
		}
		return false
	}
	for _, c := range layout.Controllers {
		if !has(layout.controllerArgs(o, c)) {
			t.Fatalf("controller %s is started without --wan-delay 10ms: %v", c.ID, layout.controllerArgs(o, c))
		}
	}
	for _, n := range layout.Nodes {
		if !has(nodeArgs(o, n)) {
			t.Fatalf("node %d is started without --wan-delay 10ms: %v", n.ID, nodeArgs(o, n))
		}
	}
	o.WANDelay = 0
	if has(nodeArgs(o, layout.Nodes[0])) {
		t.Fatal("--wan-delay passed without a delay")
	}
}
