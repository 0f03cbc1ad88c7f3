package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api"
	"github.com/sibylhq/sibyl/api/internal/fake"
	"github.com/sibylhq/sibyl/command"
)

type fakeBackend struct{ *fake.Backend }

func (b fakeBackend) NewSession(out api.Outbox) api.Session { return b.Backend.NewSession(out) }

// node is one API server over a shared fake backend, like one node of a cluster.
type node struct {
	srv  *api.Server
	http *httptest.Server
}

func startNode(t *testing.T, fb *fake.Backend, opts api.Options) *node {
	t.Helper()
	s := api.NewServer(fakeBackend{fb}, opts)
	hs := httptest.NewServer(s.Handler())
	n := &node{srv: s, http: hs}
	t.Cleanup(n.stop)
	return n
}

// stop closes the node's connections and listener (idempotent).
func (n *node) stop() {
	n.srv.Close()
	n.http.Close()
}

func (n *node) addr() string { return n.http.Listener.Addr().String() }

func dial(t *testing.T, opts Options) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, opts)
	if err != nil {
		t.Fatalf("Dial %v: %v", opts.Addrs, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func codeOf(err error) command.Code {
	var e *command.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func TestDoAndTypedHelpers(t *testing.T) {
	fb := fake.New()
	n := startNode(t, fb, api.Options{})
	c := dial(t, Options{Addrs: []string{n.addr()}})
	ctx := testCtx(t)

	created, err := c.Create(ctx, "doc", json.RawMessage(`{"a":1}`))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	rid := created.Resource.ID
	got, err := c.Get(ctx, rid, command.SiblingRead)
	if err != nil || got.Resource.ID != rid || got.Seq < created.Seq {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	upd, err := c.Update(ctx, rid, json.RawMessage(`{"b":2}`), WithIfVersion(1))
	if err != nil || upd.Resource.Version != 2 {
		t.Fatalf("Update = %+v, %v", upd, err)
	}
	if _, err := c.Update(ctx, rid, json.RawMessage(`{}`), WithIfVersion(1)); codeOf(err) != command.CodeConflict {
		t.Fatalf("stale Update: %v, want conflict", err)
	}
	pat, err := c.Patch(ctx, rid, json.RawMessage(`{"c":3}`))
	if err != nil || string(pat.Resource.Data) != `{"b":2,"c":3}` {
		t.Fatalf("Patch = %+v, %v", pat, err)
	}
	page, err := c.List(ctx, ListOptions{Type: "doc"})
	if err != nil || len(page.Resources) != 1 {
		t.Fatalf("List = %+v, %v", page, err)
	}
	st, err := c.Status(ctx)
	if err != nil || len(st.Groups) != 1 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	del, err := c.Delete(ctx, rid)
	if err != nil || del.Seq == 0 {
		t.Fatalf("Delete = %+v, %v", del, err)
	}
	if _, err := c.Get(ctx, rid, ""); codeOf(err) != command.CodeNotFound {
		t.Fatalf("Get after delete: %v, want not_found", err)
	}
	if f := c.Floor(fake.Group); f != del.Seq {
		t.Fatalf("floor of group %d = %d, want the delete's seq %d", fake.Group, f, del.Seq)
	}
}

// The create names a server even when the caller does not: the fake's group, found from
// the status (placement), so that keyed retries stay in one group.
func TestCreateNamesAServer(t *testing.T) {
	fb := fake.New()
	n := startNode(t, fb, api.Options{})
	c := dial(t, Options{Addrs: []string{n.addr()}})
	if p := c.placement(testCtx(t)); p == nil || *p != fake.Group {
		t.Fatalf("placement = %v, want %d", p, fake.Group)
	}
	if _, err := c.Create(testCtx(t), "doc", json.RawMessage(`1`), WithServer(9)); codeOf(err) != command.CodeNotFound {
		t.Fatalf("create in an unknown group: %v, want not_found", err)
	}
}

// Sibling reads carry the group's floor as minSeq; the caller's request is not changed.
func TestSiblingReadCarriesFloor(t *testing.T) {
	fb := fake.New()
	n := startNode(t, fb, api.Options{})
	c := dial(t, Options{Addrs: []string{n.addr()}})
	ctx := testCtx(t)
	rep, err := c.Create(ctx, "doc", json.RawMessage(`1`))
	if err != nil {
		t.Fatal(err)
	}
	req := &command.Request{Op: command.OpGet, RID: rep.Resource.ID, Consistency: command.SiblingRead}
	if sent := c.withFloor(req); sent.MinSeq != rep.Seq || req.MinSeq != 0 {
		t.Fatalf("sibling read sent minSeq %d (caller's %d), want %d (0)", sent.MinSeq, req.MinSeq, rep.Seq)
	}
	lin := &command.Request{Op: command.OpGet, RID: rep.Resource.ID}
	if c.withFloor(lin).MinSeq != 0 {
		t.Fatal("a linearizable read was given a minSeq")
	}
}

func TestServerErrorsKeepTheirCode(t *testing.T) {
	fb := fake.New()
	n := startNode(t, fb, api.Options{ClientTokens: []string{"c"}})
	c := dial(t, Options{Addrs: []string{n.addr()}, Token: "c"})
	_, err := c.Do(testCtx(t), &command.Request{Op: command.OpDrain, Node: new(int64)})
	var e *command.Error
	if !errors.As(err, &e) || e.Code != command.CodeForbidden || e.Message == "" {
		t.Fatalf("admin op with a client token: %v, want forbidden", err)
	}
	bad := dial(t, Options{Addrs: []string{n.addr()}, Token: "wrong"})
	if _, err := bad.Do(testCtx(t), &command.Request{Op: command.OpList}); codeOf(err) != command.CodeUnauthorized {
		t.Fatalf("wrong token: %v, want unauthorized", err)
	}
	big := json.RawMessage(`"` + strings.Repeat("a", DefaultMaxFrameBytes) + `"`)
	if _, err := c.Create(testCtx(t), "doc", big, WithServer(1)); codeOf(err) != command.CodeTooLarge {
		t.Fatalf("oversized create: %v, want too_large", err)
	}
	if _, err := c.Do(testCtx(t), &command.Request{Op: command.OpList}); err != nil {
		t.Fatalf("connection unusable after a refused request: %v", err)
	}
}

// Many goroutines share one connection; each gets its own reply.
func TestConcurrentPipelinedDo(t *testing.T) {
	fb := fake.New()
	n := startNode(t, fb, api.Options{})
	c := dial(t, Options{Addrs: []string{n.addr()}})
	ctx := testCtx(t)
	const workers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				typ := fmt.Sprintf("w%d", w)
				data := json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
				rep, err := c.Do(ctx, &command.Request{Op: command.OpCreate, Type: typ, Data: data})
				if err != nil {
					errs <- err
					return
				}
				if rep.Resource.Type != typ || string(rep.Resource.Data) != string(data) {
					errs <- fmt.Errorf("worker %d got another request's reply: %+v", w, rep.Resource)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if fb.Count() != workers*each {
		t.Fatalf("%d resources, want %d", fb.Count(), workers*each)
	}
	if opened, _ := fb.Sessions(); opened != 1 {
		t.Fatalf("%d sessions opened, want all requests on one connection", opened)
	}
}

// When the node the client is on goes away, requests in flight fail with unavailable and
// the client moves on to the next address.
func TestReconnectsToNextAddress(t *testing.T) {
	fb := fake.New()
	first, second := startNode(t, fb, api.Options{}), startNode(t, fb, api.Options{})
	c := dial(t, Options{Addrs: []string{first.addr(), second.addr()}})
	ctx := testCtx(t)
	rep, err := c.Create(ctx, "doc", json.RawMessage(`1`))
	if err != nil {
		t.Fatal(err)
	}
	rid := rep.Resource.ID

	fb.Block(rid)
	inflight := make(chan error, 1)
	go func() {
		_, err := c.Do(ctx, &command.Request{Op: command.OpGet, RID: rid})
		inflight <- err
	}()
	waitFor(t, "the blocked get to reach the server", func() bool {
		opened, _ := fb.Sessions()
		return opened >= 1 && fb.Waiting(rid) == 1
	})
	first.stop()
	if err := <-inflight; codeOf(err) != command.CodeUnavailable {
		t.Fatalf("in-flight request on a dropped connection: %v, want unavailable", err)
	}
	fb.Release(rid)

	got, err := c.Get(ctx, rid, "")
	if err != nil || got.Resource.ID != rid {
		t.Fatalf("Get after failover = %+v, %v", got, err)
	}
	if want := "ws://" + second.addr() + "/v1/ws"; c.Addr() != want {
		t.Fatalf("client is on %q, want %q", c.Addr(), want)
	}
}

// A keyed write whose outcome was unknown is retried and resolves to the first result.
func TestDoRetryWithKey(t *testing.T) {
	fb := fake.New()
	n := startNode(t, fb, api.Options{})
	c := dial(t, Options{Addrs: []string{n.addr()}, Seed: 7})
	ctx := testCtx(t)
	unknown := fake.Failure{Err: command.Errorf(command.CodeTimeout, "injected"), Applied: true}
	fb.FailNext(command.OpCreate, unknown, fake.Failure{Err: command.Errorf(command.CodeNoMain, "injected")})
	rep, err := c.Create(ctx, "doc", json.RawMessage(`1`), WithKey("k1"))
	if err != nil {
		t.Fatalf("keyed Create with retries: %v", err)
	}
	if !rep.Duplicate || fb.Count() != 1 {
		t.Fatalf("reply %+v with %d resources, want the first result as duplicate and 1 resource", rep, fb.Count())
	}

	fb.FailNext(command.OpCreate, unknown)
	_, err = c.Create(ctx, "doc", json.RawMessage(`2`))
	if codeOf(err) != command.CodeTimeout || fb.Count() != 2 {
		t.Fatalf("unkeyed Create: %v with %d resources, want one attempt failing with timeout", err, fb.Count())
	}

	fb.FailNext(command.OpCreate, fake.Failure{Err: command.Errorf(command.CodeConflict, "injected")})
	if _, err := c.Create(ctx, "doc", json.RawMessage(`3`), WithKey("k2")); codeOf(err) != command.CodeConflict {
		t.Fatalf("non-retryable error: %v, want conflict at once", err)
	}

	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	for range 100 {
		fb.FailNext(command.OpList, fake.Failure{Err: command.Errorf(command.CodeUnavailable, "injected")})
	}
	if _, err := c.DoRetry(short, &command.Request{Op: command.OpList}); codeOf(err) != command.CodeUnavailable {
		t.Fatalf("retries until ctx ends: %v, want the last error (unavailable)", err)
	}
}

func TestBackoffIsCappedAndJittered(t *testing.T) {
	c := &Client{rng: rand.New(rand.NewPCG(1, 2))}
	for attempt := range 40 {
		d := c.backoff(attempt)
		step := min(retryCap, retryBase<<min(attempt, 16))
		if d < step/2 || d > step {
			t.Fatalf("attempt %d: backoff %v outside [%v, %v]", attempt, d, step/2, step)
		}
	}
}

func TestDialFailsWithoutReachableNode(t *testing.T) {
	fb := fake.New()
	n := startNode(t, fb, api.Options{})
	addr := n.addr()
	n.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Dial(ctx, Options{Addrs: []string{addr}}); codeOf(err) != command.CodeUnavailable {
		t.Fatalf("Dial to a stopped node: %v, want unavailable", err)
	}
	if _, err := Dial(ctx, Options{Addrs: []string{"ftp://x"}}); err == nil {
		t.Fatal("Dial accepted an ftp address")
	}
}

func TestClosedClient(t *testing.T) {
	fb := fake.New()
	n := startNode(t, fb, api.Options{})
	c := dial(t, Options{Addrs: []string{n.addr()}})
	c.Close()
	if _, err := c.Do(testCtx(t), &command.Request{Op: command.OpList}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close: %v, want ErrClosed", err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
