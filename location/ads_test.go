package location

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// Unit tests of the ad book's rules, one decision at a time (the network-level tests are
// in ads_sim_test.go).

var t0 = time.Unix(1_700_000_000, 0)

func testBook(loc, id, inst string, seeds map[string][]string) *adBook {
	return newAdBook(command.Ad{ID: id, Location: loc, Addr: id + ":1", Instance: inst, Incarnation: 1},
		adBookConfig{TTL: 10 * time.Second, Refresh: time.Second, ReachWithin: 3 * time.Second, Seeds: seeds})
}

func nodeAd(id, loc, inst string, inc, gen uint64, path ...string) command.Ad {
	return command.Ad{Kind: command.AdNode, ID: id, Location: loc, Addr: "n" + id + ":1", Instance: inst,
		Incarnation: inc, Generation: gen, Path: path}
}

func ctlAd(id, loc, inst string, inc, gen uint64, path ...string) command.Ad {
	return command.Ad{Kind: command.AdController, ID: id, Location: loc, Addr: id + ":1", Instance: inst,
		Incarnation: inc, Generation: gen, Path: path}
}

func sender(id, loc, inst string) command.AdSender {
	return command.AdSender{ID: id, Location: loc, Addr: id + ":1", Instance: inst}
}

func TestAdNewerIncarnationBeatsGeneration(t *testing.T) {
	old := command.Ad{Incarnation: 3, Generation: 900}
	restarted := command.Ad{Incarnation: 4, Generation: 1}
	later := command.Ad{Incarnation: 3, Generation: 901}
	switch {
	case !restarted.Newer(&old) || old.Newer(&restarted):
		t.Fatal("a higher incarnation with a lower generation must win")
	case !later.Newer(&old) || old.Newer(&later):
		t.Fatal("within an incarnation the higher generation must win")
	case old.Newer(&old):
		t.Fatal("an ad is not newer than itself")
	}
}

func TestAdJSON(t *testing.T) {
	b, err := json.Marshal([]command.Ad{nodeAd("7", "loc2", "N7", 2, 5), ctlAd("c4", "loc2", "C4", 1, 9, "X", "Y")})
	if err != nil {
		t.Fatal(err)
	}
	var raw []map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if raw[0]["id"] != float64(7) || raw[1]["id"] != "c4" {
		t.Fatalf("ids %v and %v: want the number 7 and the string c4 (%s)", raw[0]["id"], raw[1]["id"], b)
	}
	if p, ok := raw[0]["path"].([]any); !ok || len(p) != 0 {
		t.Fatalf("an empty path must be [], got %v", raw[0]["path"])
	}
	for _, k := range []string{"kind", "location", "addr", "instance", "incarnation", "generation", "ageMs"} {
		if _, ok := raw[1][k]; !ok {
			t.Fatalf("field %q missing: %s", k, b)
		}
	}
	var back []command.Ad
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back[0].ID != "7" || back[1].ID != "c4" || !slices.Equal(back[1].Path, []string{"X", "Y"}) {
		t.Fatalf("round trip: %+v", back)
	}
	if err := json.Unmarshal([]byte(`{"kind":"node","id":70000}`), &back[0]); err == nil {
		t.Fatal("a node id beyond 65535 was accepted")
	}
}

