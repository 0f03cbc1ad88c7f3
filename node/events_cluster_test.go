package node

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// collector is a client connection's event side in these tests: a session with an Outbox
// and a writer goroutine that pulls frames when woken, as the API server's writer does.
type collector struct {
	t    *testing.T
	s    *Session
	wake wakeChan
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	frames map[string][]frame
}

func newCollector(t *testing.T, n *Node) *collector {
	c := &collector{t: t, wake: make(wakeChan, 1), stop: make(chan struct{}), done: make(chan struct{}),
		frames: map[string][]frame{}}
	c.s = n.NewEventSession(c.wake)
	go c.run()
	t.Cleanup(c.close)
	return c
}

func (c *collector) run() {
	defer close(c.done)
	var buf []json.RawMessage
	for {
		select {
		case <-c.wake:
		case <-c.stop:
			return
		}
		for {
			buf = c.s.Events(buf[:0], 64)
			fs := decodeFrames(c.t, buf)
			c.mu.Lock()
			for _, f := range fs {
				c.frames[f.Sub] = append(c.frames[f.Sub], f)
			}
			c.mu.Unlock()
			if len(buf) < 64 {
				break
			}
		}
	}
}

func (c *collector) close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	<-c.done
	c.s.Close()
}

// subscribe opens subscription id with req's filter and returns the reply token.
func (c *collector) subscribe(id string, req command.Request) string {
	c.t.Helper()
	req.Op, req.Sub = command.OpSubscribe, id
	var rep *command.Reply
	waitUntil(c.t, 10*time.Second, "subscribe "+id, func() bool {
		r, err := do(c.t, c.s, req)
		if command.CodeOf(err) == command.CodeUnavailable {
			return false // the node has not joined yet
		}
		if err != nil {
			c.t.Fatalf("subscribe %s: %v", id, err)
		}
		rep = r
		return true
	})
	c.s.Subscribed(id)
	return rep.Token
}

func (c *collector) events(sub string) []frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]frame(nil), c.frames[sub]...)
}

// waitSeq waits until subscription sub has an event at or past seq in group g, or a
// final resync page whose position is at or past it.
func (c *collector) waitSeq(sub string, g command.ServerID, seq uint64) []frame {
	c.t.Helper()
	var fs []frame
	waitUntil(c.t, 20*time.Second, fmt.Sprintf("%s to reach seq %d of group %d", sub, seq, g), func() bool {
		fs = c.events(sub)
		for i := len(fs) - 1; i >= 0; i-- {
			if g2, _ := command.GroupOf(fs[i].RID); g2 == g && fs[i].Seq >= seq {
				return true
			}
			// A resync page at or past seq covers it: its set is the state there, and
			// no event up to seq follows it.
			if fs[i].Event == "resync" && fs[i].Final {
				if tok, err := decodeToken(fs[i].Token); err == nil && tok.posOf(g).Seq >= seq {
					return true
				}
			}
		}
		return false
	})
	return fs
}

// acked is an acknowledged write.
type acked struct {
	rid     string
	seq     uint64
	epoch   uint64
	version uint64
	kind    string
}

