package location

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// The record a rehome starts from may be older than the group's configs: voters
// {1 (loc1), 2, 3 (loc2)}; nodes 2 and 3 lost loc1's controllers, so their directories
// froze at config version 1, while node 3 kept replicating from the main. loc1 added node 4
// and removed nodes 2 and 3 (versions 2..5), each joint phase committed with nodes 1, 4
// and 3, and the writes after node 3's removal were acked by nodes 1 and 4 only. loc1 is
// then lost whole. Sealing nodes 2 and 3 (a majority of the record's config) and choosing
// node 3, the longest of them, would lose those writes: node 3 reports version 5, and
// neither a rehome nor a later promotion of the new home chooses a main from that record
// (docs/locations.md "Moving a home", rule 5).
func staleRehomedRecord() *command.GroupInfo {
	return &command.GroupInfo{Server: 1, Epoch: 7, Main: 1, Home: "loc2", HomeGen: 1, RehomedFrom: "loc1",
		Active:   command.Config{Version: 1, Voters: []uint16{1, 2, 3}},
		Siblings: []command.Member{{Node: 2, State: command.SiblingVoting}, {Node: 3, State: command.SiblingVoting}},
	}
}

func staleSeals() map[uint16]command.SealReply {
	return map[uint16]command.SealReply{
		2: {Node: 2, LastEpoch: 7, LastSeq: 90, Config: 1, CopyID: "c2"},
		3: {Node: 3, LastEpoch: 7, LastSeq: 120, Config: 5, CopyID: "c3"},
	}
}

func TestRehomeCase6_ASealedCopyOfANewerConfigMakesTheRecordStale(t *testing.T) {
	g := staleRehomedRecord()
	if n, v := newerConfigSealed(g, staleSeals()); n != 3 || v != 5 {
		t.Fatalf("newer config sealed: node %d version %d, want node 3 at version 5", n, v)
	}
	msg := staleRecordMsg(g, 5)
	if !strings.Contains(msg, "config version 5, newer than the record's 1") {
		t.Fatalf("message %q does not name both versions", msg)
	}
	// A pending config in the record counts as the record's newest.
	pending := *g
	pending.Pending = &command.Config{Version: 5, Voters: []uint16{1, 4}}
	if n, v := newerConfigSealed(&pending, staleSeals()); v != 0 {
		t.Fatalf("a record with pending version 5: node %d reported newer version %d, want none", n, v)
	}
	views := []command.GroupView{{Copy: &command.CopyView{Config: 1}}, {Copy: &command.CopyView{Config: 5}}, {}}
	if v := newerConfigViewed(g, views); v != 5 {
		t.Fatalf("newer config viewed: %d, want 5", v)
	}
	if v := newerConfigViewed(&pending, views); v != 0 {
		t.Fatalf("newer config viewed against pending version 5: %d, want 0", v)
	}
}

func TestRehomeCase6_PromotionChoosesNoMainFromAStaleRehomedRecord(t *testing.T) {
	g := staleRehomedRecord()
	epoch := command.EpochBand(1) + 1
	cmd, chosen := decidePromotion(g, epoch, staleSeals(), false, 0, nil)
	if _, ok := cmd.(abandonPromotion); !ok {
		t.Fatalf("promotion of a rehomed group whose sealed copy followed a newer config: %T %+v (chose node %d), want abandonPromotion",
			cmd, cmd, chosen.Node)
	}

	// The same seals reporting no newer config: node 3, the longest, is chosen.
	fresh := staleSeals()
	r := fresh[3]
	r.Config = 1
	fresh[3] = r
	if cmd, chosen := decidePromotion(g, epoch, fresh, false, 0, nil); chosen.Node != 3 {
		t.Fatalf("promotion with no newer config: %T %+v, want node 3 chosen", cmd, cmd)
	}
	// Once a main was chosen at the new home's generation the record is the home's own:
	// its configs are authoritative and the check no longer applies.
	own := *g
	own.Epoch = command.EpochBand(1)
	if _, chosen := decidePromotion(&own, epoch, staleSeals(), false, 0, nil); chosen.Node != 3 {
		t.Fatalf("promotion after a main was chosen at generation 1: want node 3 chosen, got %d", chosen.Node)
	}
	// A group never moved: its directory is the record, whatever a copy reports.
	home := *g
	home.RehomedFrom, home.HomeGen, home.Home = "", 0, "loc1"
	if _, chosen := decidePromotion(&home, 8, staleSeals(), false, 0, nil); chosen.Node != 3 {
		t.Fatalf("promotion of a group never moved: want node 3 chosen, got %d", chosen.Node)
	}
}

// claimConfigSeen writes dataDir's durable record of followed config versions
// (configs.json) claiming version v for group server: the node stands for a copy that
// followed a config its location's directory never showed it.
func claimConfigSeen(t *testing.T, dataDir string, server uint16, v uint64) {
	t.Helper()
	path := filepath.Join(dataDir, "configs.json")
	seen := map[uint16]uint64{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &seen); err != nil {
			t.Fatal(err)
		}
	}
	seen[server] = v
	b, _ := json.Marshal(seen)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// view returns node id's view of group server (GET /v1/internal/group).
