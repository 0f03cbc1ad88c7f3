package scenarios

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// TestDiskFullOnASmallFilesystem puts group 1's main's data directory on a 32 MiB tmpfs and
// fills it with a file while real processes write: the node must show "degraded" with its
// reason in /v1/status and answer /healthz with 503, be replaced as main by promotion, and
// once the file is removed come back by itself as a sibling that catches up; no acknowledged
// write is lost and the history is linearizable. It needs to mount a filesystem (root in
// a container usually may); elsewhere it skips, saying so.
func TestDiskFullOnASmallFilesystem(t *testing.T) {
	if err := canMountTmpfs(t); err != nil {
		t.Skipf("skipped: this scenario needs a small real filesystem that fills up, and mounting a tmpfs is not allowed here: %v", err)
	}
	c := StartCluster(t, Options{Nodes: 4,
		NodeFlags: "--flush-every 200ms --flush-bytes 1048576 --wal-segment-bytes 1048576"})
	sg := c.WaitVoting(1, 3)
	main := int(*sg.Main)
	p := c.Node(main)
	data := argAfter(p.Args, "--data")
	if data == "" {
		t.Fatalf("node %d's args name no --data: %v", main, p.Args)
	}
	// Move the main's data directory onto the small filesystem, across a restart.
	c.Kill(p)
	if err := os.Rename(data, data+".orig"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", data).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v: %s", data, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", data).Run() }) // lazily: runs before the cluster stops
	if out, err := exec.Command("cp", "-a", data+".orig/.", data+"/").CombinedOutput(); err != nil {
		t.Fatalf("copy the data directory onto the tmpfs: %v: %s", err, out)
	}
	c.Restart(p)
	c.WaitServing(main)
	// The kill moved group 1 elsewhere; a planned promotion brings it back once the copy
	// on the tmpfs votes again.
	admin := c.Client(othersThan(main, 4)...)
	waitFor(t, 60*time.Second, fmt.Sprintf("node %d main of group 1 again", main), func() bool {
		sg, ok := statusGroup(c, 1)
		if !ok || sg.Main == nil {
			return false
		}
		if int(*sg.Main) == main {
			return true
		}
		for _, s := range sg.Siblings {
			if int(s.Node) == main && s.State == command.SiblingVoting && s.LagSeq == 0 {
				srv, nd := int64(1), int64(main)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, _ = admin.Do(ctx, &command.Request{Op: command.OpPromote, Server: &srv, Node: &nd})
				cancel()
			}
		}
		return false
	})

	h := NewHistory()
	ws, stop := startWriters(t, c, h, 1, 8, []int{1, 2, 3, 4})
	bulk := startBulkWriter(t, c, othersThan(main, 4))
	waitFor(t, 30*time.Second, "200 writes", func() bool { return acked(ws) >= 200 })

	// Fill the filesystem.
	filler := filepath.Join(data, "filler")
	filled, err := fillUp(filler)
	if err != nil {
		t.Fatal(err)
	}
	fullAt := time.Now()
	t.Logf("filled %s with %d MiB", data, filled>>20)
	var reason string
	waitFor(t, 60*time.Second, fmt.Sprintf("node %d degraded in /v1/status", main), func() bool {
		state, r := nodeState(c, main)
		reason = r
		return state == command.NodeDegraded
	})
	degradedAfter := time.Since(fullAt)
	if code := healthz(c, main); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz of the degraded node answers %d, want 503", code)
	}
	if !strings.Contains(reason, "no space left") {
		t.Errorf("degraded reason %q does not say the disk is full", reason)
	}
	newMain, epoch := c.WaitNewMain(1, main)
	replacedAfter := time.Since(fullAt)
	before := acked(ws)
	waitFor(t, 30*time.Second, "200 writes by the new main", func() bool { return acked(ws) >= before+200 })

	// Free the space: the node comes back without an operator.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freedAt := time.Now()
	waitFor(t, 60*time.Second, fmt.Sprintf("node %d up and serving", main), func() bool {
		state, _ := nodeState(c, main)
		return state == command.NodeUp && healthz(c, main) == http.StatusOK
	})
	upAfter := time.Since(freedAt)
	waitFor(t, 60*time.Second, fmt.Sprintf("node %d a sibling of group 1 that caught up", main), func() bool {
		sg, ok := statusGroup(c, 1)
		if !ok {
			return false
		}
		for _, s := range sg.Siblings {
			if int(s.Node) == main && s.LagSeq < 50 {
				return true
			}
		}
		return false
	})
	caughtUpAfter := time.Since(freedAt)
	stop()
	bulkAcked, bulkLost := bulk.finish(t, c.Client(int(newMain)))
	lost := checkRun(t, c, h, ws, int(newMain))
	if bulkLost > 0 {
		t.Errorf("%d acknowledged bulk creates lost", bulkLost)
	}
	t.Logf("degraded: %s", reason)
	t.Logf("disk full -> degraded %v, -> node %d main in epoch %d %v; space freed -> node %d up %v, caught up %v; %d ops, %d bulk creates of 8 KiB, lost %d",
		degradedAfter.Round(time.Millisecond), newMain, epoch, replacedAfter.Round(time.Millisecond), main,
		upAfter.Round(time.Millisecond), caughtUpAfter.Round(time.Millisecond), h.Len(), bulkAcked, lost+bulkLost)
}

