package scenarios

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// eventWrite is an acknowledged write as the events must show it.
type eventWrite struct {
	rid          string
	epoch, seq   uint64
	version      uint64
	kind         string
	acknowledged time.Time
}

// eventWriters are keyed writers on one group: each creates resources and updates them,
// retrying every write with its key until it is acknowledged (a retry answers the first
// result, so each write is recorded once, with the position it took).
type eventWriters struct {
	pace   time.Duration // think time after each acknowledged write
	mu     sync.Mutex
	writes []eventWrite
	acked  atomic.Int64
	failed atomic.Int64
}

func (ew *eventWriters) run(ctx context.Context, id int, cl *client.Client, g command.ServerID, limit int64) {
	var rids []string
	for i := 0; ctx.Err() == nil && ew.acked.Load() < limit; i++ {
		key := client.WithKey(fmt.Sprintf("ev-w%d-%d", id, i))
		data := json.RawMessage(strconv.Itoa(i))
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		var rep *command.Reply
		var err error
		kind := "updated"
		if len(rids) < 3 || i%50 == 0 {
			kind = "created"
			rep, err = cl.Create(wctx, "job", data, client.WithServer(g), key)
		} else {
			rep, err = cl.Update(wctx, rids[i%len(rids)], data, key)
		}
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				ew.failed.Add(1) // outcome unknown (or refused): not counted as acknowledged
			}
			continue
		}
		if kind == "created" {
			rids = append(rids, rep.Resource.ID)
		}
		ew.mu.Lock()
		ew.writes = append(ew.writes, eventWrite{rid: rep.Resource.ID, epoch: rep.Epoch, seq: rep.Seq,
			version: rep.Resource.Version, kind: kind, acknowledged: time.Now()})
		ew.mu.Unlock()
		ew.acked.Add(1)
		if ew.pace > 0 {
			time.Sleep(ew.pace) // think time; not synchronisation
		}
	}
}

// eventLog collects a subscription's events.
type eventLog struct {
	mu     sync.Mutex
	events []client.Event
}

func (l *eventLog) consume(sub *client.Subscription, done chan<- struct{}) {
	defer close(done)
	for ev := range sub.Events() {
		l.mu.Lock()
		l.events = append(l.events, ev)
		l.mu.Unlock()
	}
}

func (l *eventLog) maxSeq() (uint64, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.events) == 0 {
		return 0, 0
	}
	return l.events[len(l.events)-1].Seq, len(l.events)
}

