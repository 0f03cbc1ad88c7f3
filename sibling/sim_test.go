package sibling

import (
	"fmt"
	"math/rand"
	"testing"
)

// simCopy is one sibling in the simulation: a Follower over a MemLog.
type simCopy struct {
	id  uint16
	f   *Follower
	log *MemLog
}

func newSimCopy(group, id uint16) *simCopy {
	l := NewMemLog()
	return &simCopy{id: id, log: l, f: NewFollower(FollowerState{Group: group, Self: id, Epoch: 1, Log: l})}
}

// apply makes a step durable in the copy's log, as the node does with its store.
func (c *simCopy) apply(t *testing.T, s Step) {
	t.Helper()
	if s.Violation != nil {
		t.Fatalf("copy %d: %v", c.id, s.Violation)
	}
	if s.Truncate > 0 {
		c.log.Truncate(s.Truncate)
	}
	if err := c.log.Append(s.Append...); err != nil {
		t.Fatalf("copy %d: %v", c.id, err)
	}
}

type simMsg struct {
	to  uint16
	app *Append
	ack *Ack
}

// simNet delivers messages in a seeded random order, dropping and duplicating some.
type simNet struct {
	rng       *rand.Rand
	q         []simMsg
	drop, dup float64
}

func (n *simNet) send(m simMsg) {
	if n.rng.Float64() < n.drop {
		return
	}
	n.q = append(n.q, m)
	if n.rng.Float64() < n.dup {
		n.q = append(n.q, m)
	}
}

func (n *simNet) next() (simMsg, bool) {
	if len(n.q) == 0 {
		return simMsg{}, false
	}
	i := n.rng.Intn(len(n.q))
	m := n.q[i]
	n.q[i] = n.q[len(n.q)-1]
	n.q = n.q[:len(n.q)-1]
	return m, true
}

func always(uint64, uint16) bool { return true }

// TestSimulatedReplication runs seeded schedules of one main and three siblings over a lossy,
// duplicating, reordering network, and checks after each that the commit point only counts
// entries a majority holds, logs match, and everyone converges once the network is quiet.
func TestSimulatedReplication(t *testing.T) {
	for seed := int64(1); seed <= 200; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runSim(t, seed) })
	}
}

func runSim(t *testing.T, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	const group, self = 9, 1
	mlog := NewMemLog()
	copies := map[uint16]*simCopy{2: newSimCopy(group, 2), 3: newSimCopy(group, 3), 4: newSimCopy(group, 4)}
	m := NewMain(MainConfig{Group: group, Self: self, Epoch: 1, EpochFirst: 1, History: []EpochStart{{1, 1}},
		Quorum: Quorum{Version: 1, Sets: [][]uint16{{2, 3, 4}}}, Log: mlog, MaxBytes: 64, Window: 3})
	net := &simNet{rng: rng, drop: 0.1, dup: 0.05}
	lastCommit := uint64(0)
	pump := func() {
		for _, id := range []uint16{2, 3, 4} {
			for {
				a, err := m.NextAppend(id)
				if err != nil {
					t.Fatal(err)
				}
				if a == nil {
					break
				}
				net.send(simMsg{to: id, app: a})
			}
		}
	}
	for step := 0; step < 400; step++ {
		switch r := rng.Intn(10); {
		case r < 3: // propose a few entries
			for i := rng.Intn(4); i >= 0; i-- {
				e, s := m.Assign()
				_ = mlog.Append(Entry{Epoch: e, Seq: s, Data: []byte(fmt.Sprint(s))})
			}
			if rng.Intn(2) == 0 {
				m.Persisted(m.LastSeq())
			}
			pump()
		case r < 4: // heartbeat everyone
			for _, id := range []uint16{2, 3, 4} {
				net.send(simMsg{to: id, app: m.Heartbeat(id)})
			}
		default:
			msg, ok := net.next()
			if !ok {
				continue
			}
			if msg.app != nil {
				c := copies[msg.to]
				st := c.f.Step(msg.app, always)
				c.apply(t, st)
				net.send(simMsg{to: self, ack: &st.Ack})
			} else {
				m.HandleAck(*msg.ack)
				pump()
			}
		}
		checkSim(t, m, mlog, copies, &lastCommit)
	}
	// Quiesce: no loss, everything delivered, heartbeats until all caught up.
	m.Persisted(m.LastSeq())
	net.drop, net.dup = 0, 0
	for round := 0; round < 200; round++ {
		for _, id := range []uint16{2, 3, 4} {
			net.send(simMsg{to: id, app: m.Heartbeat(id)})
		}
		pump()
		for msg, ok := net.next(); ok; msg, ok = net.next() {
			if msg.app != nil {
				c := copies[msg.to]
				st := c.f.Step(msg.app, always)
				c.apply(t, st)
				net.send(simMsg{to: self, ack: &st.Ack})
			} else {
				m.HandleAck(*msg.ack)
				pump()
			}
		}
	}
	checkSim(t, m, mlog, copies, &lastCommit)
	if m.Commit() != m.LastSeq() {
		t.Fatalf("seed %d: commit %d after quiescence, last seq %d", 0, m.Commit(), m.LastSeq())
	}
	for id, c := range copies {
		if c.log.Last() != mlog.Last() || c.f.Commit() != m.Commit() {
			t.Fatalf("copy %d: last %d commit %d; main last %d commit %d", id, c.log.Last(), c.f.Commit(), mlog.Last(), m.Commit())
		}
	}
}

func checkSim(t *testing.T, m *Main, mlog *MemLog, copies map[uint16]*simCopy, lastCommit *uint64) {
	t.Helper()
	c := m.Commit()
	if c < *lastCommit {
		t.Fatalf("main commit went back from %d to %d", *lastCommit, c)
	}
	*lastCommit = c
	holders := 0
	for id, cp := range copies {
		if cp.log.Last() >= c {
			holders++
		}
		// Log matching: every entry a copy holds equals the main's.
		for s := uint64(1); s <= cp.log.Last(); s++ {
			ce, _ := cp.log.EpochAt(s)
			me, ok := mlog.EpochAt(s)
			if !ok || ce != me {
				t.Fatalf("copy %d seq %d epoch %d, main has %d (%v)", id, s, ce, me, ok)
			}
		}
		if cp.f.Commit() > c || cp.f.Commit() > cp.log.Last() {
			t.Fatalf("copy %d commit %d beyond main commit %d or its log %d", id, cp.f.Commit(), c, cp.log.Last())
		}
	}
	if c > 0 && holders < 2 {
		t.Fatalf("commit %d held by %d siblings, want a majority of 3", c, holders)
	}
}
