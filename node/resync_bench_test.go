package node

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/node/store"
	"github.com/sibylhq/sibyl/sibling"
	resync "github.com/sibylhq/sibyl/sync"
)

// BenchmarkSnapshotTransfer measures the sync phase of a registration: a group of
// SIBYL_SYNC_BYTES (default 1 GiB) of resources, 1 KiB each, streamed from one bbolt store
// to another over a loopback WebSocket with no rate cap, every chunk durable on arrival.
// Next to it, in the same run and on the same file system, it measures the disk's
// sequential write speed (1 MiB writes, one fsync at the end). Filling the source is not
// timed. Run it on demand:
//
//	go test ./node -run x -bench SnapshotTransfer -benchtime 1x
func BenchmarkSnapshotTransfer(b *testing.B) {
	total := int64(1 << 30)
	if v, err := strconv.ParseInt(os.Getenv("SIBYL_SYNC_BYTES"), 10, 64); err == nil {
		total = v
	}
	dir := b.TempDir()
	src, err := store.OpenBolt(filepath.Join(dir, "src.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	sgs, err := src.Group(1)
	if err != nil {
		b.Fatal(err)
	}
	fillStart := time.Now()
	n := fillGroup(b, sgs, total, 1024)
	b.Logf("filled the source with %d resources (%d MiB) in %v", n, total>>20, time.Since(fillStart).Round(time.Millisecond))

	diskBefore := diskWriteSpeed(b, filepath.Join(dir, "disk-probe"), total)

	for i := 0; i < b.N; i++ {
		dst, err := store.OpenBolt(filepath.Join(dir, "dst"+strconv.Itoa(i)+".db"))
		if err != nil {
			b.Fatal(err)
		}
		dgs, err := dst.Group(1)
		if err != nil {
			b.Fatal(err)
		}
		snap, err := sgs.Snapshot(uint64(i + 1))
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := upgrader.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			c.SetReadLimit(64 << 20)
			sink := store.Sink(dgs)
			if os.Getenv("SIBYL_SYNC_NULL") != "" {
				sink = nullSink{}
			}
			if _, _, err := resync.Receive(context.Background(), wsFrames{c}, sink, resync.ReceiveOptions{}); err != nil {
				b.Error(err)
			}
		}))
		conn, _, err := snapshotDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		if path := os.Getenv("SIBYL_SYNC_PROFILE"); path != "" {
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
		start := time.Now()
		chunk, _ := strconv.Atoi(os.Getenv("SIBYL_SYNC_CHUNK"))
		st, err := resync.Send(context.Background(), wsFrames{conn}, snap, resync.SendOptions{ChunkBytes: chunk, ChunkRecords: resync.MaxChunkRecords})
		took := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		conn.Close()
		srv.Close()
		snap.Close()
		m, err := dgs.Meta()
		if os.Getenv("SIBYL_SYNC_NULL") != "" {
			m.Applied = uint64(n)
		}
		if err != nil || m.Applied != uint64(n) {
			b.Fatalf("destination after the transfer: %+v, %v", m, err)
		}
		// The disk's speed drifts on a shared machine: measure it on both sides of the
		// transfer and compare with the mean.
		diskAfter := diskWriteSpeed(b, filepath.Join(dir, "disk-probe"), total)
		diskMBps := (diskBefore + diskAfter) / 2
		mbps := float64(st.Bytes) / 1e6 / took.Seconds()
		b.ReportMetric(mbps, "sync-MB/s")
		b.ReportMetric(diskMBps, "disk-MB/s")
		b.Logf("sync: %d records, %.1f MB in %v = %.1f MB/s; disk sequential write %.1f MB/s before, %.1f after; ratio to the mean %.2f",
			st.Records, float64(st.Bytes)/1e6, took.Round(time.Millisecond), mbps, diskBefore, diskAfter, mbps/diskMBps)
		dst.Close()
	}
}

// fillGroup writes resources of about size bytes into gs until total bytes, then compacts
// the log away, as a long-running group's store looks. It returns the applied seq.
func fillGroup(b *testing.B, gs store.GroupStore, total int64, size int) int {
	ids := command.NewIDGen(1, nil)
	now := time.Now().UTC()
	data, _ := json.Marshal(strings.Repeat("x", size-2))
	const batch = 5000
	seq := 0
	for written := int64(0); written < total; {
		bt := &store.Batch{Epoch: 1}
		for i := 0; i < batch && written < total; i++ {
			seq++
			res := &command.Resource{ID: ids.Next(now).String(), Type: "blob", Version: 1, Data: data, Created: now, Updated: now}
			eff := command.Effect{Kind: command.EffectPut, RID: res.ID, Resource: res, At: now}
			bt.Append = append(bt.Append, sibling.Entry{Epoch: 1, Seq: uint64(seq)})
			bt.Apply = append(bt.Apply, store.AppliedEffect{Epoch: 1, Seq: uint64(seq), Effect: eff})
			written += int64(size)
		}
		bt.CommitSeq = uint64(seq)
		bt.Compact = uint64(seq)
		if err := gs.Write(bt); err != nil {
			b.Fatal(err)
		}
	}
	return seq
}

// diskWriteSpeed writes total bytes to path in 1 MiB writes, fsyncs once, and returns MB/s.
func diskWriteSpeed(b *testing.B, path string, total int64) float64 {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(path)
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	for w := int64(0); w < total; w += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	f.Close()
	return float64(total) / 1e6 / took.Seconds()
}

type nullSink struct{}

func (nullSink) Begin(resync.Header) (resync.Position, error) { return nil, nil }
func (nullSink) Write([]resync.Record) error                  { return nil }
func (nullSink) Finish(resync.Header) error                   { return nil }
