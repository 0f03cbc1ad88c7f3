package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"
)

func TestLayoutDevDefaultPorts(t *testing.T) {
	l, err := layoutDev(7700, 4, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	wantC := []devController{
		{Index: 1, ID: "c1", HTTP: "127.0.0.1:7701", Raft: "127.0.0.1:7751", Location: "loc1"},
		{Index: 2, ID: "c2", HTTP: "127.0.0.1:7702", Raft: "127.0.0.1:7752", Location: "loc1"},
		{Index: 3, ID: "c3", HTTP: "127.0.0.1:7703", Raft: "127.0.0.1:7753", Location: "loc1"},
	}
	if !reflect.DeepEqual(l.Controllers, wantC) {
		t.Errorf("controllers = %+v\nwant %+v", l.Controllers, wantC)
	}
	ctrls := []string{"127.0.0.1:7701", "127.0.0.1:7702", "127.0.0.1:7703"}
	for i, n := range l.Nodes {
		want := devNode{ID: uint16(i + 1), HTTP: hostPort(7801 + i), Location: "loc1", Controllers: ctrls}
		if !reflect.DeepEqual(n, want) {
			t.Errorf("node %d = %+v, want %+v", i+1, n, want)
		}
	}
	if len(l.Nodes) != 4 {
		t.Errorf("%d nodes, want 4", len(l.Nodes))
	}
	wantPeers := map[string]string{"c1": "127.0.0.1:7751", "c2": "127.0.0.1:7752", "c3": "127.0.0.1:7753"}
	if p := l.peersOf(l.Controllers[1]); !reflect.DeepEqual(p, wantPeers) {
		t.Errorf("peers of c2 = %v, want %v", p, wantPeers)
	}
}

func TestLayoutDevLocations(t *testing.T) {
	l, err := layoutDev(20000, 5, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range l.Controllers {
		got = append(got, c.ID+"@"+c.HTTP+"/"+c.Raft+"/"+c.Location)
	}
	want := []string{
		"c1@127.0.0.1:20001/127.0.0.1:20051/loc1", "c2@127.0.0.1:20002/127.0.0.1:20052/loc1",
		"c3@127.0.0.1:20003/127.0.0.1:20053/loc2", "c4@127.0.0.1:20004/127.0.0.1:20054/loc2",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("controllers = %q\nwant %q", got, want)
	}
	wantLoc := []string{"loc1", "loc2", "loc1", "loc2", "loc1"}
	for i, n := range l.Nodes {
		if n.Location != wantLoc[i] || n.HTTP != hostPort(20101+i) {
			t.Errorf("node %d at %s in %s, want %s in %s", n.ID, n.HTTP, n.Location, hostPort(20101+i), wantLoc[i])
		}
		wantCtrls := []string{"127.0.0.1:20001", "127.0.0.1:20002"}
		if n.Location == "loc2" {
			wantCtrls = []string{"127.0.0.1:20003", "127.0.0.1:20004"}
		}
		if !reflect.DeepEqual(n.Controllers, wantCtrls) {
			t.Errorf("node %d controllers %v, want its location's %v", n.ID, n.Controllers, wantCtrls)
		}
	}
	if p := l.peersOf(l.Controllers[2]); len(p) != 2 || p["c3"] == "" || p["c4"] == "" {
		t.Errorf("peers of c3 = %v, want c3 and c4 only", p)
	}
}

func TestLayoutDevRefuses(t *testing.T) {
	for _, tc := range []struct{ base, nodes, ctrls, locs int }{
		{7700, 0, 3, 1}, {7700, 4, 0, 1}, {7700, 4, 3, 0}, {7700, 4, 25, 2}, {65500, 4, 3, 1}, {0, 4, 3, 1},
	} {
		if _, err := layoutDev(tc.base, tc.nodes, tc.ctrls, tc.locs); err == nil {
			t.Errorf("layoutDev(%+v) succeeded, want an error", tc)
		}
	}
}

func TestDevArgs(t *testing.T) {
	l, err := layoutDev(7700, 2, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	o := devOptions{Exe: "/bin/sibyl", Dir: "/d", WriteTimeout: 5 * time.Second, DownAfter: time.Second, LogLevel: "info"}
	wantC := []string{"/bin/sibyl", "location", "--id", "c2", "--http", "127.0.0.1:7702", "--raft", "127.0.0.1:7752",
		"--data", "/d/c2", "--peers", "c1=127.0.0.1:7751,c2=127.0.0.1:7752,c3=127.0.0.1:7753",
		"--location", "loc1", "--down-after", "1s", "--log-level", "info"}
	if got := l.controllerArgs(o, l.Controllers[1]); !reflect.DeepEqual(got, wantC) {
		t.Errorf("controller args = %q\nwant %q", got, wantC)
	}
	wantN := []string{"/bin/sibyl", "node", "--id", "2", "--http", "127.0.0.1:7802", "--data", "/d/n2",
		"--location", "loc1", "--controllers", "127.0.0.1:7701,127.0.0.1:7702,127.0.0.1:7703",
		"--write-timeout", "5s", "--down-after", "1s", "--log-level", "info"}
	if got := nodeArgs(o, l.Nodes[1]); !reflect.DeepEqual(got, wantN) {
		t.Errorf("node args = %q\nwant %q", got, wantN)
	}
}

// TestDevArgsLocations: with several locations every controller is given the others'
// controllers (its own location's are its raft peers), and nodes only their location's.
func TestDevArgsLocations(t *testing.T) {
	l, err := layoutDev(20000, 3, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	o := devOptions{Exe: "/bin/sibyl", Dir: "/d", WriteTimeout: 5 * time.Second, DownAfter: time.Second, LogLevel: "info"}
	args := l.controllerArgs(o, l.Controllers[2]) // c3, loc2
	want := []string{"--peers", "c3=127.0.0.1:20053,c4=127.0.0.1:20054", "--location", "loc2"}
	if !containsRun(args, want) {
		t.Errorf("c3 args %q lack %q", args, want)
	}
	want = []string{"--locations", "loc1=127.0.0.1:20001,loc1=127.0.0.1:20002,loc3=127.0.0.1:20005,loc3=127.0.0.1:20006"}
	if !containsRun(args, want) {
		t.Errorf("c3 args %q lack %q", args, want)
	}
	if got := nodeArgs(o, l.Nodes[2]); !containsRun(got, []string{"--location", "loc3", "--controllers", "127.0.0.1:20005,127.0.0.1:20006"}) {
		t.Errorf("node 3 args %q: want loc3 and its controllers", got)
	}
	if got := l.locationNames(); !reflect.DeepEqual(got, []string{"loc1", "loc2", "loc3"}) {
		t.Errorf("locations %v", got)
	}
	if p := l.inLocation("loc2"); len(p.Controllers) != 2 || len(p.Nodes) != 1 || p.Nodes[0].ID != 2 {
		t.Errorf("loc2 part %+v", p)
	}
}

// TestClusterFileFields pins the field names of docs/protocol.md §5: readers of cluster.json
// depend on them.
func TestClusterFileFields(t *testing.T) {
	cf := clusterFile{
		Controllers: []clusterController{{ID: "c1", HTTP: "127.0.0.1:7701", Raft: "127.0.0.1:7751", PID: 10, Location: "loc1", Args: []string{"/x", "location"}}},
		Nodes:       []clusterNode{{ID: 1, HTTP: "127.0.0.1:7801", PID: 11, Location: "loc1", Args: []string{"/x", "node"}}},
	}
	b, err := json.Marshal(cf)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string][]map[string]json.RawMessage
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	has := func(what string, obj map[string]json.RawMessage, want ...string) {
		t.Helper()
		for _, k := range want {
			if _, ok := obj[k]; !ok {
				t.Errorf("%s lacks %q: %s", what, k, b)
			}
		}
	}
	has("controller", generic["controllers"][0], "id", "http", "raft", "pid", "args")
	has("node", generic["nodes"][0], "id", "http", "pid", "location", "args")
	if string(generic["nodes"][0]["id"]) != "1" || string(generic["controllers"][0]["id"]) != `"c1"` {
		t.Errorf("ids: node %s (want a number), controller %s (want a string)", generic["nodes"][0]["id"], generic["controllers"][0]["id"])
	}
	if keys := sortedKeys(generic); !reflect.DeepEqual(keys, []string{"controllers", "nodes"}) {
		t.Errorf("top-level keys %v", keys)
	}

	path := filepath.Join(t.TempDir(), "cluster.json")
	if err := writeClusterFile(path, cf); err != nil {
		t.Fatal(err)
	}
	back, err := readClusterFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, cf) {
		t.Errorf("read back %+v, want %+v", back, cf)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after the write, want only cluster.json (no temp file left)", len(entries))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