// writeLoad makes n writes of type typ into group g through the given sessions, in
// turn: creates, then updates and some deletes of the resources made, with a seeded
// choice. It returns the acknowledged writes in seq order.
func writeLoad(t *testing.T, seed int64, g command.ServerID, typ string, n int, via ...*Session) []acked {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	var out []acked
	var live []string
	versions := map[string]uint64{}
	for i := 0; i < n; i++ {
		s := via[i%len(via)]
		var req command.Request
		switch {
		case len(live) < 3 || rng.Intn(5) == 0:
			req = command.Request{Op: command.OpCreate, Type: typ, Data: json.RawMessage(strconv.Itoa(i)), Server: i64(int64(g))}
		case rng.Intn(8) == 0:
			j := rng.Intn(len(live))
			req = command.Request{Op: command.OpDelete, RID: live[j]}
			live = append(live[:j], live[j+1:]...)
		default:
			req = command.Request{Op: command.OpUpdate, RID: live[rng.Intn(len(live))], Data: json.RawMessage(strconv.Itoa(i))}
		}
		// A key makes a retry after an unknown outcome safe: it answers the first result.
		req.Key = fmt.Sprintf("%s-%d-%d-%d", t.Name(), seed, g, i)
		var rep *command.Reply
		waitUntil(t, 10*time.Second, "write "+strconv.Itoa(i), func() bool {
			r, err := do(t, s, req)
			if err != nil && !command.CodeOf(err).Retryable() {
				t.Fatalf("write %d (%s): %v", i, req.Op, err)
			}
			rep = r
			return err == nil
		})
		a := acked{seq: rep.Seq, epoch: rep.Epoch, rid: req.RID}
		switch req.Op {
		case command.OpCreate:
			a.rid, a.version, a.kind = rep.Resource.ID, 1, "created"
			live = append(live, a.rid)
		case command.OpDelete:
			a.version, a.kind = versions[a.rid]+1, "deleted"
		default:
			a.version, a.kind = rep.Resource.Version, "updated"
		}
		versions[a.rid] = a.version
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// checkOneToOne: the events of one group are exactly the acknowledged writes, in seq
// order, each once, with the write's rid, kind and version.
func checkOneToOne(t *testing.T, what string, events []frame, writes []acked) {
	t.Helper()
	if len(events) != len(writes) {
		for i, e := range events {
			t.Logf("event %d: %s %s (%d,%d)", i, e.Event, e.RID, e.Epoch, e.Seq)
		}
		for i, w := range writes {
			t.Logf("write %d: %s %s (%d,%d)", i, w.kind, w.rid, w.epoch, w.seq)
		}
		t.Fatalf("%s: %d events for %d acknowledged writes", what, len(events), len(writes))
	}
	for i, e := range events {
		w := writes[i]
		v := e.Version
		if e.Resource != nil {
			v = e.Resource.Version
		}
		if e.Seq != w.seq || e.Epoch != w.epoch || e.RID != w.rid || e.Event != w.kind || v != w.version {
			t.Fatalf("%s: event %d is %s %s v%d at (%d,%d); write %d was %s %s v%d at (%d,%d)", what, i,
				e.Event, e.RID, v, e.Epoch, e.Seq, i, w.kind, w.rid, w.version, w.epoch, w.seq)
		}
	}
}

func groupEvents(events []frame, g command.ServerID) []frame {
	var out []frame
	for _, e := range events {
		if eg, _ := command.GroupOf(e.RID); eg == g {
			out = append(out, e)
		}
	}
	return out
}

// Events on a sibling match the committed writes one to one, whether written at the main
// or forwarded to it.
func TestEventsOnSiblingMatchWrites(t *testing.T) {
	_, nodes := testCluster(t)
	c := newCollector(t, nodes[2].n) // node 3: a sibling of group 1
	c.subscribe("all", command.Request{Server: i64(1)})
	s1, s2 := nodes[0].n.NewSession(), nodes[1].n.NewSession()
	defer s1.Close()
	defer s2.Close()
	writes := writeLoad(t, 1, 1, "job", 300, s1, s2)
	events := c.waitSeq("all", 1, writes[len(writes)-1].seq)
	checkOneToOne(t, "server subscription on a sibling", events, writes)
}

// A token from one node continues on another without gap or repeat: on a sibling, on the
// main, and for a group neither holds (served through a feed from its main).
func TestEventsResumeOnAnotherNode(t *testing.T) {
	_, nodes := testCluster(t)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	for _, tc := range []struct {
		name        string
		group       command.ServerID
		first, then int // nodes (index) subscribed at
	}{
		{"sibling to main", 1, 1, 0},
		{"main to sibling", 1, 0, 3},
		{"through feeds", 2, 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newCollector(t, nodes[tc.first].n)
			a.subscribe("a", command.Request{Server: i64(int64(tc.group))})
			writes := writeLoad(t, int64(tc.group)*7, tc.group, "job", 60, s1)
			evs := a.waitSeq("a", tc.group, writes[len(writes)-1].seq)
			a.close()
			cut := evs[29]
			b := newCollector(t, nodes[tc.then].n)
			from, _ := json.Marshal(cut.Token)
			b.subscribe("b", command.Request{Server: i64(int64(tc.group)), From: from})
			more := writeLoad(t, int64(tc.group)*11, tc.group, "job", 40, s1)
			all := append(writes, more...)
			rest := b.waitSeq("b", tc.group, all[len(all)-1].seq)
			checkOneToOne(t, tc.name, append(evs[:30:30], rest...), all)
		})
	}
}

// A type subscription spans groups (one held here, three through feeds): per group, its
// events are that group's writes of the type in order; a resume from any of its tokens on
// another node continues in every group right after.
func TestEventsTypeAcrossGroups(t *testing.T) {
	_, nodes := testCluster(t)
	c := newCollector(t, nodes[0].n)
	c.subscribe("jobs", command.Request{Type: "job"})
	var sessions []*Session
	for _, tn := range nodes {
		s := tn.n.NewSession()
		defer s.Close()
		sessions = append(sessions, s)
	}
	writes := map[command.ServerID][]acked{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for g := command.ServerID(1); g <= 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := writeLoad(t, int64(g), g, "job", 40, sessions[g-1])
			writeLoad(t, int64(g)+100, g, "other", 10, sessions[g-1])
			mu.Lock()
			writes[g] = w
			mu.Unlock()
		}()
	}
	wg.Wait()
	var events []frame
	for g := command.ServerID(1); g <= 4; g++ {
		events = c.waitSeq("jobs", g, writes[g][len(writes[g])-1].seq)
	}
	for g := command.ServerID(1); g <= 4; g++ {
		checkOneToOne(t, fmt.Sprintf("type subscription, group %d", g), groupEvents(events, g), writes[g])
	}
	// Resume on node 3 from the token of the middle event.
	mid := len(events) / 2
	d := newCollector(t, nodes[2].n)
	from, _ := json.Marshal(events[mid].Token)
	d.subscribe("rest", command.Request{Type: "job", From: from})
	for g := command.ServerID(1); g <= 4; g++ {
		// A group whose events all came before the token has none after it.
		if before := groupEvents(events[:mid+1], g); len(before) < len(writes[g]) {
			d.waitSeq("rest", g, writes[g][len(writes[g])-1].seq)
		}
	}
	got := d.events("rest")
	for g := command.ServerID(1); g <= 4; g++ {
		checkOneToOne(t, fmt.Sprintf("resumed type subscription, group %d", g),
			append(groupEvents(events[:mid+1], g), groupEvents(got, g)...), writes[g])
	}
}

