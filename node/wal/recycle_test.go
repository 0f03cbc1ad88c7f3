package wal

import (
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

// appendSized appends n records of the same size (so that a reused file's old records lie
// exactly where new ones start) and returns their texts.
func appendSized(t *testing.T, l *Log, prefix string, n int) []string {
	t.Helper()
	var recs []string
	for i := range n {
		r := fmt.Sprintf("%s-%04d-%s", prefix, i, make([]byte, 80))
		mustAppend(t, l, r)
		recs = append(recs, r)
	}
	return recs
}

func countSpares(t *testing.T, dir string) int {
	t.Helper()
	_, spares, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(spares)
}

// Segments the log no longer needs become spares, the next segments reuse them, and the
// records the reused files still hold from their previous life never replay.
func TestRecycledSegmentsDoNotReplayTheirOldRecords(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		opts := Options{SegmentBytes: 4096}
		l, _ := openT(t, dir, opts)
		old := appendSized(t, l, "old", 200) // about five segments
		if err := l.TruncateBefore(l.End()); err != nil {
			t.Fatal(err)
		}
		if n := countSpares(t, dir); n != maxSpares {
			t.Fatalf("%d spares after truncating several segments, want %d", n, maxSpares)
		}
		want := appendSized(t, l, "new", 80) // two more segments: both reuse a spare
		if n := countSpares(t, dir); n != 0 {
			t.Fatalf("%d spares left after two rolls, want 0", n)
		}
		l.Close()
		_, got := openT(t, dir, opts)
		checkOldThenNew(t, recs(got), old, want)
	})
}

// checkOldThenNew checks that got is the last records of old (those of the segment that
// was current when the log was truncated) followed by every one of want, once each.
func checkOldThenNew(t *testing.T, got, old, want []string) {
	t.Helper()
	k := len(got) - len(want)
	if k < 0 || k > len(old) {
		t.Fatalf("replayed %d records; want a few old ones and the %d new ones", len(got), len(want))
	}
	if fmt.Sprint(got[:k]) != fmt.Sprint(old[len(old)-k:]) || fmt.Sprint(got[k:]) != fmt.Sprint(want) {
		t.Fatalf("replayed %d records: %.60q ... %.60q; want the last %d old ones, then the %d new ones",
			len(got), got[0], got[len(got)-1], k, len(want))
	}
}

// A crash after a spare got its new header and name but before any record reached it:
// the reopened log replays what came before, nothing of the file's previous life, and
// goes on appending.
func TestCrashWhileReusingASpare(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		opts := Options{SegmentBytes: 4096}
		l, _ := openT(t, dir, opts)
		old := appendSized(t, l, "old", 100)
		if err := l.TruncateBefore(l.End()); err != nil {
			t.Fatal(err)
		}
		want := appendSized(t, l, "kept", 3)
		end := l.End()
		l.Close()

		_, spares, _ := listSegments(dir)
		if len(spares) == 0 {
			t.Fatal("no spare to reuse")
		}
		l.dir = dir
		f, err := l.renew(spares[0], end, filepath.Join(dir, segmentName(end)))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()

		l2, got := openT(t, dir, opts)
		checkOldThenNew(t, recs(got), old, want)
		want = append(want, appendSized(t, l2, "after", 50)...)
		l2.Close()
		_, got = openT(t, dir, opts)
		checkOldThenNew(t, recs(got), old, want)
	})
}

// Segments written before checksums were keyed by position still replay, and the log goes
// on in new segments after them.
func TestVersion1SegmentsStillReplay(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		var data []byte
		data = append(data, segMagicV1...)
		data = append(data, make([]byte, 8)...) // starts at LSN 0
		var want []string
		for i := range 5 {
			rec := fmt.Sprintf("v1-%d", i)
			data = append(data, byte(0), byte(0), byte(0), byte(len(rec)))
			sum := recordSumV1([]byte(rec))
			data = append(data, byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum))
			data = append(data, rec...)
			want = append(want, rec)
		}
		data = append(data, make([]byte, 4096-len(data))...)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, segmentName(0)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, got := openT(t, dir, Options{})
		if fmt.Sprint(recs(got)) != fmt.Sprint(want) {
			t.Fatalf("replayed %v from a version 1 segment, want %v", recs(got), want)
		}
		want = append(want, appendSized(t, l, "v2", 3)...)
		l.Close()
		_, got = openT(t, dir, Options{})
		if fmt.Sprint(recs(got)) != fmt.Sprint(want) {
			t.Fatalf("replayed %v, want %v", recs(got), want)
		}
	})
}

// A record's checksum depends on where it lies: the same bytes at another LSN do not check.
func TestRecordChecksumIsKeyedByPosition(t *testing.T) {
	rec := []byte("payload")
	if recordSum(100, rec) == recordSum(200, rec) {
		t.Fatal("the same record at LSNs 100 and 200 has the same checksum")
	}
	buf := appendRecord(nil, 100, rec)
	buf = appendRecord(buf, 100+uint64(len(buf)), rec)
	rekeyRecords(buf, 500)
	again := appendRecord(nil, 500, rec)
	again = appendRecord(again, 500+uint64(len(again)), rec)
	if string(buf) != string(again) {
		t.Fatal("rekeyed records differ from records framed at their new position")
	}
}

func recordSumV1(rec []byte) uint32 { return crc32.Checksum(rec, crcTable) }

// A crash tore the first write into a new segment: its first block never reached the disk
// but a later one did, holding records keyed with their true positions, never
// acknowledged. The reopened log starts a new segment at the same LSN; when the records it
// appends end exactly where a stale one starts, the stale one must still not replay.
func TestTornFirstBlockOfASegmentNeverReplays(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		opts := Options{SegmentBytes: 4 * blockSize}
		l, _ := openT(t, dir, opts)
		want := []string{"before"}
		mustAppend(t, l, want[0])
		start := l.End()
		l.Close()

		// The segment the torn write went to: a header, a lost first block, then a ghost
		// record at the start of the second block.
		seg := make([]byte, opts.SegmentBytes)
		copy(seg, segmentHeader(start))
		ghostAt := start + blockSize - segHeader
		copy(seg[blockSize:], appendRecord(nil, ghostAt, []byte("ghost")))
		if err := os.WriteFile(filepath.Join(dir, segmentName(start)), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		l2, got := openT(t, dir, opts)
		if fmt.Sprint(recs(got)) != fmt.Sprint(want) {
			t.Fatalf("replayed %v, want %v", recs(got), want)
		}
		// One record that fills the first block exactly: the log's end is then the
		// ghost's position.
		fill := string(make([]byte, blockSize-segHeader-recordHeader))
		if lsn := mustAppend(t, l2, fill); lsn != ghostAt {
			t.Fatalf("the filling record ends at %d, want %d", lsn, ghostAt)
		}
		want = append(want, fill)
		l2.Close()
		_, got = openT(t, dir, opts)
		for _, r := range recs(got) {
			if r == "ghost" {
				t.Fatal("a record of a torn write that was never acknowledged replayed")
			}
		}
		if len(got) != len(want) {
			t.Fatalf("replayed %d records, want %d", len(got), len(want))
		}
	})
}