// TestEventsAcrossMainCrash: a subscriber on a node that is not the main of group 1; 4
// clients make 2,000 acknowledged writes to the group; the main is killed with kill -9
// midway and a sibling is promoted; later the subscriber moves to another node with its
// last token. Its events must hold every acknowledged write exactly once, in seq order,
// and nothing else but writes that committed without an answer (versions then still grow
// by one per event).
func TestEventsAcrossMainCrash(t *testing.T) {
	const total = 2000
	c := StartCluster(t, Options{Nodes: 4})
	sg := c.WaitVoting(1, 3)
	main := int(*sg.Main)
	var others []int
	for id := 1; id <= 4; id++ {
		if id != main {
			others = append(others, id)
		}
	}
	watchAt, moveTo := others[0], others[1]

	log := &eventLog{}
	subClient := c.Client(watchAt)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sub, err := subClient.Subscribe(ctx, client.Filter{Server: 1}, "")
	if err != nil {
		t.Fatalf("subscribe at node %d: %v", watchAt, err)
	}
	consumed := make(chan struct{})
	go log.consume(sub, consumed)
	// A second subscriber is on the main itself: the Go client resumes it by itself, on
	// the next node, when the main is killed.
	onMain := &eventLog{}
	subMain, err := c.Client(main, watchAt).Subscribe(ctx, client.Filter{Server: 1}, "")
	if err != nil {
		t.Fatalf("subscribe at node %d: %v", main, err)
	}
	consumedMain := make(chan struct{})
	go onMain.consume(subMain, consumedMain)
	// And `sibyl watch`, on the main first too, printing one event per line.
	watchLog, stopWatch := startWatch(t, c.Node(main).HTTP+","+c.Node(watchAt).HTTP)

	ew := &eventWriters{}
	var wg sync.WaitGroup
	wctx, stopWriters := context.WithCancel(ctx)
	for i := 0; i < 4; i++ {
		order := []int{1 + i%4}
		for id := 1; id <= 4; id++ {
			if id != order[0] {
				order = append(order, id)
			}
		}
		cl := c.Client(order...)
		wg.Add(1)
		go func() { defer wg.Done(); ew.run(wctx, i, cl, 1, total) }()
	}
	progress := func(n int64) func() bool { return func() bool { return ew.acked.Load() >= n } }
	waitFor(t, 60*time.Second, "800 acknowledged writes", progress(800))
	c.Kill(c.Node(main))
	killed := time.Now()
	waitFor(t, 60*time.Second, "1,400 acknowledged writes", progress(1400))

	// Move the subscriber: close it, and continue from its last token on another node.
	sub.Close()
	<-consumed
	tok := sub.Token()
	moved := c.Client(moveTo)
	sub2, err := moved.Subscribe(ctx, client.Filter{Server: 1}, tok)
	if err != nil {
		t.Fatalf("resume at node %d from %q: %v", moveTo, tok, err)
	}
	_, firstPart := log.maxSeq()
	consumed = make(chan struct{})
	go log.consume(sub2, consumed)

	waitFor(t, 90*time.Second, "2,000 acknowledged writes", progress(total))
	stopWriters()
	wg.Wait()
	ew.mu.Lock()
	writes := append([]eventWrite(nil), ew.writes...)
	ew.mu.Unlock()
	var last uint64
	for _, w := range writes {
		last = max(last, w.seq)
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("events up to seq %d", last), func() bool {
		s, _ := log.maxSeq()
		s2, _ := onMain.maxSeq()
		s3, _ := watchLog.maxSeq()
		return s >= last && s2 >= last && s3 >= last
	})
	stopWatch()
	if m, d, r, _ := checkEvents(t, watchLog.events, writes); m+d+r > 0 {
		t.Errorf("sibyl watch: missing %d, duplicated %d, reordered %d", m, d, r)
	}
	sub2.Close()
	<-consumed
	subMain.Close()
	<-consumedMain
	if m, d, r, _ := checkEvents(t, onMain.events, writes); m+d+r > 0 {
		t.Errorf("subscriber on the killed main: missing %d, duplicated %d, reordered %d", m, d, r)
	}

	missing, duplicated, reordered, unacked := checkEvents(t, log.events, writes)
	epochs := map[uint64]int{}
	for _, ev := range log.events {
		epochs[ev.Epoch]++
	}
	if len(epochs) < 2 {
		t.Errorf("events name epochs %v: the kill of the main should have started a new one", epochs)
	}
	var firstAfterKill time.Duration
	for _, w := range writes {
		if w.acknowledged.After(killed) {
			if d := w.acknowledged.Sub(killed); firstAfterKill == 0 || d < firstAfterKill {
				firstAfterKill = d
			}
		}
	}
	t.Logf("main %d killed (first write acknowledged %v later); subscriber on node %d, then node %d from event %d; "+
		"acknowledged writes %d, failed or unknown %d; events %d by epoch %v (%d of writes committed without an answer): "+
		"missing %d, duplicated %d, reordered %d; the subscriber and `sibyl watch` on the killed main resumed by "+
		"themselves: %d and %d events, all checked",
		main, firstAfterKill.Round(time.Millisecond), watchAt, moveTo, firstPart, len(writes), ew.failed.Load(),
		len(log.events), epochs, unacked, missing, duplicated, reordered, len(onMain.events), len(watchLog.events))
	if missing+duplicated+reordered > 0 {
		t.Fatalf("events do not match the acknowledged writes: missing %d, duplicated %d, reordered %d", missing, duplicated, reordered)
	}
}