// A token whose entry this copy holds with another epoch (a truncated entry, in the
// failure docs/replication.md case 11 describes) gets a resync of the group's current state,
// then live events.
func TestEventsResyncOnEpochMismatch(t *testing.T) {
	_, nodes := testCluster(t)
	s1 := nodes[0].n.NewSession()
	defer s1.Close()
	writes := writeLoad(t, 5, 1, "job", 30, s1)
	f := filter{kind: filterServer, group: 1}
	forged := encodeToken(token{Kind: filterServer, Hash: f.hash(),
		Groups: []groupPos{{Group: 1, Pos: position{Epoch: 9, Seq: writes[10].seq}}}})
	c := newCollector(t, nodes[3].n)
	from, _ := json.Marshal(forged)
	c.subscribe("r", command.Request{Server: i64(1), From: from})
	more := writeLoad(t, 6, 1, "job", 5, s1)
	all := append(writes, more...)
	fs := c.waitSeq("r", 1, all[len(all)-1].seq)
	if fs[0].Event != "resync" || !fs[0].Final || fs[0].Server != 1 {
		t.Fatalf("first frame %+v, want one final resync page of group 1", fs[0])
	}
	tok, err := decodeToken(fs[0].Token)
	if err != nil {
		t.Fatal(err)
	}
	at := tok.posOf(1)
	// The set is the state at its token's position; the events continue right after it.
	live := map[string]bool{}
	var after []acked
	for _, w := range all {
		if w.seq <= at.Seq {
			live[w.rid] = w.kind != "deleted"
		} else {
			after = append(after, w)
		}
	}
	n := 0
	for _, ok := range live {
		if ok {
			n++
		}
	}
	if len(fs[0].Res) != n {
		t.Fatalf("resync at %v holds %d resources, the group had %d", at, len(fs[0].Res), n)
	}
	checkOneToOne(t, "after resync", fs[1:], after)
}
