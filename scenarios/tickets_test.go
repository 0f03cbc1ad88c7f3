package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/api/client"
	"github.com/sibylhq/sibyl/command"
)

// Job queue parameters of TestTicketJobQueue.
const (
	jobCount    = 1000
	jobWorkers  = 8
	jobTTL      = time.Second
	jobWindow   = 16 // a worker picks among the first jobWindow jobs not known done: contention
	jobAbandonN = 40 // one ticket in jobAbandonN is walked away from, as by a crashed worker
	jobProbeN   = 8  // one release in jobProbeN is followed by a write under the released fence
	jobOpTime   = 10 * time.Second
)

// jobData is a job resource's data.
type jobData struct {
	State string `json:"state"` // "todo" or "done"
	By    int    `json:"by,omitempty"`
	Fence uint64 `json:"fence,omitempty"`
}

// grant is one acquired ticket as its worker saw it. heldEnd is when the worker stopped
// counting on it: its lease end (sendTime + ttl·(1−ρ)), or when it sent the release.
type grant struct {
	job, worker  int
	fence        uint64
	sent, recv   time.Time
	heldEnd      time.Time
	abandoned    bool
	staleRefused bool
	// What happened to the release and the done write, for the report of a stale write
	// that was accepted.
	released, doneDup bool
	releaseErr        string
	doneErr           string
}

// doneWrite is an acknowledged "done" update.
type doneWrite struct {
	job, worker int
	fence       uint64
	version     uint64
	duplicate   bool
}

// jobBoard is the test's shared view: which jobs are known done (to pick others, only
// an optimisation: correctness comes from the tickets), and everything the workers saw.
type jobBoard struct {
	mu     sync.Mutex
	rids   []string
	undone []int // job indices not known done, in creation order
	grants []*grant
	// staleReports describes every stale write that was accepted.
	staleReports []string
	dones        []doneWrite
	// counts
	held, lost, unknown, staleProbes, staleRefused, staleUnknown, alreadyDone atomic.Int64
	staleAccepted                                                             atomic.Int64
}

func (b *jobBoard) pick(rng *rand.Rand) (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.undone) == 0 {
		return 0, false
	}
	return b.undone[rng.Intn(min(jobWindow, len(b.undone)))], true
}

func (b *jobBoard) markDone(job int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i := slices.Index(b.undone, job); i >= 0 {
		b.undone = slices.Delete(b.undone, i, i+1)
	}
}

func (b *jobBoard) remaining() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.undone)
}

func (b *jobBoard) record(g *grant) {
	b.mu.Lock()
	b.grants = append(b.grants, g)
	b.mu.Unlock()
}

// jobWorker claims jobs with tickets until every job is known done or ctx ends.
type jobWorker struct {
	id  int
	cl  *client.Client
	b   *jobBoard
	rng *rand.Rand
	n   int // op counter: makes this worker's keys unique
	// abandoned tickets: the worker writes under them at the end, as a worker that comes
	// back from a long pause would.
	abandoned []*grant
}

func (w *jobWorker) key(op string) string {
	w.n++
	return fmt.Sprintf("w%d-%s-%d", w.id, op, w.n)
}

func (w *jobWorker) run(ctx context.Context) {
	for ctx.Err() == nil {
		job, ok := w.b.pick(w.rng)
		if !ok {
			return
		}
		w.claim(ctx, job)
	}
}

