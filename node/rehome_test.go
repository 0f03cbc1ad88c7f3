package node

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Case 6 with a moved home (docs/locations.md "Moving a home"): a copy takes a rehome seal
// (the next home generation, naming its home as the one replaced) only once it hears none
// of its home's controllers; from then on, across a restart of its node, it refuses its old
// home's seals whatever their epoch, and another location's of the same generation.
func TestCase6_RehomeCopyRefusesTheOldHomeAfterTheNewOne(t *testing.T) {
	fc, nodes := testCluster(t)
	b := nodes[1]
	waitUntil(t, 5*time.Second, "node 2 follows group 1 in epoch 1", func() bool {
		if b.n.homeOf(1) != "default" || b.n.localGroup(1) == nil {
			return false
		}
		m, err := b.n.localGroup(1).gs.Meta()
		return err == nil && m.Epoch == 1
	})
	seal := func(req command.SealRequest) (int, string) {
		req.Server, req.From = 1, 1
		return postSeal(t, b.cfg.HTTPAddr, req)
	}
	epoch := func() uint64 {
		m, err := b.n.localGroup(1).gs.Meta()
		if err != nil {
			t.Fatal(err)
		}
		return m.Epoch
	}
	band := command.EpochBand(1)
	rehome := command.SealRequest{Epoch: band, Home: "loc2", HomeGen: 1, RehomedFrom: "default"}

	if code, msg := seal(command.SealRequest{Epoch: 2, Home: "default"}); code != http.StatusOK {
		t.Fatalf("seal from the group's home: HTTP %d %s, want 200", code, msg)
	}
	if code, msg := seal(rehome); code != http.StatusConflict || !strings.Contains(msg, "still hears") {
		t.Fatalf("rehome seal while the home's controllers answer: HTTP %d %s, want 409 (still hears)", code, msg)
	}
	if code, _ := seal(command.SealRequest{Epoch: band, Home: "loc2", HomeGen: 1}); code != http.StatusConflict {
		t.Fatalf("a later generation's seal naming no replaced home: HTTP %d, want 409", code)
	}
	if e := epoch(); e != 2 {
		t.Fatalf("epoch after refused seals: %d, want 2", e)
	}

	fc.srv.Close() // the home's controllers are gone
	waitUntil(t, 5*time.Second, "the rehome seal taken once node 2 no longer hears its home", func() bool {
		code, _ := seal(rehome)
		return code == http.StatusOK
	})
	if e := epoch(); e != band {
		t.Fatalf("epoch after the rehome seal: %d, want %d", e, band)
	}
	if rec, ok := b.n.homes.get(1); !ok || rec != (homeRecord{Home: "loc2", Gen: 1}) {
		t.Fatalf("recorded home %+v %v, want loc2 at generation 1", rec, ok)
	}
	if r := b.n.localGroup(1).report(); r.Home != "loc2" || r.HomeGen != 1 {
		t.Fatalf("heartbeat report names home %q generation %d, want loc2 at 1", r.Home, r.HomeGen)
	}

	refusedAfter := func(when string) {
		t.Helper()
		for _, req := range []command.SealRequest{
			{Epoch: band + 100, Home: "default"},                                  // the old home, at any epoch
			{Epoch: band + 100, Home: "loc3", HomeGen: 1, RehomedFrom: "default"}, // another home of the same generation
		} {
			if code, msg := seal(req); code != http.StatusConflict {
				t.Fatalf("%s: seal %+v: HTTP %d %s, want 409", when, req, code, msg)
			}
		}
		if e := epoch(); e != band {
			t.Fatalf("%s: epoch %d after refused seals, want %d", when, e, band)
		}
		if code, msg := seal(command.SealRequest{Epoch: band + 1, Home: "loc2", HomeGen: 1, RehomedFrom: "default"}); code != http.StatusOK {
			t.Fatalf("%s: the new home's next seal: HTTP %d %s, want 200", when, code, msg)
		}
		band++
	}
	refusedAfter("after the rehome seal")

	b.stop()
	b = startTestNode(t, b.cfg)
	nodes[1] = b
	waitUntil(t, 5*time.Second, "node 2 back with its copy of group 1", func() bool { return b.n.localGroup(1) != nil })
	refusedAfter("after node 2 restarted")
}