// TestAdBookReceiveRules: each drop reason, and the path an accepted ad is held with.
func TestAdBookReceiveRules(t *testing.T) {
	seeds := map[string][]string{"loc2": {"c4:1"}, "loc3": {"c7:1"}}
	b := testBook("loc1", "c1", "C1", seeds)
	b.receive(t0, sender("c4", "loc2", "C4"), ctlAd("c4", "loc2", "C4", 1, 1), true) // c4's own ad: learn C4 is in loc2
	b.receive(t0, sender("c7", "loc3", "C7"), ctlAd("c7", "loc3", "C7", 1, 1), true)
	from := sender("c4", "loc2", "C4")
	cases := []struct {
		name string
		from command.AdSender
		ad   command.Ad
		drop string
		path []string
	}{
		{"first hand from a node", command.AdSender{}, nodeAd("1", "loc1", "N1", 1, 1), "", []string{"C1"}},
		{"a newer generation passed on", from, nodeAd("4", "loc2", "N4", 1, 5, "C4"), "", []string{"C4", "C1"}},
		{"the same version again", sender("c7", "loc3", "C7"), nodeAd("4", "loc2", "N4", 1, 5, "C4", "C7"), dropDuplicate, nil},
		{"an older generation", from, nodeAd("4", "loc2", "N4", 1, 4, "C4"), dropOlder, nil},
		{"an older incarnation with a higher generation", from, nodeAd("4", "loc2", "N4old", 1, 3, "C4"), dropOlder, nil},
		{"a restart: higher incarnation, generation back to 1", from, nodeAd("4", "loc2", "N4new", 2, 1, "C4"), "", []string{"C4", "C1"}},
		{"the old life afterwards, generation 50", from, nodeAd("4", "loc2", "N4", 1, 50, "C4"), dropOlder, nil},
		{"own ad back", from, ctlAd("c1", "loc1", "C1", 1, 3, "C4"), dropOwn, nil},
		{"own ad of an earlier life back", from, ctlAd("c1", "loc1", "C1old", 1, 3, "C4"), dropOwn, nil},
		{"own instance on the path, even newer", from, nodeAd("5", "loc3", "N5", 9, 9, "C7", "C1", "C4"), dropLoop, nil},
		{"an ad of this location from another one", from, nodeAd("2", "loc1", "N2", 1, 1, "C1", "C4"), dropLoop, nil},
		{"no provenance: the sender is kept", from, nodeAd("6", "loc3", "N6", 1, 1), "", []string{"C4", "C1"}},
		{"aged past the TTL on the way", from, command.Ad{Kind: command.AdNode, ID: "8", Location: "loc2", Instance: "N8", Incarnation: 1, Generation: 1, Path: []string{"C4"}, AgeMs: 10_000}, dropExpired, nil},
		{"no instance", from, nodeAd("9", "loc2", "", 1, 1, "C4"), dropInvalid, nil},
	}
	for _, tc := range cases {
		d := b.receive(t0, tc.from, tc.ad, true)
		if tc.drop != "" {
			if d.Accepted || d.Drop != tc.drop {
				t.Errorf("%s: accepted %v drop %q, want dropped %q", tc.name, d.Accepted, d.Drop, tc.drop)
			}
			continue
		}
		if !d.Accepted {
			t.Errorf("%s: dropped %q, want accepted", tc.name, d.Drop)
			continue
		}
		if !slices.Equal(d.Held.Path, tc.path) {
			t.Errorf("%s: held with path %v, want %v", tc.name, d.Held.Path, tc.path)
		}
	}
	st := b.counters()
	if st.Received != uint64(len(cases))+2 || st.Dropped[dropLoop] != 2 || st.Dropped[dropOlder] != 3 || st.Dropped[dropOwn] != 2 {
		t.Fatalf("counters %+v", st)
	}
	for _, ad := range b.list(t0) {
		if ad.Instance == "C1" && len(ad.Path) != 0 {
			t.Fatalf("own ad held with path %v", ad.Path)
		}
	}
}