// claim takes one job through acquire, read, done-write and release.
func (w *jobWorker) claim(ctx context.Context, job int) {
	rid := w.b.rids[job]
	octx, cancel := context.WithTimeout(ctx, jobOpTime)
	defer cancel()
	sent := time.Now()
	tk, err := w.cl.AcquireTicket(octx, rid, jobTTL, client.TicketKey(w.key("acq")))
	switch code := command.CodeOf(err); {
	case err == nil:
	case code == command.CodeTicketHeld:
		w.b.held.Add(1)
		time.Sleep(2 * time.Millisecond) // pace a worker whose window is all taken; not synchronisation
		return
	default:
		w.b.unknown.Add(1)
		return
	}
	g := &grant{job: job, worker: w.id, fence: tk.Fence, sent: sent, recv: time.Now(), heldEnd: tk.HeldUntil()}
	w.b.record(g)
	if w.rng.Intn(jobAbandonN) == 0 {
		g.abandoned = true
		w.abandoned = append(w.abandoned, g)
		return
	}
	end := func() {
		g.heldEnd = minTime(g.heldEnd, time.Now())
		err := tk.Release(octx, client.TicketKey(w.key("rel")))
		g.released = err == nil
		if err != nil {
			g.releaseErr = err.Error()
		}
		if err != nil && command.CodeOf(err) != command.CodeTicketHeld {
			w.b.unknown.Add(1)
		}
	}
	r, err := w.cl.Get(octx, rid, command.Linearizable)
	if err != nil {
		w.b.unknown.Add(1)
		end()
		return
	}
	var d jobData
	if err := json.Unmarshal(r.Resource.Data, &d); err != nil {
		panic(fmt.Sprintf("job %d: data %s: %v", job, r.Resource.Data, err))
	}
	if d.State == "done" {
		w.b.alreadyDone.Add(1)
		w.b.markDone(job)
		end()
		return
	}
	data, _ := json.Marshal(jobData{State: "done", By: w.id, Fence: tk.Fence})
	up, err := w.cl.Update(octx, rid, data, tk.WriteOpt(), client.WithKey(w.key("done")))
	switch code := command.CodeOf(err); {
	case err == nil:
		g.doneDup = up.Duplicate
		w.b.mu.Lock()
		w.b.dones = append(w.b.dones, doneWrite{job: job, worker: w.id, fence: tk.Fence, version: up.Resource.Version, duplicate: up.Duplicate})
		w.b.mu.Unlock()
		w.b.markDone(job)
	case code == command.CodeTicketHeld:
		w.b.lost.Add(1) // the ticket expired under this worker: someone else will do the job
	default:
		g.doneErr = err.Error()
		w.b.unknown.Add(1)
	}
	end()
	if w.rng.Intn(jobProbeN) == 0 {
		w.staleWrite(ctx, g)
	}
}

