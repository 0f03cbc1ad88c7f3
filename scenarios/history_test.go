package scenarios

import (
	"strconv"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/sibylhq/sibyl/command"
)

// The checker must reject what is wrong, or every scenario that relies on it proves nothing;
// and it must accept what the protocol allows, or it fails correct runs. Each case below
// is a short history of one resource "r": ops in [call, return] (ret 0: unknown outcome).

type hop struct {
	client    int
	call, ret int64
	op        Op
	res       Result
}

func historyOf(ops ...hop) *History {
	h := NewHistory()
	for _, o := range ops {
		ret := o.ret
		if ret == 0 {
			ret, o.res.Unknown = 1<<62, true
		}
		if o.op.Op == command.OpCreate {
			o.res.RID = "r"
		} else {
			o.op.RID = "r"
		}
		h.add(porcupine.Operation{ClientId: o.client, Input: o.op, Call: o.call, Output: o.res, Return: ret})
	}
	return h
}

// Shorthands: data {"v":x}, patch {"p":x}.
func hData(x string) string    { return canonData([]byte(`{"v":"` + x + `"}`)) }
func hPatchOf(x string) string { return canonPatch([]byte(`{"p":"` + x + `"}`)) }

func hCreate(x string) Op       { return Op{Op: command.OpCreate, Data: hData(x)} }
func hUpdate(x string) Op       { return Op{Op: command.OpUpdate, Data: hData(x)} }
func hPatch(x string) Op        { return Op{Op: command.OpPatch, Data: hPatchOf(x)} }
func hDelete() Op               { return Op{Op: command.OpDelete} }
func hGet() Op                  { return Op{Op: command.OpGet} }
func hAcquire() Op              { return Op{Op: command.OpAcquireTicket} }
func hRelease(fence uint64) Op  { return Op{Op: command.OpReleaseTicket, Fence: fence} }
func hIf(o Op, v uint64) Op     { o.IfVersion = v; return o }
func hFenced(o Op, f uint64) Op { o.Fence = f; return o }

func hFound(data string, v uint64) Result { return Result{Data: data, Version: v} }
func hRefused(c command.Code) Result      { return Result{Code: c} }
func hFence(f uint64) Result              { return Result{Fence: f} }

var hWithP = canonData([]byte(`{"v":"a","p":"x"}`))

func TestHistoryModelRejects(t *testing.T) {
	for name, h := range map[string]*History{
		"stale read": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hUpdate("b"), hFound(hData("b"), 2)},
			hop{1, 40, 50, hGet(), hFound(hData("a"), 1)}),
		"lost create": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{1, 20, 30, hGet(), hRefused(command.CodeNotFound)}),
		"create answered with other data": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("b"), 1)}),
		"doubled patch (the version skips)": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hPatch("x"), hFound(hWithP, 2)},
			hop{1, 40, 50, hGet(), hFound(hWithP, 3)}),
		"doubled patch of an unknown outcome": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 0, hPatch("x"), Result{}},
			hop{1, 40, 50, hGet(), hFound(hWithP, 2)},
			hop{1, 60, 70, hGet(), hFound(hWithP, 3)}),
		"patch replaced the data instead of merging": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hPatch("x"), hFound(canonData([]byte(`{"p":"x"}`)), 2)}),
		"lost patch": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hPatch("x"), hFound(hWithP, 2)},
			hop{1, 40, 50, hGet(), hFound(hData("a"), 1)}),
		"resurrected delete": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hDelete(), Result{}},
			hop{1, 40, 50, hGet(), hFound(hData("a"), 1)}),
		"write after an acknowledged delete": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hDelete(), Result{}},
			hop{1, 40, 50, hUpdate("b"), hFound(hData("b"), 3)}),
		"conditional write succeeded against the wrong version": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hUpdate("b"), hFound(hData("b"), 2)},
			hop{1, 40, 50, hIf(hUpdate("c"), 1), hFound(hData("c"), 3)}),
		"conditional delete succeeded against the wrong version": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hPatch("x"), hFound(hWithP, 2)},
			hop{1, 40, 50, hIf(hDelete(), 1), Result{}}),
		"conditional write refused though the version matched": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{1, 40, 50, hIf(hUpdate("c"), 1), hRefused(command.CodeConflict)}),
		"two conditional writes on one version both succeeded": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{1, 20, 50, hIf(hPatch("x"), 1), hFound(hWithP, 2)},
			hop{2, 20, 50, hIf(hUpdate("b"), 1), hFound(hData("b"), 2)}),
		"doubled acquire (the fence skips)": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hAcquire(), hFence(2)}),
		"two live tickets": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hAcquire(), hFence(1)},
			hop{1, 40, 50, hAcquire(), hFence(1)}),
		"lost release": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hAcquire(), hFence(1)},
			hop{0, 40, 50, hRelease(1), Result{}},
			hop{1, 60, 70, hAcquire(), hRefused(command.CodeTicketHeld)}),
		"write with a released fence": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hAcquire(), hFence(1)},
			hop{0, 40, 50, hRelease(1), Result{}},
			hop{0, 60, 70, hFenced(hUpdate("b"), 1), hFound(hData("b"), 2)}),
		"a ticket op changed the version": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hAcquire(), hFence(1)},
			hop{0, 40, 50, hFenced(hUpdate("b"), 1), hFound(hData("b"), 3)}),
	} {
		t.Run(name, func(t *testing.T) {
			if err := h.Check(5 * time.Second); err == nil {
				t.Fatalf("the history passed the check:\n%v", h.ops)
			} else {
				t.Log(err)
			}
		})
	}
}

