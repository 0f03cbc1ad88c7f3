package scenarios

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The checker must reject what is wrong, or every scenario that relies on it proves nothing.
func TestHistoryCheckerRejectsStaleRead(t *testing.T) {
	h := NewHistory()
	h.ops = nil
	h.add(op(0, regInput{RID: "r", Write: true, Value: "a"}, 0, regOutput{Version: 1}, 10))
	h.add(op(1, regInput{RID: "r", Write: true, Value: "b"}, 20, regOutput{Version: 2}, 30))
	h.add(op(2, regInput{RID: "r"}, 40, regOutput{Value: "a", Version: 1, Found: true}, 50))
	if err := h.Check(time.Second); err == nil {
		t.Fatal("a read of v1 after v2 was acknowledged passed the check")
	}
}

func TestHistoryCheckerAcceptsUnknownOutcomes(t *testing.T) {
	h := NewHistory()
	h.add(op(0, regInput{RID: "r", Write: true, Value: "a"}, 0, regOutput{Version: 1}, 10))
	h.add(op(0, regInput{RID: "r", Write: true, Value: "b"}, 20, regOutput{Unknown: true}, 1<<62))
	h.add(op(1, regInput{RID: "r"}, 40, regOutput{Value: "a", Version: 1, Found: true}, 50))
	h.add(op(1, regInput{RID: "r"}, 60, regOutput{Value: "b", Version: 2, Found: true}, 70))
	if err := h.Check(time.Second); err != nil {
		t.Fatalf("an unknown write observed late was rejected: %v", err)
	}
	h.add(op(1, regInput{RID: "r"}, 80, regOutput{Value: "a", Version: 1, Found: true}, 90))
	if err := h.Check(time.Second); err == nil {
		t.Fatal("a read going back to v1 passed the check")
	}
}

func op(client int, in regInput, call int64, out regOutput, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}
