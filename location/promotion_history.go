package location

import (
	"github.com/sibylhq/sibyl/command"
)

// The location's promotion history: the last command.MaxPromotionHistory promotions that
// completed, kept in the directory FSM so that every controller holds it and a new leader
// shows what its predecessor recorded. A promotion completes when its new main's barrier is
// known committed: the activate command of the config its choice made pending. Times come
// from the commands (the proposing leader's clock), never from the FSM's own.

// promotionRecord is one completed promotion as the FSM keeps it. Index is the raft index
// of the activate command that completed it.
type promotionRecord struct {
	Index       uint64 `json:"index"`
	AtMs        int64  `json:"atMs"`
	Server      uint16 `json:"server"`
	Epoch       uint64 `json:"epoch"`
	From        uint16 `json:"from"`
	To          uint16 `json:"to"`
	Reason      string `json:"reason"`
	SuspectedMs int64  `json:"suspectedMs,omitempty"`
}

// seconds is the time from the first suspicion to the barrier, when both are known.
func (r promotionRecord) seconds() (float64, bool) {
	if r.SuspectedMs == 0 || r.AtMs == 0 || r.AtMs < r.SuspectedMs {
		return 0, false
	}
	return float64(r.AtMs-r.SuspectedMs) / 1000, true
}

// recordPromotion appends the promotion p of group g, completed at atMs by the command at
// s.Index, dropping the oldest beyond the bound.
func (s *dirState) recordPromotion(g *command.GroupInfo, p *command.Promotion, atMs int64) {
	s.Promotions = append(s.Promotions, promotionRecord{
		Index: s.Index, AtMs: atMs, Server: g.Server, Epoch: p.Epoch, From: p.From, To: p.Chosen,
		Reason: p.Reason, SuspectedMs: p.SuspectedMs,
	})
	if over := len(s.Promotions) - command.MaxPromotionHistory; over > 0 {
		s.Promotions = append(s.Promotions[:0:0], s.Promotions[over:]...)
	}
}

// promotionAt returns the promotion the command at index completed, if it did.
func (f *fsm) promotionAt(index uint64) (promotionRecord, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, r := range f.st.Promotions {
		if r.Index == index {
			return r, true
		}
	}
	return promotionRecord{}, false
}

// statusPromotions renders the history newest first.
func statusPromotions(recs []promotionRecord) []command.StatusPromotion {
	out := make([]command.StatusPromotion, 0, len(recs))
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		sp := command.StatusPromotion{AtMs: r.AtMs, Server: r.Server, Epoch: r.Epoch, From: r.From, To: r.To, Reason: r.Reason}
		if s, ok := r.seconds(); ok {
			sp.Seconds = &s
		}
		out = append(out, sp)
	}
	return out
}
