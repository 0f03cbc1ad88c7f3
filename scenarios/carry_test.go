package scenarios

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// TestCopiesRebuildLogEntriesKeptOutOfBbolt runs real processes whose flushes keep log
// entries in memory (node/store/layer_carry.go) every 100 ms, with a short LogKeep so most
// of them are compacted before any flush writes them. A sibling and then the main are
// killed with kill -9 and restarted: each boot rebuilds entries from the log alone (the
// test asserts it replayed records for their log entries), and the restarted sibling then
// serves as main, by a planned promotion. No acknowledged write is lost and the history is
// linearizable. That the rebuilt log holds exactly what it held before the crash is
// TestDurableLogMatchesTheMemoryStore's check (node/store): here most entries a boot
// rebuilds were applied already, so one it failed to rebuild would rarely show.
func TestCopiesRebuildLogEntriesKeptOutOfBbolt(t *testing.T) {
	c := StartCluster(t, Options{Nodes: 4, NodeFlags: "--flush-every 100ms --flush-bytes 1048576 --log-keep 300"})
	sg := c.WaitVoting(1, 3)
	main := int(*sg.Main)
	sibling := int(sg.Siblings[0].Node)
	h := NewHistory()
	ws, stop := startWriters(t, c, h, 1, 16, []int{1, 2, 3, 4})
	// Compaction starts once the log holds LogKeep plus a compaction step (1,024) of
	// applied entries; from then on flushes drop the entries it removed before writing them.
	waitFor(t, 60*time.Second, fmt.Sprintf("node %d's flushes dropping compacted log entries unwritten", main), func() bool {
		return c.Metric(main, `sibyl_store_flush_log_entries_total{fate="dropped"}`) > 0
	})

	restart := func(id int) {
		t.Helper()
		c.Kill(c.Node(id))
		c.Restart(c.Node(id))
		c.WaitServing(id)
		if n := c.Metric(id, `sibyl_store_boot_replayed_records{part="log"}`); n == 0 {
			t.Fatalf("node %d's boot replayed no record for its log entries only", id)
		}
		t.Logf("node %d restarted: it replayed %v records whole and %v for their log entries", id,
			c.Metric(id, `sibyl_store_boot_replayed_records{part="whole"}`), c.Metric(id, `sibyl_store_boot_replayed_records{part="log"}`))
	}
	restart(sibling)
	before := acked(ws)
	waitFor(t, 30*time.Second, "1,000 writes after the sibling's restart", func() bool { return acked(ws) >= before+1000 })
	restart(main)
	newMain, epoch := c.WaitNewMain(1, main)
	before = acked(ws)
	waitFor(t, 30*time.Second, "1,000 writes after the main's restart", func() bool { return acked(ws) >= before+1000 })

	// The sibling restarted first becomes main once it votes again.
	srv, node := int64(1), int64(sibling)
	waitFor(t, 60*time.Second, fmt.Sprintf("group 1 handed to node %d", sibling), func() bool {
		if int(newMain) == sibling {
			return true
		}
		_, err := c.Admin(othersThan(main, 4)...).Do(context.Background(), &command.Request{Op: command.OpPromote, Server: &srv, Node: &node})
		return err == nil
	})
	before = acked(ws)
	waitFor(t, 30*time.Second, "1,000 writes on the restarted copy as main", func() bool { return acked(ws) >= before+1000 })
	stop()
	lost := checkRun(t, c, h, ws, sibling)
	t.Logf("main %d and sibling %d killed and restarted, node %d main in epoch %d, then node %d; ops %d, lost %d, linearizable: yes",
		main, sibling, newMain, epoch, sibling, h.Len(), lost)
}