// canMountTmpfs tries a 1 MiB tmpfs mount.
func canMountTmpfs(t *testing.T) error {
	if _, err := exec.LookPath("mount"); err != nil {
		return err
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("mount -t tmpfs: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return exec.Command("umount", dir).Run()
}

func argAfter(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// fillUp writes zeros to path until the filesystem is full, and returns how many bytes.
func fillUp(path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Write(buf)
		n += int64(k)
		if errors.Is(err, syscall.ENOSPC) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func statusGroup(c *Cluster, g uint16) (command.StatusGroup, bool) {
	st, err := c.Status()
	if err != nil {
		return command.StatusGroup{}, false
	}
	for _, sg := range st.Groups {
		if sg.Server == g {
			return sg, true
		}
	}
	return command.StatusGroup{}, false
}

// nodeState is node id's state and reason in /v1/status.
func nodeState(c *Cluster, id int) (string, string) {
	st, err := c.Status()
	if err != nil {
		return "", ""
	}
	for _, n := range st.Nodes {
		if int(n.ID) == id {
			return n.State, n.Reason
		}
	}
	return "", ""
}

func healthz(c *Cluster, id int) int {
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + c.Node(id).HTTP + "/healthz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// bulkWriter creates 8 KiB resources in group 1 as fast as the cluster takes them, so the
// write-ahead log fills its segments; it keeps the IDs of the creates acknowledged.
type bulkWriter struct {
	mu    sync.Mutex
	acked []string
	stop  context.CancelFunc
	done  chan struct{}
}

func startBulkWriter(t *testing.T, c *Cluster, nodes []int) *bulkWriter {
	cl := c.Client(nodes...)
	ctx, cancel := context.WithCancel(context.Background())
	b := &bulkWriter{stop: cancel, done: make(chan struct{})}
	data, _ := json.Marshal(map[string]string{"pad": strings.Repeat("x", 8<<10)})
	srv := int64(1)
	go func() {
		defer close(b.done)
		for ctx.Err() == nil {
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			r, err := cl.Do(rctx, &command.Request{Op: command.OpCreate, Type: "bulk", Data: data, Server: &srv})
			rcancel()
			if err == nil && r.Resource != nil {
				b.mu.Lock()
				b.acked = append(b.acked, r.Resource.ID)
				b.mu.Unlock()
			} else if err != nil {
				time.Sleep(20 * time.Millisecond) // pace retries after a failure; not synchronisation
			}
		}
	}()
	return b
}

// finish stops the writer and reads every acknowledged create back; it returns how many
// were acknowledged and how many of those are missing.
func (b *bulkWriter) finish(t *testing.T, cl *client.Client) (acked, lost int) {
	b.stop()
	<-b.done
	for _, rid := range b.acked {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cl.Get(ctx, rid, command.Linearizable)
		cancel()
		if err != nil {
			t.Errorf("acknowledged bulk create %s: %v", rid, err)
			lost++
		}
	}
	return len(b.acked), lost
}
