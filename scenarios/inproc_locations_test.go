package scenarios

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

var (
	inprocLocRuns  = flag.Int("inproc.locruns", 2, "schedules of TestInProcLocations (seeds 1..N)")
	inprocLocFresh = flag.Int("inproc.locfresh", 1, "fresh random seeds of TestInProcLocations beside seeds 1..locruns")
	inprocLocSeed  = flag.Uint64("inproc.locseed", 0, "run only this seed of TestInProcLocations")
)

// inprocLocations is how many locations TestInProcLocations runs.
const inprocLocations = 3

// TestInProcLocations runs the schedules of TestInProcFaults over three locations, each
// with its own three controllers on raft and two nodes, 10 ± 5 ms between locations
// (docs/locations.md). Group 1 is homed in loc1 and its copies span the locations by the
// real placement. Besides the faults of one location, a third of a schedule's faults are
// location faults (inprocLocationFault): a partition between two locations, every
// controller of a location killed, a whole location cut off, or the home's controllers
// killed and the group rehomed to another location. The checks are
// TestInProcFaults': porcupine over the history, no acknowledged write lost, every
// acknowledged event write delivered once and in order to each subscriber.
func TestInProcLocations(t *testing.T) {
	seeds := []uint64{*inprocLocSeed}
	var fresh []uint64
	if *inprocLocSeed == 0 {
		seeds = seeds[:0]
		for s := 1; s <= *inprocLocRuns; s++ {
			seeds = append(seeds, uint64(s))
		}
		fresh = freshSeeds(*inprocLocFresh)
		seeds = append(seeds, fresh...)
	}
	if len(fresh) > 0 {
		msg := fmt.Sprintf("TestInProcLocations: fresh seeds this run %v; replay one with: go test -race ./scenarios -run 'TestInProcLocations$' -inproc.locseed=N -v", fresh)
		fmt.Println(msg)
		t.Log(msg)
	}
	var ops, acked, lost int
	var virtual time.Duration
	start := time.Now()
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := runInProcAt(t, seed, inprocLocations)
			if r.h == nil {
				return
			}
			t.Logf("seed %d: %s; %d ops (%s), %d acked, %d reads, %d sibling reads, %d epochs, %v virtual", seed, strings.Join(r.faults, ", "),
				r.h.Len(), r.h.CountsString(), ackedOf(r), r.reads.Load(), r.siblingReads.Load(), r.promoted, r.virtual.Round(time.Millisecond))
			checkInProc(t, r)
			ops += r.h.Len()
			acked += ackedOf(r)
			lost += r.lost
			virtual += r.virtual
			if t.Failed() {
				t.Logf("replay: go test -race ./scenarios -run 'TestInProcLocations$' -inproc.locseed=%d -v\n%s", seed, r.tailOnErr)
			}
		})
	}
	t.Logf("%d schedules over %d locations in %v (%v virtual): %d operations, %d acknowledged writes, %d lost",
		len(seeds), inprocLocations, time.Since(start).Round(time.Millisecond), virtual.Round(time.Second), ops, acked, lost)
}

// inprocLocationFault cuts two locations apart (both ways), kills every controller of a
// location, cuts a whole location (its controllers and nodes) off from everything, or kills
// every controller of group 1's home and rehomes the group to another location; each heals
// at the fault's end (the controllers restart on their raft data, and a home that was
// replaced drops the group).
func inprocLocationFault(m *memCluster, rand func(int) int) inprocFault {
	locs := map[string]bool{}
	for _, c := range m.ctrls {
		locs[c.loc] = true
	}
	names := make([]string, 0, len(locs))
	for l := range locs {
		names = append(names, l)
	}
	slices.Sort(names)
	a := names[rand(len(names))]
	hostsOf := func(loc string) []string {
		var hs []string
		for _, c := range m.ctrlsOf(loc) {
			hs = append(hs, c.host)
		}
		for _, n := range m.nodes {
			if n.loc == loc {
				hs = append(hs, n.host)
			}
		}
		return hs
	}
	switch rand(4) {
	case 3:
		// The home loses every controller and an operator moves group 1's home to another
		// location (docs/locations.md "Moving a home") through a node of it.
		home := m.home
		ctrls := m.ctrlsOf(home)
		for _, c := range ctrls {
			if c.c != nil {
				m.crashCtrl(c)
			}
		}
		to := names[rand(len(names))]
		if to == home {
			to = names[(slices.Index(names, home)+1)%len(names)]
		}
		var via *memNode
		for _, n := range m.nodes {
			if n.loc == to && n.n != nil {
				via = n
				break
			}
		}
		outcome := "no node of " + to + " up"
		if via != nil {
			cl := m.client("10.0.9.98", 98, via.id)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			srv := int64(1)
			_, err := cl.Do(ctx, &command.Request{Op: command.OpRehome, Server: &srv, Location: to})
			cancel()
			cl.Close()
			outcome = errName(err)
			if g := m.groupAt(to, 1); g != nil {
				m.home = to // homed there now, a main chosen or not
			}
		}
		return inprocFault{name: fmt.Sprintf("kill every controller of %s, rehome to %s (%s)", home, to, outcome), heal: func() {
			for _, c := range ctrls {
				if c.c == nil {
					m.startCtrl(c)
				}
			}
		}}
	case 0:
		b := names[rand(len(names))]
		if b == a {
			break
		}
		for _, x := range hostsOf(a) {
			for _, y := range hostsOf(b) {
				m.net.Cut(x, y)
				m.net.Cut(y, x)
			}
		}
		return inprocFault{name: fmt.Sprintf("partition %s | %s", a, b), heal: m.net.HealAll}
	case 1:
		ctrls := m.ctrlsOf(a)
		for _, c := range ctrls {
			if c.c != nil {
				m.crashCtrl(c)
			}
		}
		return inprocFault{name: fmt.Sprintf("kill every controller of %s", a), heal: func() {
			for _, c := range ctrls {
				if c.c == nil {
					m.startCtrl(c)
				}
			}
		}}
	}
	for _, h := range hostsOf(a) {
		m.net.Isolate(h)
	}
	return inprocFault{name: fmt.Sprintf("cut %s off", a), heal: m.net.HealAll}
}
