package resync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/sibling"
)

// memSource is a snapshot held in memory, sorted by position.
type memSource struct {
	h    Header
	recs []Record
}

func newMemSource(seed uint64, n int) *memSource {
	rng := rand.New(rand.NewPCG(seed, 1))
	seen := map[string]bool{}
	s := &memSource{h: Header{Group: 7, Epoch: 3, Main: 2, ID: rng.Uint64(), Seq: 900, SeqEpoch: 3,
		History: []sibling.EpochStart{{Epoch: 1, FirstSeq: 1}, {Epoch: 3, FirstSeq: 500}}}}
	for len(s.recs) < n {
		r := Record{Bucket: byte(1 + rng.IntN(4)), Key: fmt.Appendf(nil, "k%08d", rng.IntN(10*n)),
			Value: bytes.Repeat([]byte{byte(rng.IntN(256))}, rng.IntN(300))}
		if p := string(PositionOf(r)); !seen[p] {
			seen[p] = true
			s.recs = append(s.recs, r)
		}
	}
	sort.Slice(s.recs, func(i, j int) bool { return string(PositionOf(s.recs[i])) < string(PositionOf(s.recs[j])) })
	for _, r := range s.recs {
		s.h.Bytes += uint64(len(r.Key) + len(r.Value))
	}
	return s
}

func (s *memSource) Header() Header { return s.h }

func (s *memSource) Read(after Position, maxBytes, maxRecords int) ([]Record, error) {
	i := sort.Search(len(s.recs), func(i int) bool { return string(PositionOf(s.recs[i])) > string(after) })
	if i == len(s.recs) {
		return nil, io.EOF
	}
	var out []Record
	size := 0
	for ; i < len(s.recs) && len(out) < maxRecords; i++ {
		sz := len(s.recs[i].Key) + len(s.recs[i].Value)
		if len(out) > 0 && size+sz > maxBytes {
			break
		}
		size += sz
		out = append(out, s.recs[i])
	}
	return out, nil
}

// memSink is a copy in memory that remembers what a crash would keep: records written,
// the resync mark, and whether it was finished.
type memSink struct {
	mu       sync.Mutex
	resyncID uint64 // 0: not resyncing
	recs     map[string][]byte
	last     Position
	writes   map[string]int // how often each position was written since the last wipe
	wipes    int
	finished *Header
	failAt   int // Write fails on this call (1-based); 0 never
	calls    int
}

func newMemSink() *memSink { return &memSink{recs: map[string][]byte{}, writes: map[string]int{}} }

func (s *memSink) Begin(h Header) (Position, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resyncID == h.ID && s.last != nil {
		return s.last, nil
	}
	s.resyncID, s.recs, s.last, s.writes, s.finished = h.ID, map[string][]byte{}, nil, map[string]int{}, nil
	s.wipes++
	return nil, nil
}

func (s *memSink) Write(recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls == s.failAt {
		return errors.New("disk full")
	}
	for _, r := range recs {
		p := string(PositionOf(r))
		s.recs[p] = r.Value
		s.writes[p]++
	}
	s.last = PositionOf(recs[len(recs)-1])
	return nil
}

func (s *memSink) Finish(h Header) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resyncID, s.finished = 0, &h
	return nil
}

// checkEqual fails unless sink holds exactly src's records, each written once.
func checkEqual(t *testing.T, src *memSource, sink *memSink) {
	t.Helper()
	if len(sink.recs) != len(src.recs) {
		t.Fatalf("sink holds %d records, source %d", len(sink.recs), len(src.recs))
	}
	for _, r := range src.recs {
		p := string(PositionOf(r))
		if !bytes.Equal(sink.recs[p], r.Value) {
			t.Fatalf("record %q differs", p)
		}
		if sink.writes[p] != 1 {
			t.Fatalf("record %q written %d times since the wipe", p, sink.writes[p])
		}
	}
	if sink.finished == nil || sink.finished.Seq != src.h.Seq || len(sink.finished.History) != 2 {
		t.Fatalf("sink finished with %+v, want the source header", sink.finished)
	}
}

type result struct {
	st  Stats
	err error
}

func transfer(t *testing.T, src *memSource, sink *memSink, sopt SendOptions, ropt ReceiveOptions) (send, recv result) {
	t.Helper()
	a, b := Pipe(16)
	defer a.Close()
	rc := make(chan result, 1)
	go func() {
		_, st, err := Receive(context.Background(), b, sink, ropt)
		rc <- result{st, err}
	}()
	st, err := Send(context.Background(), a, src, sopt)
	return result{st, err}, <-rc
}

func TestTransferWhole(t *testing.T) {
	src := newMemSource(1, 5000)
	sink := newMemSink()
	var last Progress
	calls := 0
	s, r := transfer(t, src, sink, SendOptions{ChunkBytes: 4 << 10, ChunkRecords: 100, Window: 3, Progress: func(p Progress) {
		if p.Records <= last.Records || p.Total != src.h.Bytes {
			t.Errorf("progress %+v after %+v", p, last)
		}
		last = p
		calls++
	}}, ReceiveOptions{})
	if s.err != nil || r.err != nil {
		t.Fatalf("send: %v, receive: %v", s.err, r.err)
	}
	checkEqual(t, src, sink)
	if s.st.Records != 5000 || r.st.Records != 5000 || s.st.Chunks < 50 || uint64(calls) != s.st.Chunks {
		t.Fatalf("send stats %+v, receive stats %+v, %d progress calls", s.st, r.st, calls)
	}
}

