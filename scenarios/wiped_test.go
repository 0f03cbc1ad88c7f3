package scenarios

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// directoryMember returns node's member record in group g from the controller leader's
// directory (the internal endpoint; dev clusters run without a cluster secret).
func directoryMember(t *testing.T, c *Cluster, g, node uint16) (command.Member, bool) {
	t.Helper()
	for _, ctl := range c.Controllers {
		resp, err := http.Get("http://" + ctl.HTTP + "/v1/internal/directory?after=0")
		if err != nil {
			continue
		}
		var d command.Directory
		err = json.NewDecoder(resp.Body).Decode(&d)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			continue
		}
		if gi := d.Group(g); gi != nil {
			for _, m := range gi.Siblings {
				if m.Node == node {
					return m, true
				}
			}
		}
		return command.Member{}, false
	}
	t.Fatal("no controller answered with a directory")
	return command.Member{}, false
}

// dataDir returns the --data argument of a process.
func dataDir(t *testing.T, p *Proc) string {
	t.Helper()
	for i, a := range p.Args {
		if a == "--data" && i+1 < len(p.Args) {
			return p.Args[i+1]
		}
	}
	t.Fatalf("%s has no --data argument", p.Name())
	return ""
}

// TestWipedSiblingRejoins (docs/replication.md cases 5 D and 14 e): a voting sibling is killed
// and its data directory deleted, then it starts again with its args. Its seals must not
// count (another copy ID), the controller demotes it to a learner by a config change, the
// main catches it up from nothing, and it votes again with its new copy, while writers go
// on: 0 lost, linearizable, and the copy serves every acknowledged version afterwards.
func TestWipedSiblingRejoins(t *testing.T) {
	c := StartCluster(t, Options{Nodes: 4})
	sg := c.WaitVoting(1, 3)
	main := int(*sg.Main)
	victim := int(sg.Siblings[0].Node)
	h := NewHistory()
	ws, stop := startWritersFrom(t, c, h, 1, 4, othersThan(victim, 4), 200)
	waitFor(t, 20*time.Second, "writes before", func() bool { return acked(ws) >= 200 })

	old, ok := directoryMember(t, c, 1, uint16(victim))
	if !ok || old.CopyID == "" {
		t.Fatalf("node %d's member record before the wipe: %+v", victim, old)
	}
	c.Kill(c.Node(victim))
	if err := os.RemoveAll(dataDir(t, c.Node(victim))); err != nil {
		t.Fatal(err)
	}
	before := acked(ws)
	waitFor(t, 20*time.Second, "writes while it is away", func() bool { return acked(ws) >= before+100 })
	wipedAt := time.Now()
	c.Restart(c.Node(victim))
	c.WaitServing(victim)

	demoted := false
	waitFor(t, 60*time.Second, "the wiped copy demoted, then voting again with its new copy ID", func() bool {
		m, ok := directoryMember(t, c, 1, uint16(victim))
		demoted = demoted || (ok && m.State == command.SiblingSyncing)
		return ok && m.State == command.SiblingVoting && m.CopyID != "" && m.CopyID != old.CopyID
	})
	if !demoted {
		t.Log("the demotion to a learner was not seen between polls (it may have been brief)")
	}
	took := time.Since(wipedAt)
	before = acked(ws)
	waitFor(t, 20*time.Second, "writes after", func() bool { return acked(ws) >= before+100 })
	stop()
	lost := checkRun(t, c, h, ws, main)

	// The rebuilt copy serves every writer's last acknowledged version.
	vcl := c.Client(victim)
	defer vcl.Close()
	for _, w := range ws {
		rid, want, gone, maybeGone := w.state()
		if gone || maybeGone {
			continue // the writer's last resource was deleted (its read is checked above)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var got uint64
		for ctx.Err() == nil {
			r, err := vcl.Do(ctx, &command.Request{Op: command.OpGet, RID: rid, Consistency: command.SiblingRead})
			if err == nil && r.Resource.Version >= want {
				got = r.Resource.Version
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if got < want {
			t.Errorf("writer %d: the rebuilt copy on node %d never served version %d of %s", w.id, victim, want, rid)
		}
	}
	t.Logf("node %d wiped and restarted: voting again %v later; ops %d, lost %d, linearizable: yes", victim, took.Round(time.Millisecond), h.Len(), lost)
}