// A group moved twice (default -> loc2 -> loc3): a copy sealed by loc2 at generation 1 takes
// loc3's seal of generation 2 (replacing loc2) only while it hears no controller of loc2 that
// still lists the group; once loc2 answers without the group (it dropped it, disownGroup),
// hearing it no longer holds the copy back. Without that, a copy of a returning intermediate
// home refused every seal of the group's next home for good (TestSimulationLocations found
// it: seed 1614, a group at loc3 never promoted after loc2 came back).
func TestRehomeSealPassesAHomeThatDroppedTheGroup(t *testing.T) {
	_, nodes := testCluster(t)
	b := nodes[1]
	waitUntil(t, 5*time.Second, "node 2 holds a copy of group 1", func() bool { return b.n.localGroup(1) != nil })
	if err := b.n.homes.record(1, homeRecord{Home: "loc2", Gen: 1}); err != nil {
		t.Fatal(err)
	}
	loc2 := b.n.newLink("loc2", nil)
	setLoc2 := func(groups []command.GroupInfo) {
		b.n.mu.Lock()
		loc2.dir, loc2.heard = &command.Directory{Location: "loc2", Index: 9, Groups: groups}, time.Now()
		b.n.links["loc2"] = loc2
		b.n.mu.Unlock()
	}
	seal := func() (int, string) {
		return postSeal(t, b.cfg.HTTPAddr, command.SealRequest{Server: 1, From: 1, Epoch: command.EpochBand(2), Home: "loc3", HomeGen: 2, RehomedFrom: "loc2"})
	}

	setLoc2([]command.GroupInfo{{Server: 1, Epoch: command.EpochBand(1) + 3, Main: 1, Home: "loc2", HomeGen: 1}})
	if code, msg := seal(); code != http.StatusConflict || !strings.Contains(msg, "still hears") {
		t.Fatalf("generation 2's seal while loc2 answers and lists the group: HTTP %d %s, want 409 (still hears)", code, msg)
	}
	setLoc2(nil)
	if code, msg := seal(); code != http.StatusOK {
		t.Fatalf("generation 2's seal while loc2 answers without the group: HTTP %d %s, want 200", code, msg)
	}
	if rec, ok := b.n.homes.get(1); !ok || rec != (homeRecord{Home: "loc3", Gen: 2}) {
		t.Fatalf("recorded home %+v %v, want loc3 at generation 2", rec, ok)
	}
}

// A copy reports in its seal reply, and in its group view, the highest config version it
// followed, across a restart of its node: a location moving the group's home compares it
// with its record of the group's configs (docs/locations.md "Moving a home", rule 5).
func TestSealReportsTheConfigVersionAcrossARestart(t *testing.T) {
	fc, nodes := testCluster(t)
	b := nodes[1]
	waitUntil(t, 5*time.Second, "node 2 follows group 1", func() bool {
		g := b.n.localGroup(1)
		return g != nil && b.n.configs.get(1) == 1
	})
	fc.update(func(d *command.Directory) {
		for i := range d.Groups {
			if d.Groups[i].Server == 1 {
				d.Groups[i].Pending = &command.Config{Version: 2, Voters: []uint16{2, 3}}
			}
		}
	})
	// The main writes a config entry under the joint quorum; its appends carry version 2.
	waitUntil(t, 5*time.Second, "main and siblings follow config version 2", func() bool {
		for _, tn := range nodes[:4] {
			if tn.n.configs.get(1) != 2 {
				return false
			}
		}
		return true
	})
	sealAt := func(epoch uint64) command.SealReply {
		t.Helper()
		body, _ := json.Marshal(command.SealRequest{Server: 1, Epoch: epoch, From: 1})
		resp, err := http.Post("http://"+b.cfg.HTTPAddr+"/v1/internal/seal", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r command.SealReply
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(resp.Body)
			t.Fatalf("seal at epoch %d: HTTP %d %s", epoch, resp.StatusCode, msg)
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	view := func() command.GroupView {
		t.Helper()
		resp, err := http.Get("http://" + b.cfg.HTTPAddr + "/v1/internal/group?server=1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v command.GroupView
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if r := sealAt(2); r.Config != 2 {
		t.Fatalf("seal reply %+v: config version %d, want 2", r, r.Config)
	}
	if v := view(); v.Copy == nil || v.Copy.Config != 2 {
		t.Fatalf("group view %+v: want its copy at config version 2", v.Copy)
	}

	b.stop()
	b = startTestNode(t, b.cfg)
	nodes[1] = b
	waitUntil(t, 5*time.Second, "node 2 back with its copy of group 1", func() bool { return b.n.localGroup(1) != nil })
	if r := sealAt(3); r.Config != 2 {
		t.Fatalf("seal reply after a restart %+v: config version %d, want 2", r, r.Config)
	}
	if v := view(); v.Copy == nil || v.Copy.Config != 2 {
		t.Fatalf("group view after a restart %+v: want its copy at config version 2", v.Copy)
	}
}

// postSeal sends req to the node at addr's seal endpoint and returns its status and body.
func postSeal(t *testing.T, addr string, req command.SealRequest) (int, string) {
	t.Helper()
	body, _ := json.Marshal(req)
	resp, err := http.Post("http://"+addr+"/v1/internal/seal", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg)
}
