package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// writer updates one resource of its own in a closed loop, recording every operation in
// the history, and remembers the last acknowledged value so lost writes can be counted.
type writer struct {
	id      int
	cl      *client.Client
	rid     string
	h       *History
	n       int // next value
	acked   atomic.Int64
	ackedV  atomic.Uint64
	ok      atomic.Int64
	failed  atomic.Int64
	unknown atomic.Int64
	codes   sync.Map // code -> *atomic.Int64
	// keyed: every update carries an idempotency key and is retried (DoRetry) until it is
	// acknowledged or opTimeout passes, as a client riding out a failover does.
	keyed     bool
	opTimeout time.Duration
	// pace, when set, is a think time after each acknowledged write (a client that does
	// other work between writes).
	pace      time.Duration
	mu        sync.Mutex
	ackTimes  []int64  // history times of acknowledgements
	ackCalls  []int64  // history times the acknowledged writes were sent
	ackEpochs []uint64 // the epoch each acknowledged write names
	ackDup    []bool   // whether the acknowledgement was a duplicate answer (first result)
}

func newWriter(t testing.TB, id int, cl *client.Client, group command.ServerID, h *History) *writer {
	w := &writer{id: id, cl: cl, h: h}
	w.acked.Store(-1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		call := h.Now()
		r, err := cl.Create(ctx, "counter", json.RawMessage(`"init"`), client.WithServer(group), client.WithKey(fmt.Sprintf("w%d-create", id)))
		if err == nil {
			w.rid = r.Resource.ID
			h.Write(id, w.rid, `"init"`, call, r.Resource.Version, false)
			return w
		}
		if ctx.Err() != nil {
			t.Fatalf("writer %d: create: %v", id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// step makes one update; it returns the error code ("" on success).
func (w *writer) step(ctx context.Context) command.Code {
	v := w.n
	w.n++
	val := strconv.Quote("v" + strconv.Itoa(v))
	call := w.h.Now()
	var r *command.Reply
	var err error
	if w.keyed {
		octx, cancel := context.WithTimeout(ctx, w.opTimeout)
		r, err = w.cl.DoRetry(octx, &command.Request{Op: command.OpUpdate, RID: w.rid, Data: json.RawMessage(val),
			Key: fmt.Sprintf("w%d-%d", w.id, v)})
		cancel()
	} else {
		r, err = w.cl.Update(ctx, w.rid, json.RawMessage(val))
	}
	if err == nil {
		w.h.Write(w.id, w.rid, val, call, r.Resource.Version, false)
		w.mu.Lock()
		w.ackTimes = append(w.ackTimes, w.h.Now())
		w.ackCalls = append(w.ackCalls, call)
		w.ackEpochs = append(w.ackEpochs, r.Epoch)
		w.ackDup = append(w.ackDup, r.Duplicate)
		w.mu.Unlock()
		w.acked.Store(int64(v))
		w.ackedV.Store(r.Resource.Version)
		w.ok.Add(1)
		return ""
	}
	code := command.CodeOf(err)
	if ctx.Err() != nil {
		// Cut off by the scenario stopping its writers: the outcome is unknown, and it is
		// not a failure of the cluster.
		w.h.Write(w.id, w.rid, val, call, 0, true)
		return "stopped"
	}
	if code.OutcomeUnknown() {
		w.h.Write(w.id, w.rid, val, call, 0, true)
		w.unknown.Add(1)
	} else {
		w.failed.Add(1)
	}
	c, _ := w.codes.LoadOrStore(code, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
	return code
}

// failures describes the writer's failed writes by code.
func (w *writer) failures() string {
	out := ""
	w.codes.Range(func(k, v any) bool {
		out += fmt.Sprintf(" %s=%d", k, v.(*atomic.Int64).Load())
		return true
	})
	return out
}

// run steps until ctx ends.
func (w *writer) run(ctx context.Context) {
	for ctx.Err() == nil {
		if w.step(ctx) != "" {
			time.Sleep(10 * time.Millisecond) // pace retries after a failure; not synchronisation
		} else if w.pace > 0 {
			time.Sleep(w.pace) // think time; not synchronisation
		}
	}
}

// lostWrites reads the resource (linearizable, through cl) and returns 1 if the last
// acknowledged version is missing from it, else 0. The read goes into the history too.
func (w *writer) lostWrites(t testing.TB, cl *client.Client) int {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		call := w.h.Now()
		r, err := cl.Get(ctx, w.rid, command.Linearizable)
		if err == nil {
			w.h.Read(w.id, w.rid, call, string(r.Resource.Data), r.Resource.Version, true)
			if r.Resource.Version < w.ackedV.Load() {
				t.Errorf("writer %d: %s at version %d, but version %d was acknowledged", w.id, w.rid, r.Resource.Version, w.ackedV.Load())
				return 1
			}
			return 0
		}
		if ctx.Err() != nil {
			t.Fatalf("writer %d: final read: %v", w.id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// longestGap returns the longest time between consecutive acknowledgements of any of the
// writers, within [from, to] of the history clock.
func longestGap(ws []*writer, from, to int64) time.Duration {
	var ts []int64
	for _, w := range ws {
		w.mu.Lock()
		for _, t := range w.ackTimes {
			if t >= from && t <= to {
				ts = append(ts, t)
			}
		}
		w.mu.Unlock()
	}
	slices.Sort(ts)
	var gap int64
	for i := 1; i < len(ts); i++ {
		gap = max(gap, ts[i]-ts[i-1])
	}
	return time.Duration(gap)
}
