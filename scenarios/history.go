package scenarios

import (
	"fmt"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// A History records the operations clients made against a cluster, to be checked for
// linearizability with porcupine. Each resource is an independent register: its state is
// the data last written and its version.
type History struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

// NewHistory starts an empty history.
func NewHistory() *History { return &History{start: time.Now()} }

// regInput is one operation on a resource register.
type regInput struct {
	RID   string
	Write bool
	Value string // the data written
}

// regOutput is its outcome. A write whose outcome is unknown (timeout, lost connection) is
// recorded as returning at the end of time: porcupine may then place it anywhere after its
// call, or effectively never (nothing after it observes it).
type regOutput struct {
	Value   string
	Version uint64
	Found   bool
	Unknown bool
}

type regState struct {
	Value   string
	Version uint64
}

// Now is the history's clock (nanoseconds since it started).
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Write records a write of value to rid: acknowledged with its resulting version, or with
// an unknown outcome. Writes that definitely failed must not be recorded.
func (h *History) Write(client int, rid, value string, call int64, version uint64, unknown bool) {
	ret := h.Now()
	if unknown {
		ret = 1 << 62
	}
	h.add(porcupine.Operation{ClientId: client, Input: regInput{RID: rid, Write: true, Value: value}, Call: call,
		Output: regOutput{Version: version, Unknown: unknown}, Return: ret})
}

// Read records a linearizable read of rid that returned value at version (found false: the
// resource did not exist).
func (h *History) Read(client int, rid string, call int64, value string, version uint64, found bool) {
	h.add(porcupine.Operation{ClientId: client, Input: regInput{RID: rid}, Call: call,
		Output: regOutput{Value: value, Version: version, Found: found}, Return: h.Now()})
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

// registerModel is a per-resource register. A write must produce the next version; an
// unknown-outcome write, if it took effect, did too.
var registerModel = porcupine.Model{
	Partition: func(ops []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range ops {
			rid := op.Input.(regInput).RID
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
	Init: func() interface{} { return regState{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		s, in, out := state.(regState), input.(regInput), output.(regOutput)
		if in.Write {
			if out.Unknown {
				return true, regState{Value: in.Value, Version: s.Version + 1}
			}
			return out.Version == s.Version+1, regState{Value: in.Value, Version: out.Version}
		}
		if !out.Found {
			return s.Version == 0, s
		}
		return out.Version == s.Version && out.Value == s.Value, s
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(regInput), output.(regOutput)
		if in.Write {
			return fmt.Sprintf("write(%s)=%s -> v%d unknown=%v", in.RID, in.Value, out.Version, out.Unknown)
		}
		return fmt.Sprintf("read(%s) -> %s v%d", in.RID, out.Value, out.Version)
	},
}

// Check runs porcupine over the history. It returns an error describing the first
// violation, or nil when the history is linearizable.
func (h *History) Check(timeout time.Duration) error {
	h.mu.Lock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	h.mu.Unlock()
	res, _ := porcupine.CheckOperationsVerbose(registerModel, ops, timeout)
	switch res {
	case porcupine.Ok:
		return nil
	case porcupine.Unknown:
		return fmt.Errorf("linearizability check of %d operations timed out after %v", len(ops), timeout)
	}
	return fmt.Errorf("history of %d operations is not linearizable", len(ops))
}
