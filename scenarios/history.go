package scenarios

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/sibylhq/sibyl/command"
)

// A History records the operations clients made against a cluster, to be checked for
// linearizability with porcupine. Each resource is checked on its own, against a model of
// one resource: whether it exists (not yet created, live, or deleted), its data, its
// version, and its ticket (the highest fence and whether it is live). Every op of the
// protocol that touches a resource is modelled: create, get, update, patch (RFC 7386 merge
// patch), delete, each with or without ifVersion and a ticket fence, and acquireTicket,
// renewTicket, releaseTicket. So a lost effect (an acknowledged create that a read does
// not find, a release after which an acquire is refused), a doubled one (a patch or an
// acquire applied twice shows as a version or fence that skips), a resurrection (a read of
// a resource after its delete was acknowledged) and a refusal or success against the
// wrong state (a conditional write that succeeded though the version differed) all make
// the history illegal.
//
// The data of every resource in a history is a JSON object of string members; patches
// set or remove (null) members. The model compares data as that object, whatever the order
// of its members.
type History struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

// NewHistory starts an empty history.
func NewHistory() *History { return &History{start: time.Now()} }

// Op is one operation on a resource, as sent.
type Op struct {
	Op  string // command.OpCreate, OpGet, OpUpdate, OpPatch, OpDelete, or a ticket op
	RID string // "" for create (the rid is in the Result)
	// Data: create and update, the data written; patch, the merge patch. Canonical
	// (see canonData, canonPatch).
	Data      string
	IfVersion uint64 // 0: unconditional
	Fence     uint64 // the ticket fence the op carries (writes, renew, release); 0: none
}

// Result is an operation's outcome.
type Result struct {
	// Unknown: the outcome is unknown (timeout, connection lost, a retryable code): the op
	// may or may not have taken effect, at any time after it was sent. It is recorded as
	// returning at the end of time, so porcupine may place its effect anywhere after its
	// call, or after every other operation, which is the same as never.
	Unknown bool
	// Code is a definite refusal (command.CodeNotFound, CodeConflict, CodeTicketHeld), which
	// changed nothing; "" on success.
	Code    command.Code
	RID     string // create: the rid made
	Data    string // create, update, patch, get: the resource's data in the reply (canonical)
	Version uint64 // create, update, patch, get: the resource's version in the reply
	Fence   uint64 // acquireTicket, renewTicket: the fence in the reply
}

// resState is the model's state of one resource.
type resState struct {
	Exists, Gone bool
	Data         string
	Version      uint64
	Fence        uint64 // the highest fence granted (kept after release, expiry, delete)
	Live         bool   // a ticket may be live (see Step: it may have expired meanwhile)
}

// Now is the history's clock (nanoseconds since it started).
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Record adds op, sent at call (h.Now() then) by client, with its result, returning now.
// A definite failure with another code than the three the model knows (a bad request,
// say) changed nothing anyone can see and must not be recorded.
func (h *History) Record(client int, op Op, call int64, res Result) {
	ret := h.Now()
	if res.Unknown {
		ret = 1 << 62
	}
	h.add(porcupine.Operation{ClientId: client, Input: op, Call: call, Output: res, Return: ret})
}

func (h *History) add(op porcupine.Operation) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Len returns the number of recorded operations.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// Counts returns how many recorded operations there are of each op, with the unknown
// outcomes and the refusals as "unknown" and "refused".
func (h *History) Counts() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for _, o := range h.ops {
		in, res := o.Input.(Op), o.Output.(Result)
		out[in.Op]++
		switch {
		case res.Unknown:
			out["unknown"]++
		case res.Code != "":
			out["refused"]++
		}
	}
	return out
}

// CountsString is Counts as "op=n" in a stable order.
func (h *History) CountsString() string {
	c := h.Counts()
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, c[k])
	}
	return b.String()
}