func TestHistoryModelAccepts(t *testing.T) {
	for name, h := range map[string]*History{
		"a read before the create returns not_found": historyOf(
			hop{1, 0, 5, hGet(), hRefused(command.CodeNotFound)},
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{1, 20, 30, hGet(), hFound(hData("a"), 1)}),
		"a read concurrent with the create sees either": historyOf(
			hop{0, 0, 40, hCreate("a"), hFound(hData("a"), 1)},
			hop{1, 10, 20, hGet(), hFound(hData("a"), 1)},
			hop{2, 10, 20, hGet(), hRefused(command.CodeNotFound)}),
		"an unknown write observed late": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 0, hUpdate("b"), Result{}},
			hop{1, 40, 50, hGet(), hFound(hData("a"), 1)},
			hop{1, 60, 70, hGet(), hFound(hData("b"), 2)}),
		"an unknown write never observed": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 0, hPatch("x"), Result{}},
			hop{0, 40, 50, hUpdate("b"), hFound(hData("b"), 2)},
			hop{1, 60, 70, hGet(), hFound(hData("b"), 2)}),
		"patches merge, null removes": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hPatch("x"), hFound(hWithP, 2)},
			hop{0, 40, 50, Op{Op: command.OpPatch, Data: canonPatch([]byte(`{"p":null,"q":"y"}`))},
				hFound(canonData([]byte(`{"q":"y","v":"a"}`)), 3)}),
		"an unknown delete, then not found": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 0, hDelete(), Result{}},
			hop{1, 40, 50, hGet(), hFound(hData("a"), 1)},
			hop{1, 60, 70, hGet(), hRefused(command.CodeNotFound)},
			hop{0, 80, 90, hUpdate("b"), hRefused(command.CodeNotFound)}),
		"conditional writes: one wins, the other conflicts": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{1, 20, 50, hIf(hPatch("x"), 1), hFound(hWithP, 2)},
			hop{2, 20, 50, hIf(hUpdate("b"), 1), hRefused(command.CodeConflict)},
			hop{0, 60, 70, hIf(hDelete(), 2), Result{}}),
		"a conditional write whose version an unknown write moved": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 0, hUpdate("b"), Result{}},
			hop{1, 40, 50, hIf(hUpdate("c"), 1), hRefused(command.CodeConflict)},
			hop{1, 60, 70, hIf(hUpdate("c"), 2), hFound(hData("c"), 3)}),
		"tickets: fenced writes, refusals, release, the next fence": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hAcquire(), hFence(1)},
			hop{1, 40, 50, hUpdate("x"), hRefused(command.CodeTicketHeld)},
			hop{1, 40, 50, hAcquire(), hRefused(command.CodeTicketHeld)},
			hop{0, 60, 70, hFenced(hUpdate("b"), 1), hFound(hData("b"), 2)},
			hop{0, 80, 90, Op{Op: command.OpRenewTicket, Fence: 1}, hFence(1)},
			hop{0, 100, 110, hRelease(1), Result{}},
			hop{1, 120, 130, hFenced(hUpdate("c"), 1), hRefused(command.CodeTicketHeld)},
			hop{1, 140, 150, hAcquire(), hFence(2)},
			hop{1, 160, 170, hDelete(), hRefused(command.CodeTicketHeld)},
			hop{1, 180, 190, hFenced(hDelete(), 2), Result{}},
			hop{0, 200, 210, hAcquire(), hRefused(command.CodeNotFound)}),
		"a ticket that expired: another acquires, an unfenced write succeeds": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 30, hAcquire(), hFence(1)},
			hop{1, 40, 50, hUpdate("b"), hFound(hData("b"), 2)},
			hop{0, 60, 70, hFenced(hUpdate("c"), 1), hRefused(command.CodeTicketHeld)},
			hop{1, 80, 90, hAcquire(), hFence(2)}),
		"an unknown acquire that took effect and expired": historyOf(
			hop{0, 0, 10, hCreate("a"), hFound(hData("a"), 1)},
			hop{0, 20, 0, hAcquire(), Result{}},
			hop{1, 40, 50, hUpdate("b"), hRefused(command.CodeTicketHeld)},
			hop{1, 60, 70, hAcquire(), hFence(2)}),
	} {
		t.Run(name, func(t *testing.T) {
			if err := h.Check(5 * time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A history the size of an in-process fault schedule's (6 resources of 200 writes, each
// read once, with an unknown outcome every 25 writes, half of which took effect) checks in
// seconds.
func TestHistoryModelScales(t *testing.T) {
	h := NewHistory()
	for r := 0; r < 6; r++ {
		rid := string(rune('a' + r))
		add := func(client int, call, ret int64, op Op, res Result) {
			if op.Op == command.OpCreate {
				res.RID = rid
			} else {
				op.RID = rid
			}
			if ret == 0 {
				ret, res.Unknown = 1<<62, true
			}
			h.add(porcupine.Operation{ClientId: client, Input: op, Call: call, Output: res, Return: ret})
		}
		add(r, 0, 10, hCreate("0"), hFound(hData("0"), 1))
		v := uint64(1)
		for i := int64(1); i < 200; i++ {
			x := strconv.Itoa(int(i))
			if i%25 == 0 {
				add(r, i*100, 0, hUpdate(x), Result{})
				if i%50 == 0 {
					v++ // it took effect: the next write's version shows it
				}
				continue
			}
			v++
			add(r, i*100, i*100+50, hUpdate(x), hFound(hData(x), v))
			add(100+r, i*100+10, i*100+60, hGet(), hFound(hData(x), v))
		}
	}
	start := time.Now()
	if err := h.Check(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d ops checked in %v", h.Len(), time.Since(start).Round(time.Millisecond))
}
