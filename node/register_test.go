package node

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/sibylhq/sibyl/command"
)

// Registration under a steady write rate (docs/register-sibling.md): the copy is sent one
// snapshot, replays what the main kept for it, and votes; or, when keeping that much log
// passes a bound, the main aborts and the group goes on without the copy.

// serveRegistration adds to the fake controller what registerSibling needs from the real
// one: the admin call (learner, then voter once the main reports it caught up, or dropped
// when the main reports an abort) and /v1/status built from the nodes' reports.
func (f *fakeController) serveRegistration() {
	f.mux.HandleFunc("/v1/internal/admin/registerSibling", func(w http.ResponseWriter, r *http.Request) {
		var req command.Request
		_ = json.NewDecoder(r.Body).Decode(&req)
		server, node := uint16(*req.Server), uint16(*req.Node)
		f.update(func(d *command.Directory) {
			g := d.Group(server)
			g.Siblings = append(g.Siblings, command.Member{Node: node, State: command.SiblingSyncing})
		})
		answer := func(e *command.Error) {
			_ = json.NewEncoder(w).Encode(map[string]*command.Error{"error": e})
		}
		for {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond): // polling the reports, as the controller's reconcile loop does
			}
			f.mu.Lock()
			main := f.dir.Group(server).Main
			rep, ok := groupReport(f.reports[main], server)
			f.mu.Unlock()
			if !ok {
				continue
			}
			for _, p := range rep.Siblings {
				switch {
				case p.Node != node:
				case p.Aborted != nil:
					f.update(func(d *command.Directory) {
						g := d.Group(server)
						g.Siblings = slices.DeleteFunc(g.Siblings, func(m command.Member) bool { return m.Node == node })
					})
					answer(p.Aborted.Err(server, node))
					return
				case p.Recent && p.SyncTotal == 0 && p.Seq > 0 && p.Seq+64 >= rep.LastSeq:
					f.update(func(d *command.Directory) {
						g := d.Group(server)
						g.Active = command.Config{Version: g.Active.Version + 1, Voters: append(slices.Clone(g.Active.Voters), node)}
						for i := range g.Siblings {
							if g.Siblings[i].Node == node {
								g.Siblings[i].State = command.SiblingVoting
							}
						}
					})
					_, _ = w.Write([]byte(`{}`))
					return
				}
			}
		}
	})
	f.mux.HandleFunc("/v1/status", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var st command.Status
		for _, g := range f.dir.Groups {
			sg := command.StatusGroup{Server: g.Server, Main: &g.Main, Epoch: g.Epoch}
			rep, _ := groupReport(f.reports[g.Main], g.Server)
			sg.Seq = rep.LastSeq
			for _, m := range g.Siblings {
				ss := command.StatusSibling{Node: m.Node, State: m.State, LagSeq: sg.Seq}
				if sr, ok := groupReport(f.reports[m.Node], g.Server); ok && sr.Role == command.RoleSibling {
					ss.LagSeq = sg.Seq - min(sr.Applied, sg.Seq)
				}
				for _, p := range rep.Siblings {
					if p.Node == m.Node {
						ss.SyncDone, ss.SyncTotal = p.SyncDone, p.SyncTotal
					}
				}
				sg.Siblings = append(sg.Siblings, ss)
			}
			st.Groups = append(st.Groups, sg)
		}
		_ = json.NewEncoder(w).Encode(st)
	})
}

func groupReport(hb command.Heartbeat, server uint16) (command.GroupReport, bool) {
	for _, r := range hb.Groups {
		if r.Server == server {
			return r, true
		}
	}
	return command.GroupReport{}, false
}