// canonData is data (a JSON object of string members) in canonical form: members sorted,
// compact. Anything else is returned as it is, and then matches nothing the model
// computes.
func canonData(raw []byte) string {
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return string(raw)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// canonPatch is a merge patch of string members and nulls in canonical form.
func canonPatch(raw []byte) string {
	var m map[string]*string
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return string(raw)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// mergeFlat applies merge patch p to data d, both canonical and flat (RFC 7386 on an
// object of strings: a member set to null is removed, any other replaces). It is written
// here, apart from the server's command.MergePatch, so that a fault of that one shows.
func mergeFlat(d, p string) string {
	m := map[string]string{}
	if d != "" {
		if err := json.Unmarshal([]byte(d), &m); err != nil {
			return "!bad data " + d
		}
	}
	var pm map[string]*string
	if err := json.Unmarshal([]byte(p), &pm); err != nil {
		return "!bad patch " + p
	}
	for k, v := range pm {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = *v
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// apply is the protocol's answer to op in state s (docs/protocol.md §2, in the order of its
// checks: existence, ticket, ifVersion), and the state after it.
func apply(s resState, op Op) (Result, resState) {
	if op.Op == command.OpCreate {
		if s.Exists || s.Gone {
			// A create makes a new rid: it cannot apply to one that exists or existed.
			return Result{Code: "impossible"}, s
		}
		return Result{Data: op.Data, Version: 1}, resState{Exists: true, Data: op.Data, Version: 1}
	}
	if !s.Exists {
		return Result{Code: command.CodeNotFound}, s
	}
	switch op.Op {
	case command.OpGet:
		return Result{Data: s.Data, Version: s.Version}, s
	case command.OpAcquireTicket:
		if s.Live {
			return Result{Code: command.CodeTicketHeld}, s
		}
		n := s
		n.Fence, n.Live = s.Fence+1, true
		return Result{Fence: n.Fence}, n
	case command.OpRenewTicket, command.OpReleaseTicket:
		if !s.Live || op.Fence != s.Fence {
			return Result{Code: command.CodeTicketHeld}, s
		}
		if op.Op == command.OpRenewTicket {
			return Result{Fence: s.Fence}, s
		}
		n := s
		n.Live = false
		return Result{}, n
	}
	// update, patch, delete
	if (s.Live && op.Fence == 0) || (op.Fence != 0 && (!s.Live || op.Fence != s.Fence)) {
		return Result{Code: command.CodeTicketHeld}, s
	}
	if op.IfVersion != 0 && op.IfVersion != s.Version {
		return Result{Code: command.CodeConflict}, s
	}
	n := s
	n.Version++
	switch op.Op {
	case command.OpUpdate:
		n.Data = op.Data
	case command.OpPatch:
		n.Data = mergeFlat(s.Data, op.Data)
	case command.OpDelete:
		// The ticket ends with the resource; the fence counter stays.
		n.Exists, n.Gone, n.Data, n.Live = false, true, "", false
		return Result{}, n
	default:
		return Result{Code: "unknown op " + command.Code(op.Op)}, s
	}
	return Result{Data: n.Data, Version: n.Version}, n
}

// matches reports whether a recorded result is the one the model computed.
func matches(op Op, got, want Result) bool {
	if got.Code != want.Code {
		return false
	}
	if got.Code != "" {
		return true
	}
	switch op.Op {
	case command.OpCreate, command.OpGet, command.OpUpdate, command.OpPatch:
		return got.Data == want.Data && got.Version == want.Version
	case command.OpAcquireTicket, command.OpRenewTicket:
		return got.Fence == want.Fence
	}
	return true
}

// resourceModel checks each resource apart. It is nondeterministic in one respect: a
// live ticket expires when the main decides (an internal entry no client sees), so before
// any operation the model may take the live ticket as expired. That makes it accept some
// histories in which a ticket ended early (the ticket tests check when tickets end); what
// it does check is that fences are granted once each, in order, only while no ticket is
// known to be live, and that every write's ticket check, ifVersion check and effect is the
// one of a single execution at one point within the operation's call and return.
var resourceModel = (&porcupine.NondeterministicModel{
	Partition: func(ops []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range ops {
			rid := op.Input.(Op).RID
			if rid == "" {
				rid = op.Output.(Result).RID
			}
			if _, ok := by[rid]; !ok {
				order = append(order, rid)
			}
			by[rid] = append(by[rid], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, rid := range order {
			out = append(out, by[rid])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{resState{}} },
	Step: func(state, input, output interface{}) []interface{} {
		s, op, got := state.(resState), input.(Op), output.(Result)
		pre := []resState{s}
		if s.Live {
			expired := s
			expired.Live = false
			pre = append(pre, expired)
		}
		var next []interface{}
		for _, p := range pre {
			want, n := apply(p, op)
			switch {
			case got.Unknown:
				// It took effect here (if it could), or it is placed later.
				next = append(next, n)
			case matches(op, got, want):
				next = append(next, n)
			}
		}
		return next
	},
	DescribeOperation: func(input, output interface{}) string {
		op, res := input.(Op), output.(Result)
		return describe(op, res)
	},
	DescribeState: func(state interface{}) string {
		s := state.(resState)
		return fmt.Sprintf("%+v", s)
	},
}).ToModel()

func describe(op Op, res Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s(%s", op.Op, op.RID)
	if op.Data != "" {
		fmt.Fprintf(&b, " %s", op.Data)
	}
	if op.IfVersion != 0 {
		fmt.Fprintf(&b, " ifVersion=%d", op.IfVersion)
	}
	if op.Fence != 0 {
		fmt.Fprintf(&b, " fence=%d", op.Fence)
	}
	b.WriteString(") -> ")
	switch {
	case res.Unknown:
		b.WriteString("unknown")
	case res.Code != "":
		b.WriteString(string(res.Code))
	default:
		fmt.Fprintf(&b, "ok %s v%d", res.Data, res.Version)
		if res.RID != "" {
			fmt.Fprintf(&b, " rid=%s", res.RID)
		}
		if res.Fence != 0 {
			fmt.Fprintf(&b, " fence=%d", res.Fence)
		}
	}
	return b.String()
}

// Check runs porcupine over the history. It returns an error describing the operations
// on the first resource whose history is not linearizable, or nil when all are.
func (h *History) Check(timeout time.Duration) error {
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	res, _ := porcupine.CheckOperationsVerbose(resourceModel, ops, timeout)
	switch res {
	case porcupine.Ok:
		return nil
	case porcupine.Unknown:
		return fmt.Errorf("linearizability check of %d operations timed out after %v", len(ops), timeout)
	}
	var b strings.Builder
	for _, part := range resourceModel.Partition(ops) {
		if porcupine.CheckOperations(resourceModel, part) {
			continue
		}
		sort.SliceStable(part, func(i, j int) bool { return part[i].Call < part[j].Call })
		if len(part) > 200 {
			fmt.Fprintf(&b, "\n  (the last 200 of %d)", len(part))
			part = part[len(part)-200:]
		}
		for _, o := range part {
			ret := "open"
			if o.Return != 1<<62 {
				ret = time.Duration(o.Return).String()
			}
			fmt.Fprintf(&b, "\n  client %d [%v, %s] %s", o.ClientId, time.Duration(o.Call), ret, describe(o.Input.(Op), o.Output.(Result)))
		}
		break
	}
	return fmt.Errorf("history of %d operations is not linearizable; the operations on the first resource that fails:%s", len(ops), b.String())
}
