package location

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// A registration the main gives up (keeping its log for the copy passed a bound,
// docs/register-sibling.md) ends with the learner dropped by a committed command, never
// with a vote; the group's voters and its Managed flag stay as they were.
func TestFSMDropLearnerWhenTheMainAbortsItsRegistration(t *testing.T) {
	f, idx := threeVoters(t) // group 1: main 1, voters 2, 3, 4
	const d uint16 = 5
	fsmStep(t, f, &idx, join(d), addLearner{Server: 1, Node: d})
	g, _ := f.group(1)
	abort := &command.RegisterAbort{Bound: command.BoundRegisterHoldBytes, Limit: 1 << 30, Held: 1<<30 + 1}
	// Caught up by its numbers, but given up: it is dropped, not proposed.
	reports := promotedReports(g, true, command.SiblingProgress{Node: d, Seq: 995, Recent: true, Aborted: abort})
	var drops []dropLearner
	for _, c := range planRound(upDirectory(f), reports, nil) {
		switch v := c.(type) {
		case proposeVoter:
			if v.Node == d {
				t.Fatalf("the plan proposes node %d, whose registration the main gave up", d)
			}
		case dropLearner:
			drops = append(drops, v)
		}
	}
	if len(drops) != 1 || drops[0].Node != d || drops[0].Abort == nil || *drops[0].Abort != *abort {
		t.Fatalf("plan drops %+v, want node %d with the main's abort", drops, d)
	}
	fsmStep(t, f, &idx, drops[0])
	after, _ := f.group(1)
	if member(&after, d) != nil || !slices.Equal(after.Active.Voters, g.Active.Voters) || after.Pending != nil || after.Managed != g.Managed {
		t.Fatalf("group 1 after the drop: %+v; want node %d gone and voters %v, managed %v as before", after, d, g.Active.Voters, g.Managed)
	}
	// A voter is never dropped this way.
	if err := applyAt(t, f, idx, dropLearner{Server: 1, Node: after.Active.Voters[0], Abort: abort}); err == nil {
		t.Fatal("dropLearner removed a voter")
	}
}

// With real raft: registerSibling of a copy whose registration the main gives up fails
// with the abort's code and a message naming the bound, once the learner was dropped; the
// group keeps its voters.
func TestClusterRegisterSiblingFailsWithTheMainsAbort(t *testing.T) {
	tc := newTestCluster(t, 3)
	tc.leader(10 * time.Second)
	var nodes []*fakeNode
	for i := uint16(1); i <= 5; i++ {
		n := &fakeNode{id: i, instance: fmt.Sprintf("inst-%d", i), ctls: tc.httpAddrs()}
		eventuallyOK(t, 10*time.Second, fmt.Sprintf("node %d joined", i), n.join)
		nodes = append(nodes, n)
	}
	stop := make(chan struct{})
	var beating sync.WaitGroup
	t.Cleanup(func() { close(stop); beating.Wait() })
	for _, n := range nodes {
		beating.Add(1)
		go n.run(stop, &beating)
	}
	var before command.GroupInfo
	eventuallyOK(t, 30*time.Second, "every group at 3 voting siblings", func() error {
		d, err := tc.directory()
		if err != nil {
			return err
		}
		if !converged(d, 5) {
			return fmt.Errorf("not converged: %+v", d.Groups)
		}
		before = *d.Group(1)
		return nil
	})
	var extra uint16
	for id := uint16(1); id <= 5; id++ {
		if id != before.Main && member(&before, id) == nil {
			extra = id
		}
	}
	abort := &command.RegisterAbort{Bound: command.BoundRegisterHoldTime, Limit: 600_000, Held: 600_001}
	main := nodes[before.Main-1]
	main.mu.Lock()
	main.aborts = map[uint16]*command.RegisterAbort{extra: abort}
	main.mu.Unlock()

	server, node := int64(1), int64(extra)
	var reply struct {
		Error *command.Error `json:"error"`
	}
	status, body, err := call(http.MethodPost, tc.leader(10*time.Second).httpAddr, "/v1/internal/admin/"+command.OpRegisterSibling,
		command.Request{Op: command.OpRegisterSibling, Server: &server, Node: &node}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(body, &reply)
	t.Logf("registerSibling(1, %d): %d %s", extra, status, body)
	want := abort.Err(1, extra)
	if reply.Error == nil || reply.Error.Code != want.Code || !strings.Contains(reply.Error.Message, "--"+command.BoundRegisterHoldTime) {
		t.Fatalf("registerSibling answered %d %s; want %s naming --%s", status, body, want.Code, command.BoundRegisterHoldTime)
	}
	d, err := tc.directory()
	if err != nil {
		t.Fatal(err)
	}
	g := d.Group(1)
	if member(g, extra) != nil || !slices.Equal(g.Active.Voters, before.Active.Voters) || g.Pending != nil {
		t.Fatalf("group 1 after the abort: %+v; want node %d gone and voters %v", g, extra, before.Active.Voters)
	}
}