// TestAdBookForwarding: a leader passes an accepted ad to every other location except the
// origin's and those its path went through (the sender's included), and to its followers
// except the origin; the batch carries the path with this controller last and the age;
// nothing is passed on twice; a follower passes nothing on and sends its own ad to its
// leader.
func TestAdBookForwarding(t *testing.T) {
	seeds := map[string][]string{"loc2": {"c4:1"}, "loc3": {"c7:1"}, "loc4": {"c10:1"}}
	b := testBook("loc1", "c1", "C1", seeds)
	for _, f := range []string{"c2", "c3"} {
		b.receive(t0, sender(f, "loc1", "C"+f[1:]), ctlAd(f, "loc1", "C"+f[1:], 1, 1), true) // followers' own ads
	}
	for _, l := range []struct{ id, loc string }{{"c4", "loc2"}, {"c7", "loc3"}, {"c10", "loc4"}} {
		b.receive(t0, sender(l.id, l.loc, "C"+l.id[1:]), ctlAd(l.id, l.loc, "C"+l.id[1:], 1, 1), true)
	}
	b.drain(t0, nil)
	// A node of loc2, heard by loc2's leader C4, relayed by loc3's C7.
	d := b.receive(t0, sender("c7", "loc3", "C7"), nodeAd("4", "loc2", "N4", 1, 1, "C4", "C7"), true)
	if !d.Accepted {
		t.Fatalf("dropped %s", d.Drop)
	}
	msgs := b.drain(t0.Add(300*time.Millisecond), nil)
	got := map[adTarget][]string{}
	for _, m := range msgs {
		for _, ad := range m.Ads {
			got[m.To] = append(got[m.To], ad.ID)
			if !slices.Equal(ad.Path, []string{"C4", "C7", "C1"}) || ad.AgeMs != 300 {
				t.Errorf("to %v: path %v age %d, want [C4 C7 C1] and 300", m.To, ad.Path, ad.AgeMs)
			}
		}
	}
	want := map[adTarget][]string{{Location: "loc4"}: {"4"}, {Location: "loc1", Instance: "C2"}: {"4"}, {Location: "loc1", Instance: "C3"}: {"4"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("sent %v, want %v (not to loc2, the origin's, nor loc3, the sender's)", got, want)
	}
	if more := b.drain(t0.Add(time.Second), nil); len(more) != 0 {
		t.Fatalf("sent again: %+v", more)
	}
	// A follower's own ad reaches the leader first hand and goes to the other locations and
	// the other follower, not back to its origin.
	b.receive(t0, sender("c2", "loc1", "C2"), ctlAd("c2", "loc1", "C2", 1, 2), true)
	got = map[adTarget][]string{}
	for _, m := range b.drain(t0, nil) {
		got[m.To] = append(got[m.To], m.Ads[0].ID)
	}
	want = map[adTarget][]string{{Location: "loc2"}: {"c2"}, {Location: "loc3"}: {"c2"}, {Location: "loc4"}: {"c2"}, {Location: "loc1", Instance: "C3"}: {"c2"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("a follower's ad went to %v, want %v", got, want)
	}

	f := testBook("loc1", "c2", "C2", seeds)
	if d := f.receive(t0, sender("c1", "loc1", "C1"), nodeAd("4", "loc2", "N4", 1, 2, "C4", "C1"), false); !d.Accepted || len(d.To) != 0 {
		t.Fatalf("a follower took %+v", d)
	}
	f.originate(t0, false)
	msgs = f.drain(t0, nil)
	if len(msgs) != 1 || msgs[0].To != (adTarget{Location: "loc1"}) || msgs[0].Ads[0].ID != "c2" || len(msgs[0].Ads) != 1 {
		t.Fatalf("a follower sent %+v, want only its own ad, to its leader", msgs)
	}
}

// TestAdBookNewerVersionReplacesQueued: a version waiting to go out is replaced by a newer
// one, so only the newest goes.
func TestAdBookNewerVersionReplacesQueued(t *testing.T) {
	b := testBook("loc1", "c1", "C1", map[string][]string{"loc2": {"c4:1"}})
	for gen := uint64(1); gen <= 3; gen++ {
		b.hear(t0.Add(time.Duration(gen)*time.Second), nodeAd("1", "loc1", "N1", 1, gen), true)
	}
	msgs := b.drain(t0.Add(4*time.Second), nil)
	if len(msgs) != 1 || len(msgs[0].Ads) != 1 || msgs[0].Ads[0].Generation != 3 {
		t.Fatalf("sent %+v, want generation 3 alone", msgs)
	}
}

// TestAdBookHearRefresh: a node's heartbeats at the leader are its ads, taken again only
// every Refresh unless its life or address changed.
func TestAdBookHearRefresh(t *testing.T) {
	b := testBook("loc1", "c1", "C1", nil)
	steps := []struct {
		at    time.Duration
		ad    command.Ad
		taken bool
	}{
		{0, nodeAd("1", "loc1", "N1", 1, 1), true},
		{250 * time.Millisecond, nodeAd("1", "loc1", "N1", 1, 2), false},
		{750 * time.Millisecond, nodeAd("1", "loc1", "N1", 1, 4), false},
		{time.Second, nodeAd("1", "loc1", "N1", 1, 5), true},
		{1100 * time.Millisecond, nodeAd("1", "loc1", "N1b", 2, 1), true}, // a restart
	}
	for i, s := range steps {
		d, taken := b.hear(t0.Add(s.at), s.ad, true)
		if taken != s.taken {
			t.Fatalf("at %v generation %d: taken %v, want %v", s.at, s.ad.Generation, taken, s.taken)
		}
		if restart := i == len(steps)-1; d.NewLife != restart {
			t.Fatalf("at %v: NewLife %v, want %v", s.at, d.NewLife, restart)
		}
	}
}

// TestAdBookExpiry: an ad of another location expires TTL after its origin's location
// heard it (hops included); a late copy of the same version is not taken again; this
// location's ads never expire; configured locations stay known.
func TestAdBookExpiry(t *testing.T) {
	seeds := map[string][]string{"loc2": {"c4:1", "c5:1"}}
	b := testBook("loc1", "c1", "C1", seeds)
	b.originate(t0, true)
	b.hear(t0, nodeAd("1", "loc1", "N1", 1, 1), true)
	b.receive(t0, sender("c2", "loc1", "C2"), ctlAd("c2", "loc1", "C2", 1, 1), true)
	aged := nodeAd("4", "loc2", "N4", 1, 7, "C4")
	aged.AgeMs = 4000
	b.receive(t0, sender("c4", "loc2", "C4"), aged, true)
	b.receive(t0, sender("c4", "loc2", "C4"), ctlAd("c4", "loc2", "C4", 1, 1), true)
	b.expire(t0.Add(5999 * time.Millisecond))
	if len(b.list(t0)) != 5 {
		t.Fatalf("expired too early: %+v", b.list(t0))
	}
	b.expire(t0.Add(6 * time.Second))
	var ids []string
	for _, ad := range b.list(t0.Add(6 * time.Second)) {
		ids = append(ids, ad.Kind+"/"+ad.ID)
	}
	if !slices.Equal(ids, []string{"controller/c1", "controller/c2", "controller/c4", "node/1"}) {
		t.Fatalf("after 6 s held %v: want node 4 (age 4 s on arrival) gone, the rest kept", ids)
	}
	late := nodeAd("4", "loc2", "N4", 1, 7, "C4", "C7")
	if d := b.receive(t0.Add(7*time.Second), sender("c7", "loc3", "C7"), late, true); d.Accepted {
		t.Fatal("a late copy of an expired version was taken again")
	}
	b.expire(t0.Add(time.Hour))
	ids = nil
	for _, ad := range b.list(t0.Add(time.Hour)) {
		ids = append(ids, ad.Kind+"/"+ad.ID)
	}
	if !slices.Equal(ids, []string{"controller/c1", "controller/c2", "node/1"}) {
		t.Fatalf("after an hour held %v, want this location's ads only", ids)
	}
	locs := b.locations(t0.Add(time.Hour))
	if len(locs) != 1 || locs[0].Name != "loc2" || !slices.Equal(locs[0].Seeds, seeds["loc2"]) || locs[0].Reachable {
		t.Fatalf("locations %+v: want loc2 with its seeds, unreachable", locs)
	}
	if got := b.addrsOf("loc2"); !slices.Equal(got, []string{"c4:1", "c5:1"}) {
		t.Fatalf("addresses of loc2: %v", got)
	}
}

// TestAdBookLocations: reachability and leaders as a leader sees them.
func TestAdBookLocations(t *testing.T) {
	seeds := map[string][]string{"loc2": {"c4:1"}, "loc3": {"c7:1"}}
	b := testBook("loc1", "c1", "C1", seeds)
	b.heard(t0, sender("c5", "loc2", "C5"))
	b.receive(t0, sender("c5", "loc2", "C5"), ctlAd("c5", "loc2", "C5", 1, 1), true)
	b.receive(t0, sender("c5", "loc2", "C5"), ctlAd("c4", "loc2", "C4", 1, 1, "C5"), true)
	b.sent(t0, adMessage{To: adTarget{Location: "loc2"}}, "c5:1", true)
	b.sent(t0, adMessage{To: adTarget{Location: "loc3"}, Ads: []command.Ad{{}}}, "", false)
	got := b.locations(t0.Add(time.Second))
	if len(got) != 2 || got[0].Name != "loc2" || got[1].Name != "loc3" {
		t.Fatalf("locations %+v", got)
	}
	if l := got[0]; !l.Reachable || l.LeaderID != "c5" || l.LeaderAddr != "c5:1" || len(l.Controllers) != 2 || !l.Heard.Equal(t0) {
		t.Fatalf("loc2 %+v: want reachable, led by c5, two controllers, heard at t0", l)
	}
	if l := got[1]; l.Reachable || l.LeaderID != "" || !l.Heard.IsZero() {
		t.Fatalf("loc3 %+v: want unreachable, no leader known, never heard", l)
	}
	if got := b.addrsOf("loc2"); !slices.Equal(got, []string{"c5:1", "c4:1"}) {
		t.Fatalf("addresses of loc2 %v: the leader first, then the seed", got)
	}
	if got := b.locations(t0.Add(4 * time.Second)); got[0].Reachable {
		t.Fatal("loc2 still reachable 4 s after the last delivery")
	}
	if b.counters().Dropped[dropUnsent] != 1 {
		t.Fatalf("counters %+v", b.counters())
	}
}
