package statuspage

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

func TestPageIsSelfContained(t *testing.T) {
	rec := httptest.NewRecorder()
	ServePage(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	body := rec.Body.String()
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("page: code %d, type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if !strings.Contains(body, Path) {
		t.Fatalf("the page does not open %s", Path)
	}
	// The only URL is the SVG namespace, an identifier that is never fetched.
	for _, u := range regexp.MustCompile(`https?://[^"'\s)]+`).FindAllString(body, -1) {
		if u != "http://www.w3.org/2000/svg" {
			t.Errorf("the page references %s: it must work without network access", u)
		}
	}
	for _, bad := range []string{"<script src", "<link ", "@import", "innerHTML"} {
		if strings.Contains(body, bad) {
			t.Errorf("the page contains %q (external asset, or HTML built from network data)", bad)
		}
	}
}

// source is a Source whose status a test changes; calls counts the polls.
type source struct {
	mu    sync.Mutex
	seq   uint64
	err   error
	calls atomic.Int64
}

func (s *source) set(seq uint64, err error) {
	s.mu.Lock()
	s.seq, s.err = seq, err
	s.mu.Unlock()
}

func (s *source) status(ctx context.Context) (*command.Status, error) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	return &command.Status{Groups: []command.StatusGroup{{Server: 1, Seq: s.seq}}}, nil
}

// reader reads a stream's frames as they come.
type reader struct {
	frames chan Frame
	cancel context.CancelFunc
	done   chan struct{}
}

func open(t *testing.T, url string) *reader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+Path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("stream: HTTP %d, type %q", resp.StatusCode, ct)
	}
	r := &reader{frames: make(chan Frame, 100), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var f Frame
				if err := json.Unmarshal([]byte(data), &f); err != nil {
					t.Errorf("frame %q: %v", data, err)
					return
				}
				r.frames <- f
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func (r *reader) next(t *testing.T, within time.Duration) Frame {
	t.Helper()
	select {
	case f := <-r.frames:
		return f
	case <-time.After(within):
		t.Fatalf("no frame within %v", within)
		return Frame{}
	}
}

// waitSeq reads frames until one shows seq, and returns how long that took.
func (r *reader) waitSeq(t *testing.T, seq uint64, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		f := r.next(t, within-time.Since(start))
		if f.Status != nil && f.Status.Groups[0].Seq == seq {
			return time.Since(start)
		}
	}
}

// TestStreamPushesChangesAndBeats: a change reaches the page within a poll (at once when
// poked), an unchanged status is sent again every second, an error is a frame too, one
// poller serves several pages, and it stops when the last page goes away.
func TestStreamPushesChangesAndBeats(t *testing.T) {
	src := &source{}
	s := NewStream(src.status, StreamOptions{Served: Served{Kind: "node", ID: "3", Location: "default"},
		Poll: 50 * time.Millisecond, Every: 400 * time.Millisecond})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	a := open(t, srv.URL)
	f := a.next(t, 2*time.Second)
	if f.Served != (Served{Kind: "node", ID: "3", Location: "default"}) || f.Status == nil || f.TimeMs == 0 {
		t.Fatalf("first frame %+v", f)
	}
	src.set(7, nil)
	if d := a.waitSeq(t, 7, 2*time.Second); d > time.Second {
		t.Fatalf("a change took %v to arrive, want about a poll (50ms)", d)
	}
	// Unchanged: frames still come, about every 400ms.
	start := time.Now()
	for i := 0; i < 3; i++ {
		if f := a.next(t, 2*time.Second); f.Status == nil || f.Status.Groups[0].Seq != 7 {
			t.Fatalf("beat %d: %+v", i, f)
		}
	}
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Fatalf("3 beats of an unchanged status in %v: it is sent on every poll, not once per Every", d)
	}
	b := open(t, srv.URL)
	if f := b.next(t, time.Second); f.Status == nil || f.Status.Groups[0].Seq != 7 {
		t.Fatalf("a second page's first frame %+v, want the newest status at once", f)
	}
	src.set(0, errors.New("controllers unreachable"))
	for {
		if f := b.next(t, 2*time.Second); f.Error != "" {
			if f.Status != nil || f.Error != "controllers unreachable" {
				t.Fatalf("error frame %+v", f)
			}
			break
		}
	}
	src.set(9, nil)
	a.waitSeq(t, 9, 2*time.Second)
	b.waitSeq(t, 9, 2*time.Second)
	a.cancel()
	b.cancel()
	<-a.done
	<-b.done
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		running := s.running
		s.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the poller still runs with no page open")
		}
		time.Sleep(10 * time.Millisecond)
	}
	calls := src.calls.Load()
	time.Sleep(200 * time.Millisecond) // a window to see polls that should not happen
	if n := src.calls.Load(); n != calls {
		t.Fatalf("%d polls with no page open", n-calls)
	}
}

// TestStreamPoke: a poke polls at once, well before the next tick.
func TestStreamPoke(t *testing.T) {
	src := &source{}
	s := NewStream(src.status, StreamOptions{Poll: time.Hour, Every: time.Hour})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	a := open(t, srv.URL)
	a.next(t, 2*time.Second)
	src.set(3, nil)
	s.Poke()
	if d := a.waitSeq(t, 3, 2*time.Second); d > time.Second {
		t.Fatalf("a poked change took %v", d)
	}
}

// TestStreamClose: Close ends open streams (so an HTTP server's shutdown does not wait for
// them) and refuses new ones.
func TestStreamClose(t *testing.T) {
	src := &source{}
	s := NewStream(src.status, StreamOptions{Poll: 20 * time.Millisecond})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	a := open(t, srv.URL)
	a.next(t, 2*time.Second)
	s.Close()
	select {
	case <-a.done:
	case <-time.After(2 * time.Second):
		t.Fatal("an open stream outlived Close")
	}
	resp, err := http.Get(srv.URL + Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a stream opened after Close: HTTP %d, want 503", resp.StatusCode)
	}
}
