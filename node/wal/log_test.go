package wal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

type replayed struct {
	lsn uint64
	rec string
}

// forEachWriteMode runs test once with direct writes and once buffered (Options.Buffered):
// openT picks the mode from the subtest's name.
func forEachWriteMode(t *testing.T, test func(t *testing.T)) {
	t.Run("direct", test)
	t.Run("buffered", test)
}

func openT(t *testing.T, dir string, opts Options) (*Log, []replayed) {
	t.Helper()
	opts.Buffered = strings.Contains(t.Name()+"/", "/buffered/")
	var got []replayed
	l, err := Open(dir, opts, func(lsn uint64, rec []byte) error {
		got = append(got, replayed{lsn, string(rec)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return l, got
}

func TestAppendReopenReplaysInOrder(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		l, got := openT(t, dir, Options{SegmentBytes: 4096})
		if len(got) != 0 {
			t.Fatalf("new log replayed %v", got)
		}
		var want []replayed
		for i := range 200 {
			rec := fmt.Sprintf("record-%03d-%s", i, bytes.Repeat([]byte("x"), i%50))
			lsn, err := l.Append([]byte(rec))
			if err != nil {
				t.Fatal(err)
			}
			if len(want) > 0 && lsn <= want[len(want)-1].lsn {
				t.Fatalf("LSN %d after %d", lsn, want[len(want)-1].lsn)
			}
			want = append(want, replayed{lsn, rec})
		}
		if l.Segments() < 3 {
			t.Fatalf("%d segments of 4 KiB for 200 records; want rolls", l.Segments())
		}
		end := l.End()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l2, got := openT(t, dir, Options{SegmentBytes: 4096})
		defer l2.Close()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("replayed %d records, want %d\n got %v\nwant %v", len(got), len(want), got, want)
		}
		if l2.End() != end {
			t.Fatalf("reopened log ends at %d, want %d", l2.End(), end)
		}
		// Appends after a reopen continue the LSNs and survive the next reopen too.
		lsn, err := l2.Append([]byte("after"))
		if err != nil || lsn != end+recordHeader+5 {
			t.Fatalf("append after reopen: lsn %d err %v, want %d", lsn, err, end+recordHeader+5)
		}
		l2.Close()
		l3, got := openT(t, dir, Options{SegmentBytes: 4096})
		defer l3.Close()
		if len(got) != 201 || got[200].rec != "after" {
			t.Fatalf("third open replayed %d records, last %v", len(got), got[len(got)-1])
		}
	})
}

func TestConcurrentAppendsShareSyncs(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		l, _ := openT(t, t.TempDir(), Options{})
		defer l.Close()
		const writers, each = 16, 50
		var wg sync.WaitGroup
		lsns := make(chan uint64, writers*each)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					lsn, err := l.Append([]byte(fmt.Sprintf("w%d-%d", w, i)))
					if err != nil {
						t.Error(err)
						return
					}
					lsns <- lsn
				}
			}()
		}
		wg.Wait()
		close(lsns)
		seen := map[uint64]bool{}
		for lsn := range lsns {
			if seen[lsn] {
				t.Fatalf("LSN %d handed out twice", lsn)
			}
			seen[lsn] = true
		}
		st := l.Stats()
		if st.Records != writers*each {
			t.Fatalf("stats count %d records, want %d", st.Records, writers*each)
		}
		if st.Syncs >= st.Records {
			t.Fatalf("%d syncs for %d records from %d concurrent writers: no group commit", st.Syncs, st.Records, writers)
		}
		t.Logf("%d records, %d syncs", st.Records, st.Syncs)
	})
}

// A write cut short by a crash leaves a torn record; Open stops there and the next
// records go to a new segment that starts at the intact end.
func TestTornTailIsDroppedAndOverwrittenSafely(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		l, _ := openT(t, dir, Options{})
		for i := range 10 {
			if _, err := l.Append([]byte(fmt.Sprintf("rec-%d", i))); err != nil {
				t.Fatal(err)
			}
		}
		end := l.End()
		l.Close()
		segs, _, _ := listSegments(dir)
		last := segs[len(segs)-1]
		// A torn record after the intact ones: a header that promises more than was written,
		// and a valid-looking record after it that was never acknowledged.
		f, err := os.OpenFile(last.path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		off := int64(segHeader) + int64(end-last.start)
		torn := appendRecord(nil, end, []byte("torn-record-payload"))
		torn[len(torn)-1] ^= 0xff
		torn = appendRecord(torn, end+uint64(len(torn)), []byte("ghost"))
		if _, err := f.WriteAt(torn, off); err != nil {
			t.Fatal(err)
		}
		f.Close()

		l2, got := openT(t, dir, Options{})
		if len(got) != 10 || l2.End() != end {
			t.Fatalf("replayed %d records ending at %d, want 10 ending at %d", len(got), l2.End(), end)
		}
		if _, err := l2.Append([]byte("new")); err != nil {
			t.Fatal(err)
		}
		l2.Close()
		_, got = openT(t, dir, Options{})
		if len(got) != 11 || got[10].rec != "new" {
			t.Fatalf("after a torn tail: replayed %v", got)
		}
		for _, r := range got {
			if r.rec == "ghost" || r.rec == "torn-record-payload" {
				t.Fatalf("replayed %q, which was never acknowledged", r.rec)
			}
		}
	})
}

