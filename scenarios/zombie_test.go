package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// siblingState is node's state in group g's status ("" when it is not a sibling).
func siblingState(t *testing.T, c *Cluster, g uint16, node uint16) (state string, stale bool) {
	t.Helper()
	for _, s := range groupStatus(t, c, g).Siblings {
		if s.Node == node {
			return s.State, s.Stale
		}
	}
	return "", false
}

// TestZombieSiblingAfterVacuum (docs/design.md "Deletion, vacuuming and zombies", docs/replication.md
// case 12): a sibling is killed; 500 resources are deleted and 500 updated; the copy is
// demoted to stale after copy-timeout, the log is compacted past it and the tombstones are
// vacuumed; then it comes back with its args. While it returns, no sibling read on it may
// show a deleted resource, and once it votes again it must hold no deleted resource and no
// stale version. Two writers run throughout for the porcupine and lost-write checks.
func TestZombieSiblingAfterVacuum(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 12))
	c := StartCluster(t, Options{Nodes: 4, CopyTimeout: 3 * time.Second,
		NodeFlags: "--log-keep 200 --log-keep-max 400 --vacuum-every 200ms --tombstone-retention 1ms"})
	sg := c.WaitVoting(1, 3)
	main := int(*sg.Main)
	victim := int(sg.Siblings[rng.IntN(len(sg.Siblings))].Node)
	rids := fill(t, c, 1, 1000, 64, 8)

	h := NewHistory()
	ws, stop := startWritersFrom(t, c, h, 1, 2, othersThan(victim, 4), 100)
	vcl := c.Client(victim)
	waitFor(t, 20*time.Second, "the victim holds every resource", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := vcl.Do(ctx, &command.Request{Op: command.OpGet, RID: rids[len(rids)-1], Consistency: command.SiblingRead})
		return err == nil && r.Resource != nil
	})
	vcl.Close()
	c.Kill(c.Node(victim))

	cl := c.Client(othersThan(victim, 4)...)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	deleted, updated := rids[:500], rids[500:]
	var lastDelete uint64
	for i, rid := range deleted {
		r, err := cl.DoRetry(ctx, &command.Request{Op: command.OpDelete, RID: rid, Key: fmt.Sprintf("del-%d", i)})
		if err != nil && command.CodeOf(err) != command.CodeNotFound {
			t.Fatalf("delete %s: %v", rid, err)
		}
		if err == nil {
			lastDelete = max(lastDelete, r.Seq)
		}
	}
	want := map[string]uint64{}
	for i, rid := range updated {
		r, err := cl.DoRetry(ctx, &command.Request{Op: command.OpUpdate, RID: rid, Data: json.RawMessage(`"new"`), Key: fmt.Sprintf("upd-%d", i)})
		if err != nil {
			t.Fatalf("update %s: %v", rid, err)
		}
		want[rid] = r.Resource.Version
	}
	waitFor(t, 30*time.Second, "the victim demoted to stale", func() bool {
		_, stale := siblingState(t, c, 1, uint16(victim))
		return stale
	})
	vacuumMetric := `sibyl_node_vacuum_tombstones_through{group="1"}`
	waitFor(t, 30*time.Second, "a vacuum past the last delete", func() bool {
		return c.Metric(main, vacuumMetric) >= float64(lastDelete)
	})
	t.Logf("victim node %d stale; main vacuumed tombstones through seq %.0f (last delete at %d), compacted %.0f entries",
		victim, c.Metric(main, vacuumMetric), lastDelete, c.Metric(main, "sibyl_node_log_compacted_entries_total"))

	// The victim comes back on its old data. Until it votes again, sibling reads on it must
	// never show a deleted resource.
	c.Restart(c.Node(victim))
	c.WaitServing(victim)
	vcl = c.Client(victim)
	defer vcl.Close()
	zombies, probes := 0, 0
	probe := func() {
		rid := deleted[rng.IntN(len(deleted))]
		pctx, pcancel := context.WithTimeout(context.Background(), time.Second)
		defer pcancel()
		r, err := vcl.Do(pctx, &command.Request{Op: command.OpGet, RID: rid, Consistency: command.SiblingRead})
		probes++
		if err == nil && r.Resource != nil {
			zombies++
			t.Errorf("zombie: deleted %s read on node %d at version %d", rid, victim, r.Resource.Version)
		}
	}
	waitFor(t, 60*time.Second, "the victim voting again", func() bool {
		probe()
		st, stale := siblingState(t, c, 1, uint16(victim))
		return st == command.SiblingVoting && !stale
	})
	stop()
	if sent := c.Metric(main, "sibyl_node_snapshot_sent_bytes_total"); sent == 0 {
		t.Fatalf("node %d votes again but the main sent no snapshot: its old copy was not rebuilt", victim)
	}

	// Once it votes: no deleted resource, no stale version, on the victim itself.
	stale := 0
	for range deleted {
		probe()
	}
	for rid, v := range want {
		r, err := readOn(vcl, rid)
		if err != nil || r.Resource.Version != v {
			stale++
			if stale <= 3 {
				t.Errorf("%s on node %d: %+v, %v; want version %d", rid, victim, r, err, v)
			}
		}
	}
	lost := checkRun(t, c, h, ws, main)
	t.Logf("victim node %d: %d sibling reads of deleted resources while returning and after, %d zombies; %d of %d updated resources stale; writers lost %d, linearizable: yes",
		victim, probes, zombies, stale, len(want), lost)
}

// readOn reads rid on the client's own node (a sibling read), retrying while the copy
// is not serving yet.
func readOn(cl *client.Client, rid string) (*command.Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		r, err := cl.Do(ctx, &command.Request{Op: command.OpGet, RID: rid, Consistency: command.SiblingRead})
		if err == nil || ctx.Err() != nil || command.CodeOf(err) == command.CodeNotFound {
			return r, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
