package node

import (
	"context"
	"encoding/json"
	"time"

	"github.com/sibylhq/sibyl/command"
)

// progressEvent is registerSibling's progress frame (docs/protocol.md §3): done and total count
// bytes in the sync phase and entries in the replay phase.
type progressEvent struct {
	Sub      string `json:"sub"`
	Event    string `json:"event"`
	Phase    string `json:"phase"`
	Done     uint64 `json:"done"`
	Total    uint64 `json:"total"`
	Recorded uint64 `json:"recorded"`
}

// registerWithProgress runs registerSibling at the controller and, on a connection that
// can take events, reports its phases as the directory shows them: sync (bytes of the
// snapshot the main sends when the copy starts below its log's horizon; 0 of 0 when the
// log reaches back far enough), replay (the learner's position against the main's last
// seq, from when the copy holds something), and active once the copy votes, sent before
// the reply. The main holds its log for the copy until it votes (register_hold.go), so each
// phase comes once.
func (s *Session) registerWithProgress(ctx context.Context, req *command.Request) func() (*command.Reply, error) {
	ss := s.events()
	if ss == nil || req.Sub == "" || req.Server == nil || req.Node == nil {
		return func() (*command.Reply, error) { return s.n.adminCtrl(req).admin(ctx, req) }
	}
	type result struct {
		reply *command.Reply
		err   error
	}
	done := make(chan result, 1)
	go func() {
		r, err := s.n.adminCtrl(req).admin(ctx, req)
		done <- result{r, err}
	}()
	emitRecorded := func(phase string, d, total, recorded uint64) <-chan struct{} {
		b, _ := json.Marshal(progressEvent{Sub: req.Sub, Event: "progress", Phase: phase, Done: d, Total: total, Recorded: recorded})
		return ss.push(b)
	}
	emit := func(phase string, d, total uint64) <-chan struct{} { return emitRecorded(phase, d, total, total-d) }
	server, node := uint16(*req.Server), uint16(*req.Node)
	return func() (*command.Reply, error) {
		emit("sync", 0, 0)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		var last struct{ done, total uint64 }
		var synced struct{ done, total uint64 }
		replayed := false
		for {
			select {
			case r := <-done:
				if r.err != nil {
					return nil, r.err
				}
				if !replayed {
					emit("replay", last.total, last.total)
				}
				taken := emit("active", last.total, last.total)
				select { // the reply follows the active frame
				case <-taken:
				case <-time.After(time.Second):
				}
				return r.reply, nil
			case <-tick.C:
			}
			st, err := s.n.adminCtrl(req).status(ctx)
			if err != nil {
				continue
			}
			for _, g := range st.Groups {
				if g.Server != server {
					continue
				}
				for _, sib := range g.Siblings {
					if sib.Node != node {
						continue
					}
					if sib.SyncTotal > 0 {
						// A snapshot is on its way: bytes sent of (about) the total; the
						// entries logged meanwhile are recorded for the replay.
						if sib.SyncDone != synced.done || sib.SyncTotal != synced.total {
							synced.done, synced.total = sib.SyncDone, sib.SyncTotal
							emitRecorded("sync", sib.SyncDone, sib.SyncTotal, sib.LagSeq)
						}
						continue
					}
					d := g.Seq - min(sib.LagSeq, g.Seq)
					if d == 0 {
						// The copy holds nothing yet: the main is still finding out whether
						// it needs a snapshot, so the sync phase goes on.
						continue
					}
					if !replayed || d != last.done || g.Seq != last.total {
						last.done, last.total, replayed = d, g.Seq, true
						emit("replay", d, g.Seq)
					}
				}
			}
		}
	}
}