// staleWrite writes under a fence that is no longer live; it must be refused.
func (w *jobWorker) staleWrite(ctx context.Context, g *grant) {
	w.b.staleProbes.Add(1)
	octx, cancel := context.WithTimeout(ctx, jobOpTime)
	defer cancel()
	data, _ := json.Marshal(jobData{State: "stale", By: w.id, Fence: g.fence})
	_, err := w.cl.Update(octx, w.b.rids[g.job], data, client.WithTicket(g.fence))
	switch code := command.CodeOf(err); {
	case err == nil:
		w.b.staleAccepted.Add(1)
		w.b.mu.Lock()
		w.b.staleReports = append(w.b.staleReports, fmt.Sprintf(
			"job %d worker %d fence %d: abandoned %v, done duplicate %v (err %q), released %v (err %q), acquired %v..%v",
			g.job, g.worker, g.fence, g.abandoned, g.doneDup, g.doneErr, g.released, g.releaseErr,
			g.sent.Format("15:04:05.000"), g.recv.Format("15:04:05.000")))
		w.b.mu.Unlock()
	case code == command.CodeTicketHeld:
		w.b.staleRefused.Add(1)
		g.staleRefused = true
	default:
		w.b.staleUnknown.Add(1) // the final read shows whether it took effect
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// TestTicketJobQueue: 8 workers contend for 1,000 jobs (resources of group 1) with
// tickets, and the group's main is killed once. Every job is done exactly once, no write
// under a stale fence is accepted, fences never go backwards, and no two workers ever
// believe they hold one job's ticket at once.
func TestTicketJobQueue(t *testing.T) {
	c := StartCluster(t, Options{Nodes: 4})
	sg := c.WaitVoting(1, 3)
	main := int(*sg.Main)
	b := &jobBoard{rids: make([]string, jobCount)}
	clients := make([]*client.Client, jobWorkers)
	for i := range clients {
		clients[i] = seededClient(t, c, int64(i), 1+i%4, 1+(i+1)%4, 1+(i+2)%4, 1+(i+3)%4)
	}
	createJobs(t, clients, b)
	start := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	workers := make([]*jobWorker, jobWorkers)
	var wg sync.WaitGroup
	for i := range workers {
		workers[i] = &jobWorker{id: i, cl: clients[i], b: b, rng: rand.New(rand.NewSource(seedUsed + int64(i)))}
		wg.Add(1)
		go func(w *jobWorker) { defer wg.Done(); w.run(ctx) }(workers[i])
	}
	waitFor(t, 60*time.Second, "300 jobs done", func() bool { return b.remaining() <= jobCount-300 })
	c.Kill(c.Node(main))
	killedAt := time.Now()
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("workers stopped with %d jobs left: %v", b.remaining(), ctx.Err())
	}
	took := time.Since(start)
	// Workers that walked away from a ticket come back and write under it: by now someone
	// else has done that job under a higher fence.
	survivor := 1 + main%4
	// Only a grant a later grant superseded is stale: a worker may have acquired a ticket on
	// a job another had already done and walked away before reading it; with nobody after
	// it, that ticket is the live one, and a write under it is rightly accepted.
	for _, w := range workers {
		for _, g := range w.abandoned {
			if b.superseded(g) {
				w.staleWrite(context.Background(), g)
			}
		}
	}
	newMain := 0
	if st, err := c.Status(); err == nil {
		for _, g := range st.Groups {
			if g.Server == 1 && g.Main != nil {
				newMain = int(*g.Main)
			}
		}
	}

	final := readJobs(t, seededClient(t, c, 100, survivor), b)
	checkJobs(t, b, final)
	var grants, abandoned, maxFence int64
	for _, g := range b.grants {
		grants++
		if g.abandoned {
			abandoned++
		}
		maxFence = max(maxFence, int64(g.fence))
	}
	t.Logf("tickets: %d jobs done by %d workers in %v; main %d killed %v in, node %d main after",
		jobCount, jobWorkers, took.Round(time.Millisecond), main, killedAt.Sub(start).Round(time.Millisecond), newMain)
	t.Logf("tickets: %d grants (highest fence %d), %d ticket_held on acquire, %d found already done, %d abandoned, %d lost before the write, %d unknown outcomes",
		grants, maxFence, b.held.Load(), b.alreadyDone.Load(), abandoned, b.lost.Load(), b.unknown.Load())
	t.Logf("tickets: stale-fence writes: %d sent, %d refused with ticket_held, %d unknown, %d accepted; done writes acknowledged %d (duplicates %d)",
		b.staleProbes.Load(), b.staleRefused.Load(), b.staleUnknown.Load(), b.staleAccepted.Load(), len(b.dones), countDup(b.dones))
}

func countDup(ds []doneWrite) (n int) {
	for _, d := range ds {
		if d.duplicate {
			n++
		}
	}
	return n
}

// seededClient dials nodes in order with a fixed retry seed.
func seededClient(t *testing.T, c *Cluster, seed int64, nodes ...int) *client.Client {
	t.Helper()
	var addrs []string
	for _, id := range nodes {
		addrs = append(addrs, c.Node(id).HTTP)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.Options{Addrs: addrs, Seed: uint64(seedUsed+seed) | 1})
	if err != nil {
		t.Fatalf("dial %v: %v", addrs, err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// createJobs makes the jobs in group 1, keyed so that a retried create makes one job.
func createJobs(t *testing.T, clients []*client.Client, b *jobBoard) {
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for i, cl := range clients {
		wg.Add(1)
		go func(i int, cl *client.Client) {
			defer wg.Done()
			for j := i; j < jobCount; j += len(clients) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				r, err := cl.Create(ctx, "job", json.RawMessage(`{"state":"todo"}`), client.WithServer(1), client.WithKey(fmt.Sprintf("job-%d", j)))
				cancel()
				if err != nil {
					errs <- fmt.Errorf("create job %d: %w", j, err)
					return
				}
				b.rids[j] = r.Resource.ID
			}
		}(i, cl)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for j := range jobCount {
		b.undone = append(b.undone, j)
	}
}

// readJobs reads every job at the end (linearizable list of group 1).
func readJobs(t *testing.T, cl *client.Client, b *jobBoard) map[string]command.Resource {
	out := map[string]command.Resource{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	after := ""
	for {
		rep, err := cl.List(ctx, client.ListOptions{Type: "job", Server: 1, After: after, Limit: 1000})
		if err != nil {
			t.Fatalf("list jobs: %v", err)
		}
		for _, r := range rep.Resources {
			out[r.ID] = r
		}
		if rep.Next == "" {
			break
		}
		after = rep.Next
	}
	if len(out) != jobCount {
		t.Fatalf("listed %d jobs, want %d", len(out), jobCount)
	}
	return out
}

// checkJobs holds the run against the rules: each job changed exactly once, by a worker
// under a fence it was granted; no stale write accepted; fences per job strictly grow in
// real-time order; and no grant came while an earlier holder still counted on its lease.
func checkJobs(t *testing.T, b *jobBoard, final map[string]command.Resource) {
	t.Helper()
	if n := b.staleAccepted.Load(); n > 0 {
		for _, r := range b.staleReports {
			t.Log("accepted stale write: " + r)
		}
		t.Errorf("%d writes under a stale fence were accepted", n)
	}
	granted := map[[2]int64]bool{} // (job, fence) was granted
	byJob := map[int][]*grant{}
	for _, g := range b.grants {
		granted[[2]int64{int64(g.job), int64(g.fence)}] = true
		byJob[g.job] = append(byJob[g.job], g)
	}
	acked := map[int]doneWrite{}
	for _, d := range b.dones {
		if prev, ok := acked[d.job]; ok && (prev.fence != d.fence || prev.worker != d.worker) {
			t.Errorf("job %d acknowledged done twice: by worker %d under fence %d and by worker %d under fence %d",
				d.job, prev.worker, prev.fence, d.worker, d.fence)
		}
		acked[d.job] = d
	}
	for j, rid := range b.rids {
		r := final[rid]
		var d jobData
		if err := json.Unmarshal(r.Data, &d); err != nil {
			t.Fatalf("job %d: %v", j, err)
		}
		if d.State != "done" || r.Version != 2 {
			t.Errorf("job %d: state %q at version %d, want done at version 2 (one write)", j, d.State, r.Version)
			continue
		}
		if !granted[[2]int64{int64(j), int64(d.Fence)}] {
			t.Errorf("job %d done under fence %d, which was never granted", j, d.Fence)
		}
		if a, ok := acked[j]; ok && (a.fence != d.Fence || a.worker != d.By) {
			t.Errorf("job %d: acknowledged done by worker %d under fence %d, but it holds worker %d's fence %d",
				j, a.worker, a.fence, d.By, d.Fence)
		}
	}
	for j, gs := range byJob {
		for _, g1 := range gs {
			for _, g2 := range gs {
				if g1 == g2 {
					continue
				}
				// Every grant is a different op (keys are unique), so a different fence.
				if g1.fence == g2.fence {
					t.Errorf("job %d: fence %d granted twice (workers %d and %d)", j, g1.fence, g1.worker, g2.worker)
				}
				if g1.recv.Before(g2.sent) && g1.fence >= g2.fence {
					t.Errorf("job %d: fence went backwards: %d granted, then %d", j, g1.fence, g2.fence)
				}
				// g2 was granted after g1 (higher fence): g2's grant may not have been executed
				// while g1's holder still counted on its lease, i.e. it must not have been
				// answered before g1's lease ended.
				if g2.fence > g1.fence && g2.recv.Before(g1.heldEnd) {
					t.Errorf("job %d: fence %d answered %v before fence %d's holder stopped counting on it",
						j, g2.fence, g1.heldEnd.Sub(g2.recv), g1.fence)
				}
			}
		}
	}
}

// superseded reports whether a later grant (a higher fence) was made on g's job.
func (b *jobBoard) superseded(g *grant) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, o := range b.grants {
		if o.job == g.job && o.fence > g.fence {
			return true
		}
	}
	return false
}
