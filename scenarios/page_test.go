package scenarios

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// artifactsFlag is where TestStatusPageInBrowser saves its screenshots (also
// SIBYL_ARTIFACTS; default: the test's temporary directory).
var artifactsFlag = flag.String("artifacts", "", "directory for the status page test's screenshots (default $SIBYL_ARTIFACTS, else a temporary directory)")

// chromium returns the browser to drive, or "" when none is installed.
func chromium() string {
	if p := os.Getenv("SIBYL_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func artifactsDir(t *testing.T) string {
	dir := *artifactsFlag
	if dir == "" {
		dir = os.Getenv("SIBYL_ARTIFACTS")
	}
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, "statuspage")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tab is one browser tab showing a process's status page.
type tab struct {
	t    *testing.T
	ctx  context.Context
	name string
	dir  string
}

// evalIn runs expr in b's page and returns its value. The tab is brought to the front
// first: headless chromium does not render a background tab, and answers nothing about it
// until it is shown.
func evalIn[T any](b *tab, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, page.BringToFront, cdp.Empty{}); err != nil {
		var zero T
		return zero, err
	}
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// waitJS polls expr (a boolean expression) until it holds.
func (b *tab) waitJS(d time.Duration, what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := evalIn[bool](b, "Boolean("+expr+")")
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			text, _ := evalIn[string](b, "document.body.innerText")
			b.shot("failed-" + strings.ReplaceAll(b.name, " ", "-") + ".png")
			b.t.Fatalf("%s: timed out after %v waiting for %s (last error %v); the page reads:\n%s", b.name, d, what, err, text)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shot saves a full-page PNG as name in the artifacts directory.
func (b *tab) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, page.BringToFront, cdp.Empty{}); err != nil {
		b.t.Fatalf("%s: bring to front: %v", b.name, err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("%s: screenshot %s: %v", b.name, name, err)
	}
	path := filepath.Join(b.dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s (%d bytes)", path, len(png))
}

// seenAt is when the page first rendered key (Date.now() in the page; 0: not yet).
func (b *tab) seenAt(key string) int64 {
	ms, err := evalIn[float64](b, fmt.Sprintf("window.sibylPage.seen[%q] || 0", key))
	if err != nil {
		return 0
	}
	return int64(ms)
}

// openTab opens addr's status page (path: "/", or "/?token=T") in a new tab of the browser
// in parent and waits for its first frame.
func openTab(t *testing.T, parent context.Context, name, addr, path, dir string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent)
	t.Cleanup(cancel)
	b := &tab{t: t, ctx: ctx, name: name, dir: dir}
	// The first action on a context opens its tab, which lives as long as the context that
	// action ran with: never a short-lived one.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("%s: open a tab: %v", name, err)
	}
	runCtx, runCancel := context.WithTimeout(ctx, 60*time.Second)
	defer runCancel()
	if err := chromedp.Do(runCtx, chromedp.EmulateViewport(1500, 1000), chromedp.Navigate("http://"+addr+path)); err != nil {
		t.Fatalf("%s: open http://%s%s: %v", name, addr, path, err)
	}
	// A mark a reload would wipe: the page must update in place.
	if _, err := evalIn[bool](b, "window.sibylTestMark = 'no reload'; true"); err != nil {
		t.Fatal(err)
	}
	b.waitJS(30*time.Second, "first frame", `document.body.dataset.conn === "live" && window.sibylPage.frames > 0`)
	return b
}

// notReloaded fails the test if the tab's page was loaded again since openTab.
func (b *tab) notReloaded() {
	b.t.Helper()
	mark, err := evalIn[string](b, "window.sibylTestMark || ''")
	if err != nil || mark != "no reload" {
		b.t.Fatalf("%s: the page was reloaded (mark %q, %v)", b.name, mark, err)
	}
}