// steadyWriter updates resources of group gid through s at about perSecond writes a
// second until stop is called, and returns how many committed.
func steadyWriter(t *testing.T, s *Session, rids []string, perSecond int) (stop func() int) {
	var done atomic.Bool
	var ok atomic.Int64
	var wg sync.WaitGroup
	const workers = 8
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			tick := time.NewTicker(time.Second * workers / time.Duration(perSecond))
			defer tick.Stop()
			for i := w; !done.Load(); i += workers {
				<-tick.C
				rid := rids[i%len(rids)]
				_, err := s.Start(context.Background(), &command.Request{Op: command.OpUpdate, RID: rid,
					Data: json.RawMessage(`"` + strings.Repeat("u", 200) + `"`)}, true)()
				if err == nil {
					ok.Add(1)
				}
			}
		}(w)
	}
	return func() int {
		done.Store(true)
		wg.Wait()
		return int(ok.Load())
	}
}

// fillResources creates n resources of about 1 KiB in group gid and returns their rids.
func fillResources(t *testing.T, s *Session, gid int64, n int) []string {
	t.Helper()
	data := json.RawMessage(`"` + strings.Repeat("x", 1000) + `"`)
	rids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				r, err := s.Start(context.Background(), &command.Request{Op: command.OpCreate, Type: "t", Data: data, Server: i64(gid)}, true)()
				if err != nil {
					errs <- err
					return
				}
				rids[i] = r.Resource.ID
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("filling group %d: %v", gid, err)
	}
	return rids
}