func TestCorruptionInAnOlderSegmentFailsOpen(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		l, _ := openT(t, dir, Options{SegmentBytes: 1024})
		for i := range 100 {
			if _, err := l.Append(bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
		segs, _, _ := listSegments(dir)
		f, _ := os.OpenFile(segs[1].path, os.O_RDWR, 0)
		if _, err := f.WriteAt([]byte{0xde, 0xad}, segHeader+recordHeader+3); err != nil {
			t.Fatal(err)
		}
		f.Close()
		_, err := Open(dir, Options{SegmentBytes: 1024}, func(uint64, []byte) error { return nil })
		if err == nil {
			t.Fatal("opened a log with a corrupt record in the middle")
		}
		t.Log(err)
	})
}

func TestRecordLargerThanASegment(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		l, _ := openT(t, dir, Options{SegmentBytes: 1024})
		big := bytes.Repeat([]byte("b"), 5000)
		if _, err := l.Append([]byte("small")); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(big); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append([]byte("after")); err != nil {
			t.Fatal(err)
		}
		l.Close()
		_, got := openT(t, dir, Options{SegmentBytes: 1024})
		if len(got) != 3 || got[1].rec != string(big) || got[2].rec != "after" {
			t.Fatalf("replayed %d records", len(got))
		}
	})
}

func TestTruncateBeforeKeepsWhatIsNeeded(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		l, _ := openT(t, dir, Options{SegmentBytes: 1024})
		var lsns []uint64
		for i := range 100 {
			lsn, err := l.Append(bytes.Repeat([]byte{byte(i)}, 100))
			if err != nil {
				t.Fatal(err)
			}
			lsns = append(lsns, lsn)
		}
		before := l.Segments()
		keepFrom := lsns[60] // records after this must survive
		if err := l.TruncateBefore(keepFrom); err != nil {
			t.Fatal(err)
		}
		if l.Segments() >= before {
			t.Fatalf("truncate removed nothing (%d segments)", before)
		}
		l.Close()
		_, got := openT(t, dir, Options{SegmentBytes: 1024})
		if len(got) == 0 || got[0].lsn > lsns[61] {
			t.Fatalf("after truncating at %d the first replayed record is %d; record %d was lost", keepFrom, got[0].lsn, lsns[61])
		}
		if got[len(got)-1].lsn != lsns[99] {
			t.Fatalf("last replayed LSN %d, want %d", got[len(got)-1].lsn, lsns[99])
		}
	})
}

func TestEmptySegmentLeftByACrashIsRemoved(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		l, _ := openT(t, dir, Options{})
		if _, err := l.Append([]byte("a")); err != nil {
			t.Fatal(err)
		}
		end := l.End()
		l.Close()
		// A segment file created but whose header never reached the disk.
		if err := os.WriteFile(filepath.Join(dir, segmentName(end)), make([]byte, 64), 0o600); err != nil {
			t.Fatal(err)
		}
		l2, got := openT(t, dir, Options{})
		defer l2.Close()
		if len(got) != 1 {
			t.Fatalf("replayed %d records", len(got))
		}
	})
}

// A lazy record is written by the next synced append, in order, or by Close.
func TestLazyRecordsAreWrittenInOrder(t *testing.T) {
	forEachWriteMode(t, func(t *testing.T) {
		dir := t.TempDir()
		l, _ := openT(t, dir, Options{})
		if _, err := l.AppendLazy([]byte("lazy-1")); err != nil {
			t.Fatal(err)
		}
		if st := l.Stats(); st.Syncs != 0 {
			t.Fatalf("a lazy append synced (%d syncs)", st.Syncs)
		}
		if _, err := l.Append([]byte("synced-2")); err != nil {
			t.Fatal(err)
		}
		if _, err := l.AppendLazy([]byte("lazy-3")); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		_, got := openT(t, dir, Options{})
		if len(got) != 3 || got[0].rec != "lazy-1" || got[1].rec != "synced-2" || got[2].rec != "lazy-3" {
			t.Fatalf("replayed %v", got)
		}
	})
}