func (w *rehomeWorld) view(id, server uint16) (command.GroupView, error) {
	var v command.GroupView
	code, body, err := secretCall(rehomeSecret, http.MethodGet, w.nodes[id].addr, fmt.Sprintf("/v1/internal/group?server=%d", server), nil, &v)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("HTTP %d %s", code, body)
	}
	return v, err
}

// Real controllers, real nodes: copies 2 and 3 report a config newer than every record a
// node holds. Seen in node 3's view, the rehome is refused before anything changes: loc2
// takes nothing, no copy is sealed. (A newer config seen only in seal replies is the
// decision tests' case above.)
func TestRehomeRefusesARecordOlderThanACopysConfig(t *testing.T) {
	// Nodes 2 and 3 claim a version far above any loc1 reaches in this test.
	const newer = 1000
	w := newRehomeWorldWith(t, func(id uint16, dataDir string) {
		if id == 2 || id == 3 {
			claimConfigSeen(t, dataDir, 1, newer)
		}
	})
	rep, err := w.do(3, command.Request{Op: command.OpCreate, Type: "doc", Data: json.RawMessage(`"v0"`), Server: i64p(1)})
	if err != nil {
		t.Fatal(err)
	}
	rid := rep.Resource.ID
	if _, err := w.write(3, rid, `"v1"`); err != nil {
		t.Fatal(err)
	}
	var before *command.GroupInfo
	eventuallyOK(t, 20*time.Second, "group 1 served by node 1 with voters 2, 3, 4, whose nodes hold its record", func() error {
		before = w.group("loc1", 1)
		if before == nil || before.Main != 1 || before.Pending != nil || len(before.Active.Voters) != 3 {
			return fmt.Errorf("group 1 in loc1: %+v", before)
		}
		for _, id := range []uint16{2, 3, 4} {
			v, err := w.view(id, 1)
			if err != nil {
				return err
			}
			if v.Group == nil || v.Copy == nil || v.Group.Active.Version != before.Active.Version || v.Group.Main != 1 {
				return fmt.Errorf("node %d's view %+v (copy %+v)", id, v.Group, v.Copy)
			}
			if id != 4 && v.Copy.Config != newer {
				return fmt.Errorf("node %d's copy reports config version %d, want %d", id, v.Copy.Config, newer)
			}
		}
		return nil
	})
	if !slices.Contains(before.Active.Voters, 2) || !slices.Contains(before.Active.Voters, 3) {
		t.Fatalf("group 1's voters %v: want nodes 2 and 3 among them", before.Active.Voters)
	}

	for _, id := range w.locs["loc1"].ids {
		w.locs["loc1"].stop(id)
	}
	w.nodes[1].stop()

	want := fmt.Sprintf("config version %d, newer than the record's %d", newer, recordConfig(before))
	_, err = w.do(4, rehomeReq(1, "loc2"))
	if command.CodeOf(err) != command.CodeConflict || !strings.Contains(err.Error(), want) {
		t.Fatalf("rehome with node 3's copy at a newer config: %v, want conflict naming %q", err, want)
	}
	if g := w.group("loc2", 1); g != nil {
		t.Fatalf("loc2 lists group 1 after a refused rehome: %+v", g)
	}

	for _, id := range []uint16{3, 4} {
		if v, err := w.view(id, 1); err != nil || v.Copy == nil || v.Copy.HomeGen != 0 {
			t.Fatalf("node %d's copy after a refused rehome: %+v %v; want it sealed by no other home", id, v.Copy, err)
		}
	}
}

// A group whose main has no voting sibling yet (its active config empty, its first voter
// pending) cannot be moved: every acknowledged write may be on its main alone, no seal can
// cover the empty config, and a rehome that took it would leave it without a main for good
// once its restarted main loses the role (TestSimulationLocations found it: seed 36, before
// adminRehome refused such a record). So adminRehome refuses it before taking anything.
func TestRehomeRefusesARecordWithAConfigWithoutVoter(t *testing.T) {
	forming := &command.GroupInfo{Server: 1, Epoch: 1, Main: 1,
		Active: command.Config{Version: 1, Voters: []uint16{}}, Pending: &command.Config{Version: 2, Voters: []uint16{2}},
		Siblings: []command.Member{{Node: 2, State: command.SiblingSyncing}}}
	if cfg, ok := configWithoutVoter(forming); !ok || cfg.Version != 1 {
		t.Fatalf("configWithoutVoter(%s) = version %d, %v; want the active config 1", groupString(forming), cfg.Version, ok)
	}
	g := rehomedRecord(forming, "loc2", nil, time.Now())
	all := map[uint16]command.SealReply{2: {Node: 2, Epoch: g.Promotion.Epoch}}
	if sealsCoverMajority(&g, all) {
		t.Fatalf("every voter of %s sealed covers a majority; a rehome of it could choose a main", groupString(&g))
	}
	grown := staleRehomedRecord()
	if _, ok := configWithoutVoter(grown); ok {
		t.Fatalf("configWithoutVoter(%s) is true for a record whose configs all have voters", groupString(grown))
	}
	grown.Pending = &command.Config{Version: 2, Voters: []uint16{}}
	if cfg, ok := configWithoutVoter(grown); !ok || cfg.Version != 2 {
		t.Fatalf("configWithoutVoter(%s) = version %d, %v; want the pending config 2", groupString(grown), cfg.Version, ok)
	}
}