// breakingConn passes frames until it has written limit chunk frames, then fails, as a
// connection that drops in the middle of a transfer.
type breakingConn struct {
	*PipeEnd
	limit, chunks int
}

func (c *breakingConn) WriteFrame(b []byte) error {
	if len(b) > 0 && b[0] == kindChunk {
		c.chunks++
		if c.chunks > c.limit {
			c.Close()
			return ErrClosed
		}
	}
	return c.PipeEnd.WriteFrame(b)
}

func TestResumeAfterBrokenConnection(t *testing.T) {
	src := newMemSource(2, 3000)
	sink := newMemSink()
	opt := SendOptions{ChunkRecords: 50, Window: 2}

	a, b := Pipe(16)
	rc := make(chan error, 1)
	go func() {
		_, _, err := Receive(context.Background(), b, sink, ReceiveOptions{})
		rc <- err
	}()
	_, err := Send(context.Background(), &breakingConn{PipeEnd: a, limit: 20}, src, opt)
	if err == nil {
		t.Fatal("send over a connection that breaks succeeded")
	}
	if rerr := <-rc; rerr == nil {
		t.Fatal("receive over a broken connection succeeded")
	}
	if sink.finished != nil || len(sink.recs) == 0 || len(sink.recs) >= len(src.recs) {
		t.Fatalf("after the break the sink holds %d of %d records (finished %v)", len(sink.recs), len(src.recs), sink.finished != nil)
	}
	held := len(sink.recs)

	s, r := transfer(t, src, sink, opt, ReceiveOptions{})
	if s.err != nil || r.err != nil {
		t.Fatalf("resumed send: %v, receive: %v", s.err, r.err)
	}
	if !s.st.Resumed || !r.st.Resumed || sink.wipes != 1 {
		t.Fatalf("second transfer resumed=%v/%v with %d wipes, want a resume and 1 wipe", s.st.Resumed, r.st.Resumed, sink.wipes)
	}
	if int(s.st.Records) != len(src.recs)-held {
		t.Fatalf("resumed transfer sent %d records, want the %d missing", s.st.Records, len(src.recs)-held)
	}
	checkEqual(t, src, sink)
}

func TestOtherSnapshotStartsOver(t *testing.T) {
	old := newMemSource(3, 500)
	sink := newMemSink()
	a, b := Pipe(16)
	go Receive(context.Background(), b, sink, ReceiveOptions{})
	Send(context.Background(), &breakingConn{PipeEnd: a, limit: 3}, old, SendOptions{ChunkRecords: 20, Window: 1})
	if len(sink.recs) == 0 {
		t.Fatal("nothing written before the break")
	}
	src := newMemSource(4, 400)
	s, r := transfer(t, src, sink, SendOptions{}, ReceiveOptions{})
	if s.err != nil || r.err != nil {
		t.Fatalf("send: %v, receive: %v", s.err, r.err)
	}
	if s.st.Resumed || sink.wipes != 2 {
		t.Fatalf("a different snapshot resumed=%v after %d wipes, want a fresh start", s.st.Resumed, sink.wipes)
	}
	checkEqual(t, src, sink) // nothing of the old snapshot survives
}

func TestRefusedOfferChangesNothing(t *testing.T) {
	src := newMemSource(5, 100)
	sink := newMemSink()
	s, r := transfer(t, src, sink, SendOptions{}, ReceiveOptions{Accept: func(h Header) error {
		return fmt.Errorf("epoch %d is below this copy's epoch 9", h.Epoch)
	}})
	var ae *AbortError
	if !errors.As(s.err, &ae) || ae.Code != AbortRefused || !ae.Remote {
		t.Fatalf("send error %v, want a remote refusal", s.err)
	}
	if !errors.As(r.err, &ae) || ae.Code != AbortRefused {
		t.Fatalf("receive error %v", r.err)
	}
	if sink.wipes != 0 || len(sink.recs) != 0 {
		t.Fatalf("refused offer wiped %d times", sink.wipes)
	}
}

func TestSilentPeerStalls(t *testing.T) {
	src := newMemSource(6, 100)
	a, b := Pipe(16)
	defer a.Close()
	_ = b // the copy never answers
	_, err := Send(context.Background(), a, src, SendOptions{StallTimeout: 20 * time.Millisecond})
	var ae *AbortError
	if !errors.Is(err, ErrStalled) || !errors.As(err, &ae) || ae.Code != AbortStalled || ae.Remote {
		t.Fatalf("send to a silent copy: %v, want a local stall", err)
	}

	c, d := Pipe(16)
	defer c.Close()
	c.WriteFrame(marshalOffer(nil, &src.h))
	_, _, err = Receive(context.Background(), d, newMemSink(), ReceiveOptions{StallTimeout: 20 * time.Millisecond})
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("receive from a silent main: %v, want a stall", err)
	}
}

