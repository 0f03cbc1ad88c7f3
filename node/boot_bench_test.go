package node

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/sibling"
)

// BenchmarkBoot measures a node's start to serving (Healthy) on a store that holds
// SIBYL_BOOT_RESOURCES resources (default 1,000,000) in its own group, all applied, after a
// crash that left the most log a boot replays. Filling the store is not
// timed. Run it on demand:
//
//	go test ./node -run x -bench Boot -benchtime 1x
func BenchmarkBoot(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("SIBYL_BOOT_RESOURCES")); err == nil {
		n = v
	}
	dir := b.TempDir()
	st, err := store.OpenDurable(dir, store.DurableOptions{})
	if err != nil {
		b.Fatal(err)
	}
	gs, err := st.Group(1)
	if err != nil {
		b.Fatal(err)
	}
	ids := command.NewIDGen(1, nil)
	now := time.Now().UTC()
	data := json.RawMessage(`{"payload":"0123456789012345678901234567890123456789012345678901234567890123"}`)
	const batch = 20000
	seq := uint64(0)
	fill := time.Now()
	var rids []string
	put := func(rid string, version uint64) (sibling.Entry, store.AppliedEffect) {
		seq++
		res := &command.Resource{ID: rid, Type: "job", Version: version, Data: data, Created: now, Updated: now}
		eff := command.Effect{Kind: command.EffectPut, RID: res.ID, Resource: res, At: now}
		enc, err := command.EncodeEffect(&eff)
		if err != nil {
			b.Fatal(err)
		}
		return sibling.Entry{Epoch: 1, Seq: seq, Data: enc}, store.AppliedEffect{Epoch: 1, Seq: seq, Effect: eff}
	}
	write := func(bt *store.Batch) {
		bt.CommitSeq = seq
		if err := gs.Write(bt); err != nil {
			b.Fatal(err)
		}
	}
	for done := 0; done < n; done += batch {
		bt := &store.Batch{Epoch: 1}
		for i := 0; i < batch && done+i < n; i++ {
			rid := ids.Next(now).String()
			rids = append(rids, rid)
			e, a := put(rid, 1)
			bt.Append, bt.Apply = append(bt.Append, e), append(bt.Apply, a)
		}
		write(bt)
	}
	// The worst case for recovery: the state store has everything up to a flush but the
	// log entries the last DefaultKeepFlushes flushes kept in memory (node/store/layer_carry.go;
	// here no compaction removed any), then almost a whole flush threshold of log follows the
	// last flush, and the process is killed. A boot replays the entries of all of it and the
	// changes of the last part.
	ws := st.(store.Durable)
	if err := ws.Flush(); err != nil {
		b.Fatal(err)
	}
	v := uint64(1)
	fillLog := func(bytes uint64) {
		for from := ws.LogEnd(); ws.LogEnd()-from < bytes; {
			v++
			bt := &store.Batch{}
			for i := 0; i < 2000; i++ {
				e, a := put(rids[(int(v)*2000+i)%len(rids)], v)
				bt.Append, bt.Apply = append(bt.Append, e), append(bt.Apply, a)
			}
			write(bt)
		}
	}
	tail := ws.LogEnd()
	for range store.DefaultKeepFlushes + 1 {
		fillLog(uint64(store.DefaultFlushBytes))
		if err := ws.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	fillLog(uint64(store.DefaultFlushBytes) * 9 / 10)
	logTail := ws.LogEnd() - tail
	if err := ws.Kill(); err != nil {
		b.Fatal(err)
	}
	info, _ := os.Stat(filepath.Join(dir, "sibyl.db"))
	b.Logf("filled %d resources (%d MiB) and %d MiB of log a boot replays in %v", n, info.Size()>>20,
		logTail>>20, time.Since(fill).Round(time.Second))

	addr := freeAddrB(b)
	dirInfo := command.Directory{Index: 1, Nodes: []command.NodeInfo{{ID: 1, Addr: addr, State: command.NodeUp}},
		Groups: []command.GroupInfo{{Server: 1, Epoch: 1, Main: 1, Active: command.Config{Version: 1}}}}
	fc := newFakeController(b, dirInfo)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		node, err := New(Config{ID: 1, HTTPAddr: addr, DataDir: dir, Controllers: []string{fc.addr},
			WriteTimeout: time.Second, DownAfter: time.Second, Logger: testLogger()})
		if err != nil {
			b.Fatal(err)
		}
		for !node.Healthy() || !node.localGroup(1).isMain() {
			if time.Since(start) > time.Minute {
				b.Fatal("node did not serve within a minute")
			}
			time.Sleep(time.Millisecond)
		}
		took := time.Since(start)
		b.ReportMetric(took.Seconds(), "s-to-serving")
		b.Logf("boot to serving with %d resources: %v", n, took.Round(time.Millisecond))
		node.Close()
	}
}

func freeAddrB(b *testing.B) string {
	b.Helper()
	return freeAddr(b)
}
