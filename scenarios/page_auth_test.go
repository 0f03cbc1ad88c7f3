package scenarios

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sibylhq/sibyl/command"
)

// TestStatusPageWithTokens drives the status page in chromium on a cluster with tokens (the
// cluster secret, an admin token, and a role's token for the operator): a node's and a
// controller's page opened with the role's token as ?token= go live and list every node,
// since the page passes the token on to its stream, which refuses a caller without one.
// Once the token is revoked both streams end and both pages say they are unauthorized.
func TestStatusPageWithTokens(t *testing.T) {
	browser := chromium()
	if browser == "" {
		t.Skip("no chromium found (apt-get install -y chromium, or set SIBYL_CHROMIUM): the status page is not tested in a browser")
	}
	dir := artifactsDir(t)
	const nodes = 3
	c := StartCluster(t, Options{Nodes: nodes, ClusterSecret: "page-s3cret", AdminToken: "page-adm1n"})
	c.WaitVoting(1, 2)
	viewer := c.CreateRoleToken("page-viewer", command.Grant{Types: []string{"job"}, Ops: []string{command.KindRead}})
	addrs := map[string]string{"node 2": c.Node(2).HTTP, "controller c1": c.Controller("c1").HTTP}

	// The stream without a token, or with a wrong one, is refused: the page's own query is
	// what lets it in.
	hc := &http.Client{Timeout: 10 * time.Second}
	for where, addr := range addrs {
		for _, q := range []string{"", "?token=sbt_wrong"} {
			resp, err := hc.Get("http://" + addr + "/v1/status/stream" + q)
			if err != nil {
				t.Fatalf("%s: stream%s: %v", where, q, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s: stream%s answered HTTP %d, want 401", where, q, resp.StatusCode)
			}
		}
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1500, 1000))
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer allocCancel()
	browserCtx, browserCancel := chromedp.NewContext(allocCtx)
	defer browserCancel()
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start %s: %v", browser, err)
	}
	path := "/?token=" + url.QueryEscape(viewer)
	var tabs []*tab
	for _, where := range []string{"controller c1", "node 2"} {
		b := openTab(t, browserCtx, where+"'s page with a role's token", addrs[where], path, dir)
		for id := 1; id <= nodes; id++ {
			b.waitJS(20*time.Second, fmt.Sprintf("node %d up", id), fmt.Sprintf(`document.querySelector('tr[data-node="%d"][data-state="up"]')`, id))
		}
		tabs = append(tabs, b)
	}
	tabs[0].shot("10-with-token.png")

	revoke(t, c, viewer)
	for _, b := range tabs {
		b.waitJS(10*time.Second, "the revoked token refused",
			`document.body.dataset.conn === "reconnecting" && document.getElementById("error").textContent.startsWith("unauthorized")`)
		b.notReloaded()
	}
	tabs[0].shot("11-token-revoked.png")
}