func TestSinkFailureAbortsBothSides(t *testing.T) {
	src := newMemSource(7, 1000)
	sink := newMemSink()
	sink.failAt = 3
	s, r := transfer(t, src, sink, SendOptions{ChunkRecords: 10, Window: 2}, ReceiveOptions{})
	var ae *AbortError
	if !errors.As(r.err, &ae) || ae.Code != AbortStore {
		t.Fatalf("receive: %v, want a store abort", r.err)
	}
	if !errors.As(s.err, &ae) || ae.Code != AbortStore || !ae.Remote {
		t.Fatalf("send: %v, want the copy's store abort", s.err)
	}
	if sink.finished != nil {
		t.Fatal("a failed transfer was installed")
	}
}

func TestOutOfOrderChunkRefused(t *testing.T) {
	src := newMemSource(8, 10)
	sink := newMemSink()
	a, b := Pipe(16)
	defer a.Close()
	rc := make(chan error, 1)
	go func() {
		_, _, err := Receive(context.Background(), b, sink, ReceiveOptions{})
		rc <- err
	}()
	a.WriteFrame(marshalOffer(nil, &src.h))
	a.ReadFrame(time.Second)
	recs := []Record{src.recs[3], src.recs[1]}
	a.WriteFrame(marshalChunk(nil, &chunk{id: src.h.ID, n: 1, recs: recs}))
	err := <-rc
	var ae *AbortError
	if !errors.As(err, &ae) || ae.Code != AbortProtocol {
		t.Fatalf("receive of an unordered chunk: %v, want a protocol abort", err)
	}
	if len(sink.recs) != 0 {
		t.Fatalf("unordered chunk wrote %d records", len(sink.recs))
	}
}

// fakeClock advances only when the transfer sleeps.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	slept time.Duration
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.slept += d
	return nil
}

func TestRateLimitPacesChunks(t *testing.T) {
	src := newMemSource(9, 4000)
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	const rate = 100 << 10
	s, r := transfer(t, src, newMemSink(), SendOptions{Rate: rate, ChunkBytes: 8 << 10, Clock: clock, StallTimeout: time.Hour},
		ReceiveOptions{StallTimeout: time.Hour})
	if s.err != nil || r.err != nil {
		t.Fatalf("send: %v, receive: %v", s.err, r.err)
	}
	// A tenth of a second's worth may go at once; the rest is paced.
	want := time.Duration(float64(s.st.Bytes-rate/10) / rate * float64(time.Second))
	if clock.slept < want-time.Millisecond || clock.slept > want+200*time.Millisecond {
		t.Fatalf("sent %d bytes at %d B/s with %v of pacing, want about %v", s.st.Bytes, rate, clock.slept, want)
	}
}

func TestFramesRoundTrip(t *testing.T) {
	src := newMemSource(10, 30)
	frames := [][]byte{
		marshalOffer(nil, &src.h),
		marshalResume(nil, &resume{id: 5, after: Position("\x02key")}),
		marshalChunk(nil, &chunk{id: 5, n: 2, recs: src.recs}),
		marshalChunkAck(nil, &chunkAck{id: 5, n: 2}),
		marshalDone(nil, &doneFrame{id: 5, records: 30, bytes: 999}),
		marshalDoneAck(nil, &doneAck{id: 5}),
		marshalAbort(nil, &AbortError{Code: AbortStalled, Msg: "x"}),
	}
	for _, f := range frames {
		v, err := decodeFrame(f)
		if err != nil {
			t.Fatalf("decode %q frame: %v", f[0], err)
		}
		if o, ok := v.(*offer); ok && (o.h.ID != src.h.ID || len(o.h.History) != 2 || o.h.Bytes != src.h.Bytes) {
			t.Fatalf("offer decoded as %+v", o.h)
		}
		if c, ok := v.(*chunk); ok && (len(c.recs) != 30 || !bytes.Equal(c.recs[29].Value, src.recs[29].Value)) {
			t.Fatalf("chunk decoded with %d records", len(c.recs))
		}
		for cut := 0; cut < len(f); cut++ {
			if _, err := decodeFrame(f[:cut]); err == nil && cut > 0 {
				t.Fatalf("%q frame cut to %d of %d bytes decoded", f[0], cut, len(f))
			}
		}
	}
}

func FuzzDecodeFrame(f *testing.F) {
	src := newMemSource(11, 5)
	f.Add(marshalOffer(nil, &src.h))
	f.Add(marshalChunk(nil, &chunk{id: 1, n: 1, recs: src.recs}))
	f.Add(marshalAbort(nil, &AbortError{Code: "c", Msg: "m"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeFrame(b)
		if err != nil {
			return
		}
		var again []byte
		switch v := v.(type) {
		case *offer:
			again = marshalOffer(nil, &v.h)
		case *chunk:
			again = marshalChunk(nil, v)
		default:
			return
		}
		if _, err := decodeFrame(again); err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
	})
}