// registerWithPhases runs registerSibling(server, node) on an event session of tn and
// returns its reply error and the phases of its progress frames, runs of one phase
// collapsed.
func registerWithPhases(t *testing.T, tn *testNode, server, node int64) ([]string, error) {
	t.Helper()
	wake := make(wakeChan, 1)
	s := tn.n.NewEventSession(wake)
	defer s.Close()
	var mu sync.Mutex
	var phases []string
	stop := make(chan struct{})
	pulled := make(chan struct{})
	go func() {
		defer close(pulled)
		var buf []json.RawMessage
		for {
			select {
			case <-wake:
			case <-stop:
				return
			}
			buf = s.Events(buf[:0], 64)
			for _, raw := range buf {
				var ev progressEvent
				if json.Unmarshal(raw, &ev) == nil && ev.Event == "progress" {
					mu.Lock()
					if len(phases) == 0 || phases[len(phases)-1] != ev.Phase {
						phases = append(phases, ev.Phase)
					}
					t.Logf("progress %s %d/%d recorded %d", ev.Phase, ev.Done, ev.Total, ev.Recorded)
					mu.Unlock()
				}
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := s.Start(ctx, &command.Request{Op: command.OpRegisterSibling, Sub: "reg", Server: i64(server), Node: i64(node)}, true)()
	close(stop)
	<-pulled
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), phases...), err
}

// registerCluster: group 2 gets main 2 and voter 1; node 3 is the copy to register. The log
// keeps little (LogKeep 100) and a lagging sibling holds it back by at most LogKeepMax 200
// entries; the snapshot is sent at 512 KiB/s, so under steady writes the copy ends its sync
// phase thousands of entries behind.
func registerCluster(t *testing.T, tune func(*Config)) (*fakeController, []*testNode) {
	fc, nodes := testClusterWith(t, func(c *Config) {
		c.LogKeep, c.LogKeepMax, c.SyncRate = 100, 200, 512<<10
		c.WriteTimeout = 5 * time.Second
		if tune != nil {
			tune(c)
		}
	})
	fc.serveRegistration()
	setGroup(fc, 2, 1, 2, []uint16{1})
	return fc, nodes
}

// A copy registered while the group takes a steady write rate is sent exactly one
// snapshot, although the entries written meanwhile are more than the main keeps for a
// lagging voter (LogKeepMax): the main keeps every entry after the snapshot's position for
// it until it votes. The progress phases are sync, replay, active, each once.
func TestRegisterUnderWritesSendsOneSnapshot(t *testing.T) {
	_, nodes := registerCluster(t, nil)
	s := nodes[1].n.NewSession()
	defer s.Close()
	rids := fillResources(t, s, 2, 3000)
	stop := steadyWriter(t, s, rids, 3000)
	phases, err := registerWithPhases(t, nodes[0], 2, 3)
	wrote := stop()
	if err != nil {
		t.Fatalf("registerSibling(2, 3): %v", err)
	}
	sent := int(counterValue(nodes[1].n.metrics.snapshotsSent))
	t.Logf("phases %v; snapshots sent %d; %d writes during the registration", phases, sent, wrote)
	if !slices.Equal(phases, []string{"sync", "replay", "active"}) {
		t.Fatalf("progress phases %v, want exactly sync, replay, active", phases)
	}
	if sent != 1 {
		t.Fatalf("the main sent %d snapshots, want 1", sent)
	}
	// Without the hold, compaction passes a sibling LogKeepMax + compactMin entries behind.
	if limit := 200 + compactMin; wrote < limit {
		t.Fatalf("only %d writes during the registration: the copy never lagged more than the %d entries the log keeps anyway", wrote, limit)
	}
	g := nodes[1].n.localGroup(2)
	g.mu.Lock()
	first := g.tail.first
	g.mu.Unlock()
	if first <= 1 {
		t.Fatalf("the main's log starts at seq %d: it was never compacted, so no snapshot was needed", first)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// When keeping the log for the copy passes a bound, the main gives the registration up
// with a typed abort: registerSibling fails with a code and a message naming the bound,
// the copy is dropped from the group, the main holds nothing more for it, and the group
// keeps its previous copies and takes writes.
func TestRegisterAbortsPastAHoldBound(t *testing.T) {
	for _, tc := range []struct {
		bound string
		tune  func(*Config)
		code  command.Code
	}{
		{command.BoundRegisterHoldBytes, func(c *Config) { c.RegisterHoldBytes = 256 << 10 }, command.CodeRateLimited},
		{command.BoundRegisterHoldTime, func(c *Config) { c.RegisterHoldTime = time.Second }, command.CodeTimeout},
	} {
		t.Run(tc.bound, func(t *testing.T) {
			fc, nodes := registerCluster(t, tc.tune)
			s := nodes[1].n.NewSession()
			defer s.Close()
			rids := fillResources(t, s, 2, 3000)
			stop := steadyWriter(t, s, rids, 1500)
			phases, err := registerWithPhases(t, nodes[0], 2, 3)
			stop()
			t.Logf("phases %v; registerSibling: %v", phases, err)
			if command.CodeOf(err) != tc.code || !strings.Contains(err.Error(), "--"+tc.bound) {
				t.Fatalf("registerSibling: %v, want %s naming --%s", err, tc.code, tc.bound)
			}
			if n := counterValue(nodes[1].n.metrics.registerAborts.WithLabelValues(tc.bound)); n != 1 {
				t.Fatalf("the main counted %v aborts past --%s, want 1", n, tc.bound)
			}
			fc.mu.Lock()
			sibs := slices.Clone(fc.dir.Group(2).Siblings)
			fc.mu.Unlock()
			if len(sibs) != 1 || sibs[0].Node != 1 || sibs[0].State != command.SiblingVoting {
				t.Fatalf("group 2's siblings after the abort: %+v, want node 1 voting alone", sibs)
			}
			g := nodes[1].n.localGroup(2)
			waitUntil(t, 10*time.Second, "the main to stop replicating to node 3", func() bool {
				g.mu.Lock()
				defer g.mu.Unlock()
				_, still := g.c.Replication().Peers()[3]
				return !still && g.holds[3] == nil && len(g.snapshots) == 0
			})
			// The group goes on: writes commit, and the log is compacted again.
			before := lastSeqOf(nodes[1], 2)
			stop = steadyWriter(t, s, rids, 1500)
			waitUntil(t, 30*time.Second, "writes and compaction after the abort", func() bool {
				g.mu.Lock()
				defer g.mu.Unlock()
				return g.c.Commit() > before+2*compactMin && g.tail.first > before
			})
			if wrote := stop(); wrote == 0 {
				t.Fatal("no write committed after the abort")
			}
		})
	}
}
