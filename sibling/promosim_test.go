package sibling

import (
	"flag"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// A seeded simulation of one group's replication across promotions: four copies, a lossy,
// duplicating, reordering network with partitions, crashes that lose a main's unpersisted
// tail, and a deterministic controller stand-in that seals R voters of every config in use
// at a fresh epoch, chooses the highest last (epoch, seq), and commits a new main with a
// pending config (joint quorum until its barrier commits). It promotes on a main's crash and
// also at random while the main is alive (a false suspicion), and abandons attempts that
// reach too few voters. Clients write and read (linearizable) at whoever acts as main.
//
// Every schedule is checked: log matching, commit points never decrease, no acknowledged
// write is lost, and the client history is linearizable (porcupine). Seeds 1..-sim.runs run
// every time; -sim.fresh (or SIBYL_SIM_FRESH) more, drawn from the clock, explore new
// schedules in each run and are printed before they run. Run one schedule with -sim.seed=N
// (printed on failure).

var simSeed = flag.Int64("sim.seed", 0, "run only this promotion-simulation seed")
var simRuns = flag.Int("sim.runs", 1500, "promotion-simulation schedules to run")
var simFresh = flag.Int("sim.fresh", -1, "fresh random promotion-simulation seeds beside seeds 1..runs (default 50, or SIBYL_SIM_FRESH)")
var simTrace = flag.Bool("sim.trace", false, "log the promotion simulation's events")

func (s *psim) tracef(format string, args ...any) {
	if *simTrace {
		s.t.Logf("[%d] "+format, append([]any{s.now}, args...)...)
	}
}

const simCopies = 4

type pcopy struct {
	id        uint16
	log       *MemLog
	epoch     uint64 // durable
	up        bool
	main      *Main
	persisted uint64 // main only: its own log is durable up to here
	f         *Follower
	commit    uint64 // highest commit point this copy acted on
	barrier   uint64 // main only: seq of its barrier
	copyID    int    // changes when the copy's disk is lost
}

type pmsg struct {
	from, to uint16
	app      *Append
	ack      *Ack
}

type pendingWrite struct {
	client int
	op     int // index into ops
	main   uint16
	epoch  uint64
	seq    uint64
}

type pendingRead struct {
	op    int
	main  uint16
	epoch uint64
	round uint64
	index uint64
}

type psim struct {
	t      *testing.T
	rng    *rand.Rand
	copies map[uint16]*pcopy
	dir    struct {
		epoch           uint64
		main            uint16
		active, pending []uint16
	}
	maxEp   uint64
	net     []pmsg
	cut     map[uint16]bool    // partitioned from everyone
	oneWay  map[[2]uint16]bool // from -> to messages dropped (asymmetric partition)
	copyIDs map[uint16]int     // the copy ID the controller recorded for each voter
	now     int64
	ops     []porcupine.Operation
	writes  []pendingWrite
	reads   []pendingRead
	acked   map[uint64]uint64 // write id -> seq it was acknowledged at
	ackedEp map[uint64]uint64 // write id -> epoch of its entry
	nextW   uint64
	opOf    map[uint64]int // write id -> its operation, until it is known committed
	busy    [simClients]bool
}

// Clients 0..simClients-2 write, the last one reads; each has at most one request in flight.
const simClients = 4

func others(except uint16) []uint16 {
	var out []uint16
	for id := uint16(1); id <= simCopies; id++ {
		if id != except {
			out = append(out, id)
		}
	}
	return out
}

func writeID(e Entry) uint64 {
	if len(e.Data) == 0 {
		return 0
	}
	v, _ := strconv.ParseUint(string(e.Data), 10, 64)
	return v
}

func historyOf(l *MemLog) []EpochStart {
	var h []EpochStart
	for s := l.first; s <= l.Last(); s++ {
		e, _ := l.EpochAt(s)
		if len(h) == 0 || h[len(h)-1].Epoch != e {
			h = append(h, EpochStart{Epoch: e, FirstSeq: s})
		}
	}
	return h
}

func newPsim(t *testing.T, seed int64) *psim {
	s := &psim{t: t, rng: rand.New(rand.NewSource(seed)), copies: map[uint16]*pcopy{}, cut: map[uint16]bool{},
		oneWay: map[[2]uint16]bool{}, copyIDs: map[uint16]int{},
		acked: map[uint64]uint64{}, ackedEp: map[uint64]uint64{}, opOf: map[uint64]int{}}
	for id := uint16(1); id <= simCopies; id++ {
		s.copies[id] = &pcopy{id: id, log: NewMemLog(), epoch: 1, up: true}
	}
	s.dir.epoch, s.dir.main, s.dir.active, s.maxEp = 1, 1, others(1), 1
	for _, c := range s.ordered() {
		s.follow(c)
	}
	return s
}

// ordered returns the copies by ID: map order would make schedules unrepeatable.
func (s *psim) ordered() []*pcopy {
	out := make([]*pcopy, 0, simCopies)
	for id := uint16(1); id <= simCopies; id++ {
		out = append(out, s.copies[id])
	}
	return out
}

func peerIDs(m *Main) []uint16 {
	var ids []uint16
	for id := range m.Peers() {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (s *psim) quorum() Quorum {
	q := Quorum{Sets: [][]uint16{s.dir.active}}
	if s.dir.pending != nil {
		q.Sets = append(q.Sets, s.dir.pending)
	}
	return q
}

// follow gives a live copy the role the directory names.
func (s *psim) follow(c *pcopy) {
	if !c.up {
		return
	}
	if s.dir.main == c.id {
		if c.main != nil && c.main.Epoch() == s.dir.epoch {
			c.main.SetQuorum(s.quorum(), nil)
			return
		}
		if c.epoch > s.dir.epoch {
			return // sealed for a later attempt; wait for the directory
		}
		c.f = nil
		c.epoch = s.dir.epoch
		last := c.log.Last()
		le, _ := c.log.EpochAt(last)
		hist := append(historyOf(c.log), EpochStart{Epoch: s.dir.epoch, FirstSeq: last + 1})
		c.main = NewMain(MainConfig{Group: 1, Self: c.id, Epoch: s.dir.epoch, LastEpoch: le, LastSeq: last,
			Commit: c.commit, EpochFirst: last + 1, History: hist, Quorum: s.quorum(), Log: c.log, MaxBytes: 64, Window: 4})
		e, seq := c.main.Assign()
		_ = c.log.Append(Entry{Epoch: e, Seq: seq}) // the barrier
		c.barrier, c.persisted = seq, last
		return
	}
	if c.main != nil {
		c.main = nil // stepped down: its pending writes stay unknown
	}
	if c.f == nil {
		last := c.log.Last()
		le, _ := c.log.EpochAt(last)
		c.f = NewFollower(FollowerState{Group: 1, Self: c.id, Epoch: c.epoch, LastEpoch: le, LastSeq: last,
			Commit: c.commit, History: historyOf(c.log), Log: c.log})
	}
}

func (s *psim) send(m pmsg) {
	if s.cut[m.from] || s.cut[m.to] || s.oneWay[[2]uint16{m.from, m.to}] || s.rng.Float64() < 0.05 {
		return
	}
	s.net = append(s.net, m)
	if s.rng.Float64() < 0.03 {
		s.net = append(s.net, m)
	}
}

func (s *psim) pump(c *pcopy) {
	if c.main == nil {
		return
	}
	for _, id := range peerIDs(c.main) {
		for {
			a, err := c.main.NextAppend(id)
			if err != nil {
				s.t.Fatal(err)
			}
			if a == nil {
				break
			}
			s.send(pmsg{from: c.id, to: id, app: a})
		}
	}
}

func (s *psim) deliver() {
	if len(s.net) == 0 {
		return
	}
	i := s.rng.Intn(len(s.net))
	m := s.net[i]
	s.net = slices.Delete(s.net, i, i+1)
	c := s.copies[m.to]
	if !c.up || s.cut[m.to] || s.cut[m.from] || s.oneWay[[2]uint16{m.from, m.to}] {
		return
	}
	if m.app != nil {
		if c.f == nil {
			return
		}
		st := c.f.Step(m.app, func(e uint64, main uint16) bool { return e == s.dir.epoch && main == s.dir.main })
		if st.Violation != nil {
			var held []string
			for q := uint64(1); q <= c.log.Last(); q++ {
				e, _ := c.log.EpochAt(q)
				held = append(held, fmt.Sprintf("(%d,%d)", e, q))
			}
			s.t.Logf("message from %d: epoch %d main %d prev (%d,%d) %d entries commit %d; dir %+v", m.from, m.app.Epoch,
				m.app.Main, m.app.PrevEpoch, m.app.PrevSeq, len(m.app.Entries), m.app.CommitSeq, s.dir)
			s.t.Logf("copy %d epoch %d copyID %d (recorded %d) log %v", c.id, c.epoch, c.copyID, s.copyIDs[c.id], held)
			s.t.Fatalf("copy %d: %v", c.id, st.Violation)
		}
		if st.Truncate > 0 {
			c.log.Truncate(st.Truncate)
		}
		if err := c.log.Append(st.Append...); err != nil {
			s.t.Fatalf("copy %d: %v", c.id, err)
		}
		c.epoch = max(c.epoch, c.f.Epoch())
		s.setCommit(c, c.f.Commit())
		s.send(pmsg{from: c.id, to: m.from, ack: &st.Ack})
		return
	}
	if c.main == nil {
		return
	}
	c.main.HandleAck(*m.ack)
	if c.main.Fenced() > 0 {
		s.tracef("main %d of epoch %d fenced by %d", c.id, c.main.Epoch(), c.main.Fenced())
		c.main = nil
		return
	}
	s.afterCommit(c)
	s.pump(c)
}

func (s *psim) setCommit(c *pcopy, commit uint64) {
	if commit < c.commit {
		s.t.Fatalf("copy %d: commit point went back from %d to %d", c.id, c.commit, commit)
	}
	c.commit = commit
}

// afterCommit acknowledges writes and completes reads at main c.
func (s *psim) afterCommit(c *pcopy) {
	prev := c.commit
	s.setCommit(c, c.main.Commit())
	// A write takes effect when its entry commits, whichever main commits it: the
	// simulation closes its interval there even when the client never heard (its main was
	// fenced). Writes that never commit never took effect and are dropped from the history.
	for q := prev + 1; q <= c.commit; q++ {
		es, _ := c.log.Entries(q, q, 1<<20)
		if len(es) == 1 {
			if op, ok := s.opOf[writeID(es[0])]; ok {
				s.now++
				s.ops[op].Return = s.now
				delete(s.opOf, writeID(es[0]))
			}
		}
	}
	if c.main.Epoch() == s.dir.epoch && s.dir.main == c.id && s.dir.pending != nil && c.commit >= c.barrier {
		s.dir.active, s.dir.pending = s.dir.pending, nil // the barrier committed: activate
		c.main.SetQuorum(s.quorum(), nil)
	}
	// A copy that lost its disk counts again once it holds the main's committed log (it
	// re-registers); until then its seal replies are not counted. What it holds is judged
	// from its own log: the main's Match for it predates the loss.
	if c.commit >= c.barrier {
		for _, id := range peerIDs(c.main) {
			x := s.copies[id]
			if x.copyID == s.copyIDs[id] || x.log.Last() < c.commit {
				continue
			}
			xe, _ := x.log.EpochAt(c.commit)
			me, _ := c.log.EpochAt(c.commit)
			if xe == me {
				s.copyIDs[id] = x.copyID
			}
		}
	}
	kept := s.writes[:0]
	for _, w := range s.writes {
		if w.main == c.id && w.epoch == c.main.Epoch() && w.seq <= c.commit {
			s.busy[w.client] = false
			id := s.ops[w.op].Input.(simInput).Value
			s.acked[id], s.ackedEp[id] = w.seq, w.epoch
			continue
		}
		kept = append(kept, w)
	}
	s.writes = kept
	rkept := s.reads[:0]
	for _, r := range s.reads {
		if r.main == c.id && r.epoch == c.main.Epoch() && c.main.RoundConfirmed(r.round) && c.commit >= c.barrier && c.commit >= r.index {
			// Like the node: once the round is confirmed and the barrier committed, answer
			// from the committed state now (at or above the index recorded on arrival).
			val := uint64(0)
			for q := c.commit; q >= 1; q-- {
				es, _ := c.log.Entries(q, q, 1<<20)
				if len(es) == 1 && writeID(es[0]) != 0 {
					val = writeID(es[0])
					break
				}
			}
			s.now++
			s.ops[r.op].Output, s.ops[r.op].Return = simOutput{Value: val}, s.now
			s.busy[simClients-1] = false
			continue
		}
		rkept = append(rkept, r)
	}
	s.reads = rkept
}

// promote runs the controller stand-in's promotion attempt at a fresh epoch.
func (s *psim) promote() {
	s.maxEp++
	epoch := s.maxEp
	configs := [][]uint16{s.dir.active}
	if s.dir.pending != nil {
		configs = append(configs, s.dir.pending)
	}
	type report struct {
		id          uint16
		last, lastE uint64
	}
	var sealed []report
	var voters []uint16
	for _, cfg := range configs {
		for _, v := range cfg {
			if !slices.Contains(voters, v) {
				voters = append(voters, v)
			}
		}
	}
	slices.Sort(voters)
	for _, id := range voters {
		c := s.copies[id]
		// Like a node: a copy acting as main refuses; any other copy (a fenced main too) is
		// sealed, and fsyncs the epoch before it replies.
		if !c.up || s.cut[id] || c.main != nil || s.rng.Float64() < 0.1 {
			continue
		}
		c.epoch = max(c.epoch, epoch)
		if c.f == nil {
			last := c.log.Last()
			le, _ := c.log.EpochAt(last)
			c.f = NewFollower(FollowerState{Group: 1, Self: c.id, Epoch: c.epoch, LastEpoch: le, LastSeq: last,
				Commit: c.commit, History: historyOf(c.log), Log: c.log})
		}
		c.f.Seal(epoch)
		if c.copyID != s.copyIDs[id] {
			continue // another disk than the one that voted: it holds nothing it acked
		}
		le, _ := c.log.EpochAt(c.log.Last())
		sealed = append(sealed, report{id: id, last: c.log.Last(), lastE: le})
	}
	for _, cfg := range configs {
		n := 0
		for _, r := range sealed {
			if slices.Contains(cfg, r.id) {
				n++
			}
		}
		if n < len(cfg)-(len(cfg)/2+1)+1 {
			s.tracef("promotion %d abandoned: sealed %v, config %v", epoch, sealed, cfg)
			return // too few seals: abandoned; the epoch stays used
		}
	}
	best := sealed[0]
	for _, r := range sealed[1:] {
		if r.lastE > best.lastE || (r.lastE == best.lastE && (r.last > best.last || (r.last == best.last && r.id < best.id))) {
			best = r
		}
	}
	s.dir.epoch, s.dir.main, s.dir.pending = epoch, best.id, others(best.id)
	s.tracef("promotion %d chose %d (%d,%d) from %v; dir %+v", epoch, best.id, best.lastE, best.last, sealed, s.dir)
	s.checkChosen("choose", best.id)
	for _, c := range s.ordered() {
		s.follow(c)
	}
}

func (s *psim) crash(c *pcopy) {
	s.tracef("crash %d (main %v, persisted %d, last %d)", c.id, c.main != nil, c.persisted, c.log.Last())
	c.up = false
	if c.main != nil {
		c.log.Truncate(c.persisted + 1) // what was not fsynced is gone
		c.main = nil
	}
	c.f = nil
}

func (s *psim) restart(c *pcopy) {
	c.up = true
	if s.dir.main == c.id {
		// A restarted main never continues in its epoch (it may have lost entries a
		// sibling holds): the controller gives it a fresh one.
		s.maxEp++
		s.dir.epoch = s.maxEp
		s.tracef("main %d restarted: epoch %d, log last %d", c.id, s.dir.epoch, c.log.Last())
		s.checkChosen("restart", c.id)
	}
	for _, x := range s.ordered() {
		s.follow(x)
	}
}

func (s *psim) mainCopy() *pcopy {
	c := s.copies[s.dir.main]
	if c.up && c.main != nil && c.main.Epoch() == s.dir.epoch {
		return c
	}
	return nil
}

func (s *psim) step() {
	r := s.rng.Intn(100)
	switch {
	case r < 14: // a client write at the acting main
		client := -1
		for i := 0; i < simClients-1; i++ {
			if !s.busy[i] {
				client = i
			}
		}
		if c := s.mainCopy(); c != nil && client >= 0 {
			s.nextW++
			e, seq := c.main.Assign()
			_ = c.log.Append(Entry{Epoch: e, Seq: seq, Data: []byte(strconv.FormatUint(s.nextW, 10))})
			s.now++
			s.ops = append(s.ops, porcupine.Operation{ClientId: client, Input: simInput{Write: true, Value: s.nextW},
				Call: s.now, Output: simOutput{}, Return: 1 << 62})
			s.writes = append(s.writes, pendingWrite{client: client, op: len(s.ops) - 1, main: c.id, epoch: e, seq: seq})
			s.opOf[s.nextW] = len(s.ops) - 1
			s.busy[client] = true
			s.pump(c)
		}
	case r < 20: // a linearizable read
		if c := s.mainCopy(); c != nil && !s.busy[simClients-1] {
			s.now++
			s.ops = append(s.ops, porcupine.Operation{ClientId: simClients - 1, Input: simInput{}, Call: s.now, Return: -1})
			s.reads = append(s.reads, pendingRead{op: len(s.ops) - 1, main: c.id, epoch: c.main.Epoch(),
				round: c.main.ReadRound(), index: c.main.Commit()})
			s.busy[simClients-1] = true
			s.afterCommit(c)
		}
	case r < 30: // the main's fsync
		for _, c := range s.ordered() {
			if c.main != nil {
				c.persisted = c.main.LastSeq()
				c.main.Persisted(c.persisted)
				s.afterCommit(c)
				s.pump(c)
			}
		}
	case r < 36: // heartbeats
		for _, c := range s.ordered() {
			if c.up && c.main != nil {
				for _, id := range peerIDs(c.main) {
					if hb := c.main.Heartbeat(id); hb != nil {
						s.send(pmsg{from: c.id, to: id, app: hb})
					}
				}
			}
		}
	case r < 37: // crash a copy
		c := s.copies[uint16(1+s.rng.Intn(simCopies))]
		if c.up {
			s.crash(c)
		}
	case r < 40: // restart a crashed copy
		for _, c := range s.ordered() {
			if !c.up {
				s.restart(c)
				break
			}
		}
	case r < 41: // partition a copy, or heal
		id := uint16(1 + s.rng.Intn(simCopies))
		s.cut[id] = !s.cut[id]
	case r < 42: // cut, or heal, one direction of one link
		from, to := uint16(1+s.rng.Intn(simCopies)), uint16(1+s.rng.Intn(simCopies))
		if from != to {
			k := [2]uint16{from, to}
			s.oneWay[k] = !s.oneWay[k]
		}
	case r < 43 && s.rng.Intn(4) == 0: // a sibling's disk is lost while it is down
		// The fault model (docs/protocol.md §2): fewer than W of the copies that acked a write lose
		// their disks, so one copy at a time awaits re-registration.
		c := s.copies[uint16(1+s.rng.Intn(simCopies))]
		amnesiac := false
		for _, x := range s.copies {
			amnesiac = amnesiac || x.copyID != s.copyIDs[x.id]
		}
		if !c.up && c.id != s.dir.main && !amnesiac {
			c.log, c.epoch, c.commit, c.copyID = NewMemLog(), 0, 0, c.copyID+1
			s.tracef("disk of %d lost", c.id)
		}
	case r < 45: // promotion: the main died, or a false suspicion
		if !s.copies[s.dir.main].up || s.rng.Intn(3) == 0 {
			s.promote()
		}
	default:
		s.deliver()
	}
	s.abandon()
	s.checkLogs()
}

// abandon gives up requests whose main stepped down: their clients see an error (for a
// write, outcome unknown) and move on.
func (s *psim) abandon() {
	acting := func(id uint16, epoch uint64) bool {
		c := s.copies[id]
		return c.up && c.main != nil && c.main.Epoch() == epoch
	}
	kept := s.writes[:0]
	for _, w := range s.writes {
		if acting(w.main, w.epoch) {
			kept = append(kept, w)
		} else {
			s.busy[w.client] = false
		}
	}
	s.writes = kept
	rkept := s.reads[:0]
	for _, r := range s.reads {
		if acting(r.main, r.epoch) {
			rkept = append(rkept, r)
		} else {
			s.busy[simClients-1] = false
		}
	}
	s.reads = rkept
}

// checkChosen: a new main must hold every entry some copy has committed.
func (s *psim) checkChosen(how string, id uint16) {
	m := s.copies[id]
	for _, c := range s.ordered() {
		for q := uint64(1); q <= c.commit && q <= c.log.Last(); q++ {
			ce, _ := c.log.EpochAt(q)
			me, ok := m.log.EpochAt(q)
			if !ok || me != ce {
				var seals []string
				for _, x := range s.ordered() {
					le, _ := x.log.EpochAt(x.log.Last())
					seals = append(seals, fmt.Sprintf("%d:epoch=%d last=(%d,%d) commit=%d copyID=%d/%d up=%v main=%v",
						x.id, x.epoch, le, x.log.Last(), x.commit, x.copyID, s.copyIDs[x.id], x.up, x.main != nil))
				}
				s.t.Fatalf("%s made copy %d main in epoch %d without (%d,%d), committed on copy %d; dir %+v; copies %v",
					how, id, s.dir.epoch, ce, q, c.id, s.dir, seals)
			}
		}
	}
}

// checkLogs: equal (epoch, seq) means equal prefixes, and every acknowledged write stays in
// the log of every copy whose commit point covers it.
func (s *psim) checkLogs() {
	for _, a := range s.ordered() {
		for _, b := range s.ordered() {
			if a.id >= b.id {
				continue
			}
			n := min(a.log.Last(), b.log.Last())
			match := false
			for q := n; q >= 1; q-- {
				ea, _ := a.log.EpochAt(q)
				eb, _ := b.log.EpochAt(q)
				if ea == eb && !match {
					match = true
				}
				if match && ea != eb {
					s.t.Fatalf("log matching: copies %d and %d agree at a later seq but differ at %d (%d vs %d)", a.id, b.id, q, ea, eb)
				}
			}
		}
		for id, seq := range s.acked {
			if a.commit < seq {
				continue
			}
			es, _ := a.log.Entries(seq, seq, 1<<20)
			if len(es) != 1 || writeID(es[0]) != id || es[0].Epoch != s.ackedEp[id] {
				s.t.Fatalf("copy %d (commit %d) lost acknowledged write %d at seq %d", a.id, a.commit, id, seq)
			}
		}
	}
}

// quiesce heals everything, restarts every copy and runs until the main has committed all.
func (s *psim) quiesce() {
	s.cut, s.oneWay = map[uint16]bool{}, map[[2]uint16]bool{}
	for _, c := range s.ordered() {
		if !c.up {
			s.restart(c)
		}
	}
	for i := 0; i < 4000; i++ {
		if s.mainCopy() == nil {
			s.promote()
			continue
		}
		switch s.rng.Intn(4) {
		case 0:
			for _, c := range s.ordered() {
				if c.main != nil {
					c.persisted = c.main.LastSeq()
					c.main.Persisted(c.persisted)
					s.afterCommit(c)
					for _, id := range peerIDs(c.main) {
						if hb := c.main.Heartbeat(id); hb != nil {
							s.send(pmsg{from: c.id, to: id, app: hb})
						}
					}
					s.pump(c)
				}
			}
		default:
			s.deliver()
		}
	}
	s.checkLogs()
	m := s.mainCopy()
	if m == nil || m.commit != m.log.Last() {
		for _, c := range s.ordered() {
			le, _ := c.log.EpochAt(c.log.Last())
			s.t.Logf("copy %d up=%v epoch=%d last=(%d,%d) commit=%d main=%v follower=%v", c.id, c.up, c.epoch, le, c.log.Last(), c.commit, c.main != nil, c.f != nil)
		}
		s.t.Logf("dir %+v; recorded copy IDs %v", s.dir, s.copyIDs)
		if m != nil {
			s.t.Logf("main peers %+v quorum %+v", m.main.Peers(), m.main.Quorum())
		}
		s.t.Fatalf("no progress after quiescence: main %v", m != nil)
	}
	for id, seq := range s.acked {
		es, _ := m.log.Entries(seq, seq, 1<<20)
		if len(es) != 1 || writeID(es[0]) != id {
			s.t.Fatalf("acknowledged write %d at seq %d missing from the final log", id, seq)
		}
	}
}

type simInput struct {
	Write bool
	Value uint64
}

type simOutput struct{ Value uint64 }

var simModel = porcupine.Model{
	Init: func() interface{} { return uint64(0) },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		in := input.(simInput)
		if in.Write {
			return true, in.Value
		}
		return output.(simOutput).Value == state.(uint64), state
	},
}

func runPromoSim(t *testing.T, seed int64) (acked, ops, epochs int) {
	s := newPsim(t, seed)
	for i := 0; i < 600; i++ {
		s.step()
	}
	s.quiesce()
	var history []porcupine.Operation
	for _, op := range s.ops {
		if op.Return == -1 || op.Return == 1<<62 {
			continue // a read that never completed, or a write that never committed
		}
		history = append(history, op)
	}
	switch porcupine.CheckOperationsTimeout(simModel, history, 20*time.Second) {
	case porcupine.Illegal:
		for _, op := range history {
			t.Logf("client %d %+v -> %+v [%d, %d]", op.ClientId, op.Input, op.Output, op.Call, op.Return)
		}
		t.Fatalf("history of %d operations is not linearizable", len(history))
	case porcupine.Unknown:
		t.Fatalf("linearizability check of %d operations timed out", len(history))
	}
	return len(s.acked), len(history), int(s.maxEp)
}

func TestPromotionSimulation(t *testing.T) {
	seeds := make([]int64, 0, *simRuns)
	if *simSeed != 0 {
		seeds = append(seeds, *simSeed)
	} else {
		for i := 1; i <= *simRuns; i++ {
			seeds = append(seeds, int64(i))
		}
		k := 50
		if v, err := strconv.Atoi(os.Getenv("SIBYL_SIM_FRESH")); err == nil && v >= 0 {
			k = v
		}
		if *simFresh >= 0 {
			k = *simFresh
		}
		if fresh := freshSeeds(k); len(fresh) > 0 {
			msg := fmt.Sprintf("TestPromotionSimulation: fresh seeds this run %v; replay one with: go test ./sibling -run 'TestPromotionSimulation$' -sim.seed=N -sim.trace", fresh)
			fmt.Println(msg) // also on stdout, in case the run dies before the test's log is shown
			t.Log(msg)
			seeds = append(seeds, fresh...)
		}
	}
	var acked, ops, epochs int
	for _, seed := range seeds {
		ok := t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			a, o, e := runPromoSim(t, seed)
			acked, ops, epochs = acked+a, ops+o, epochs+e
		})
		if !ok {
			t.Fatalf("schedule failed; replay with: go test ./sibling -run 'TestPromotionSimulation$' -sim.seed=%d -sim.trace", seed)
		}
	}
	t.Logf("%d schedules: %d operations, %d acknowledged writes, %d epochs; 0 lost, all linearizable", len(seeds), ops, acked, epochs)
}

// freshSeeds draws k seeds from the clock, above the range of the regression seeds.
func freshSeeds(k int) []int64 {
	x := uint64(time.Now().UnixNano())
	out := make([]int64, 0, k)
	for range k {
		// splitmix64: consecutive clock readings give unrelated seeds
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		out = append(out, int64(1_000_000+z%1_000_000_000_000))
	}
	return out
}