// startWatch runs `sibyl watch --server 1` at addrs and collects the events it prints.
func startWatch(t *testing.T, addrs string) (*eventLog, func()) {
	cmd := exec.Command(sibylBin, "watch", "--server", "1", "--addr", addrs)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sibyl watch: %v", err)
	}
	// Writes start only once it is subscribed: events before its start are not its own.
	waitFor(t, 20*time.Second, "sibyl watch to subscribe", func() bool { return strings.Contains(stderr.String(), "subscribed at") })
	l := &eventLog{}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev client.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("sibyl watch printed %q: %v", sc.Text(), err)
				continue
			}
			ev.Raw = append(json.RawMessage(nil), sc.Bytes()...)
			l.mu.Lock()
			l.events = append(l.events, ev)
			l.mu.Unlock()
		}
	}()
	return l, func() {
		_ = cmd.Process.Signal(os.Interrupt)
		<-read
		if err := cmd.Wait(); err != nil {
			t.Errorf("sibyl watch: %v\n%s", err, stderr.String())
		}
	}
}

// lockedBuffer is a child's stderr, read while it writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// checkEvents compares events with acknowledged writes. unacked counts events of writes
// that committed without their client learning it; they must still keep every resource's
// versions growing by one.
func checkEvents(t *testing.T, events []client.Event, writes []eventWrite) (missing, duplicated, reordered, unacked int) {
	t.Helper()
	type pos struct{ epoch, seq uint64 }
	seen := map[pos]client.Event{}
	version := map[string]uint64{}
	fence := map[string]uint64{}
	var prev uint64
	for _, ev := range events {
		if ev.Kind != "created" && ev.Kind != "updated" && ev.Kind != "deleted" && ev.Kind != "ticket" {
			t.Errorf("unexpected %s event: %s", ev.Kind, ev.Raw)
			continue
		}
		p := pos{ev.Epoch, ev.Seq}
		if _, dup := seen[p]; dup {
			duplicated++
			t.Errorf("event at %v twice", p)
			continue
		}
		seen[p] = ev
		if ev.Seq <= prev {
			reordered++
			t.Errorf("event at seq %d after seq %d", ev.Seq, prev)
		}
		prev = max(prev, ev.Seq)
		if ev.Kind == "ticket" {
			// A ticket event leaves the version alone; a granted fence is above every
			// earlier one of its resource (a renewal repeats the live one).
			if ev.Ticket != nil {
				if ev.Ticket.Fence < fence[ev.RID] {
					t.Errorf("%s: ticket event at %v grants fence %d after fence %d", ev.RID, p, ev.Ticket.Fence, fence[ev.RID])
				}
				fence[ev.RID] = ev.Ticket.Fence
			}
			continue
		}
		v := ev.Version
		if ev.Resource != nil {
			v = ev.Resource.Version
		}
		if v != version[ev.RID]+1 {
			t.Errorf("%s: event at %v has version %d after version %d", ev.RID, p, v, version[ev.RID])
		}
		version[ev.RID] = v
	}
	acked := map[pos]bool{}
	for _, w := range writes {
		p := pos{w.epoch, w.seq}
		acked[p] = true
		ev, ok := seen[p]
		switch {
		case !ok:
			missing++
			t.Errorf("acknowledged %s of %s at %v has no event", w.kind, w.rid, p)
		case ev.RID != w.rid || ev.Kind != w.kind:
			t.Errorf("acknowledged %s of %s at %v, but the event there is %s of %s", w.kind, w.rid, p, ev.Kind, ev.RID)
		}
	}
	for p := range seen {
		if !acked[p] {
			unacked++
		}
	}
	return missing, duplicated, reordered, unacked
}