// TestStatusPageInBrowser drives the status page (docs/protocol.md §8) in Debian's chromium
// against a real `sibyl dev` cluster: the page renders every node and group on a controller
// and on a node, shows a registration's progress while it runs, and after a kill -9 of a
// group's main shows the new main and the promotion without reload, while the killed node's
// own page shows "reconnecting" and recovers when the node is back. It logs the page's
// update latency after the promotion and saves a screenshot of each step.
func TestStatusPageInBrowser(t *testing.T) {
	browser := chromium()
	if browser == "" {
		t.Skip("no chromium found (apt-get install -y chromium, or set SIBYL_CHROMIUM): the status page is not tested in a browser")
	}
	dir := artifactsDir(t)
	t.Logf("browser %s; screenshots in %s", browser, dir)

	const nodes, victim = 5, 1
	// A small log and a slow snapshot make the registration's sync phase last seconds.
	c := StartCluster(t, Options{Nodes: nodes, WriteTimeout: 2 * time.Second,
		NodeFlags: "--log-keep 1000 --log-keep-max 2000 --sync-rate 1000000"})
	sg := c.WaitVoting(1, 3)
	if int(*sg.Main) != victim {
		t.Fatalf("group 1's main is node %d, want node %d (its own group)", *sg.Main, victim)
	}
	extra := nodeWithoutCopy(t, sg, nodes)
	start := time.Now()
	fill(t, c, 1, 4000, 1024, 8)
	t.Logf("filled group 1 with 4000 resources of 1 KiB in %v", time.Since(start).Round(time.Millisecond))
	h := NewHistory()
	_, stop1 := startWritersFrom(t, c, h, 1, 2, othersThan(victim, nodes), 0)
	stopWriters := sync.OnceFunc(stop1)
	defer stopWriters()
	_, stop2 := startWritersFrom(t, c, NewHistory(), 2, 1, othersThan(victim, nodes), 100)
	stopWriters2 := sync.OnceFunc(stop2)
	defer stopWriters2()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1500, 1000))
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer allocCancel()
	browserCtx, browserCancel := chromedp.NewContext(allocCtx)
	defer browserCancel()
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start %s: %v", browser, err)
	}

	// Step 1: every node and group, on a controller's page and on a node's.
	ctl := openTab(t, browserCtx, "controller c1's page", c.Controller("c1").HTTP, "/", dir)
	own := openTab(t, browserCtx, fmt.Sprintf("node %d's page", victim), c.Node(victim).HTTP, "/", dir)
	for _, b := range []*tab{ctl, own} {
		for id := 1; id <= nodes; id++ {
			b.waitJS(20*time.Second, fmt.Sprintf("node %d up and group %d listed", id, id),
				fmt.Sprintf(`document.querySelector('tr[data-node="%d"][data-state="up"]') && document.querySelector('tr[data-group="%d"]')`, id, id))
		}
		b.waitJS(20*time.Second, "three controllers, one of them leader",
			`document.querySelectorAll("tr[data-controller]").length === 3 && document.querySelector("#locations td:nth-child(3)").textContent !== "none known"`)
	}
	ctl.waitJS(20*time.Second, "group 1's commit chart", `document.querySelector('tr[data-group="1"] svg.chart rect')`)
	served, err := evalIn[string](own, `document.getElementById("served").textContent`)
	if err != nil || !strings.Contains(served, fmt.Sprintf("node %d", victim)) {
		t.Fatalf("node %d's page says %q (%v), want it served by that node", victim, served, err)
	}
	ctl.shot("01-overview.png")

	// Step 2: a registration's progress while it runs.
	regDone := make(chan error, 1)
	regStart := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		// A registration replies once the copy votes: far beyond a client's default wait.
		cl, err := client.Dial(ctx, client.Options{Addrs: []string{c.Node(2).HTTP}, RequestTimeout: 3 * time.Minute})
		if err != nil {
			regDone <- err
			return
		}
		defer cl.Close()
		_, err = cl.Do(ctx, &command.Request{Op: command.OpRegisterSibling, Server: ptr(int64(1)), Node: ptr(int64(extra))})
		regDone <- err
	}()
	opSel := fmt.Sprintf(`document.querySelector('.op[data-op="registerSibling"][data-server="1"][data-node="%d"]')`, extra)
	type opView struct {
		Phase string `json:"phase"`
		Done  uint64 `json:"done,string"`
		Total uint64 `json:"total,string"`
	}
	var samples []opView
	var seenPartWay, shotTaken, regEnded bool
	var regErr error
	deadline := time.Now().Add(3 * time.Minute)
	for !regEnded {
		select {
		case regErr = <-regDone:
			regEnded = true
			continue
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("registerSibling did not return within 3 minutes")
		}
		raw, err := evalIn[string](ctl, `(() => { const o = `+opSel+`; return o ? JSON.stringify(o.dataset) : ""; })()`)
		if err != nil || raw == "" {
			continue
		}
		var v opView
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			t.Fatalf("operation row %s: %v", raw, err)
		}
		if len(samples) == 0 || samples[len(samples)-1] != v {
			samples = append(samples, v)
		}
		partWay := v.Total > 0 && v.Done > 0 && v.Done < v.Total
		if partWay {
			seenPartWay = true
		}
		// The screenshot waits for a bar that shows: a few MB sent, or half of a small total.
		if !shotTaken && partWay && (v.Done >= 3<<20 || 2*v.Done >= v.Total) {
			ctl.shot("02-registration.png")
			shotTaken = true
		}
	}
	if regErr != nil {
		t.Fatalf("registerSibling of node %d in group 1: %v", extra, regErr)
	}
	t.Logf("registration took %v; the page showed %d progress states: %+v", time.Since(regStart).Round(time.Millisecond), len(samples), samples)
	if !seenPartWay {
		t.Fatalf("the page never showed the registration part way (done between 0 and total): %+v", samples)
	}
	if !shotTaken {
		ctl.t.Logf("the registration ended before its bar reached the screenshot's threshold")
	}
	ctl.waitJS(10*time.Second, "the registration row gone once it returned", "!"+opSel)
	c.WaitVoting(1, 4)

	// Step 3: kill -9 group 1's main; the page shows the new main and the promotion.
	before, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	ctl.waitJS(10*time.Second, "group 1's main is node 1", fmt.Sprintf(`document.querySelector('tr[data-group="1"]').dataset.main === "%d"`, victim))
	killedAt := time.Now()
	c.Kill(c.Node(victim))
	newMain, epoch := c.WaitNewMain(1, victim)
	var rec command.StatusPromotion
	waitFor(t, 20*time.Second, "the promotion of group 1 recorded", func() bool {
		st, err := c.Status()
		if err != nil {
			return false
		}
		for _, p := range st.Promotions {
			if p.Server == 1 && p.Epoch >= epoch && p.From == victim {
				rec = p
				return true
			}
		}
		return false
	})
	if len(before.Promotions) != 0 {
		t.Logf("promotions before the kill: %+v", before.Promotions)
	}
	key := fmt.Sprintf("1:%d", rec.Epoch)
	ctl.waitJS(10*time.Second, "the new main and the promotion row",
		fmt.Sprintf(`document.querySelector('tr[data-group="1"]').dataset.main === "%d" && document.querySelector('tr[data-promotion="%s"][data-to="%d"]')`, rec.To, key, rec.To))
	ctl.notReloaded()
	if rec.To != newMain || rec.Reason != command.ReasonMainUnreachable || rec.Seconds == nil {
		t.Fatalf("promotion %+v: want to node %d, reason main_unreachable, with a duration", rec, newMain)
	}
	promoSeen := ctl.seenAt("promotion:" + key)
	mainSeen := ctl.seenAt(fmt.Sprintf("main:1:%d", rec.To))
	if promoSeen == 0 || mainSeen == 0 {
		t.Fatalf("the page has no first-seen time for the promotion (%d) or the new main (%d)", promoSeen, mainSeen)
	}
	afterRecord := time.Duration(promoSeen-rec.AtMs) * time.Millisecond
	afterKillPromo := time.Duration(promoSeen-killedAt.UnixMilli()) * time.Millisecond
	afterKillMain := time.Duration(mainSeen-killedAt.UnixMilli()) * time.Millisecond
	report := fmt.Sprintf("promotion of group 1 from node %d to node %d in epoch %d, reason %s, suspicion to barrier %.3f s\n"+
		"page update latency: %d ms from the controller recording the promotion to the page showing its row\n"+
		"                     %d ms from kill -9 to the page showing the new main\n"+
		"                     %d ms from kill -9 to the page showing the promotion row\n",
		victim, rec.To, rec.Epoch, rec.Reason, *rec.Seconds, afterRecord.Milliseconds(), afterKillMain.Milliseconds(), afterKillPromo.Milliseconds())
	t.Log(report)
	_ = os.WriteFile(filepath.Join(dir, "latency.txt"), []byte(report), 0o644)
	// docs/protocol.md §8: the page updates within a second of a change. The record's time
	// is the leader's clock when it proposed the barrier's activation; the page's is when it
	// rendered the row (one machine, one clock).
	if afterRecord < 0 || afterRecord > 1500*time.Millisecond {
		t.Errorf("the page showed the promotion %v after the controller recorded it, want within 1.5 s", afterRecord)
	}
	ctl.waitJS(10*time.Second, "the killed node down", fmt.Sprintf(`document.querySelector('tr[data-node="%d"][data-state="down"]')`, victim))
	ctl.shot("03-promotion.png")

	// Step 4: the killed node's own page says so, and recovers when the node is back.
	own.waitJS(10*time.Second, "reconnecting", `document.body.dataset.conn === "reconnecting"`)
	own.shot("04-reconnecting.png")
	framesBefore, err := evalIn[float64](own, "window.sibylPage.frames")
	if err != nil {
		t.Fatal(err)
	}
	c.Restart(c.Node(victim))
	c.WaitServing(victim)
	own.waitJS(30*time.Second, "live again with node 1 up",
		fmt.Sprintf(`document.body.dataset.conn === "live" && window.sibylPage.frames > %d && document.querySelector('tr[data-node="%d"][data-state="up"]')`, int(framesBefore), victim))
	own.waitJS(10*time.Second, "the promotion row on the restarted node's page", fmt.Sprintf(`document.querySelector('tr[data-promotion="%s"]')`, key))
	own.notReloaded()
	own.shot("05-recovered.png")
	stopWriters()
	stopWriters2()
	t.Logf("the controller's page received %s frames", evalString(ctl, "String(window.sibylPage.frames)"))
}

func evalString(b *tab, expr string) string {
	s, err := evalIn[string](b, expr)
	if err != nil {
		return "?(" + err.Error() + ")"
	}
	return s
}
