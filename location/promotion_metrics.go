package location

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sibylhq/sibyl/command"
)

// promotionBuckets are the upper bounds of sibyl_promotion_seconds: the node's latency
// buckets (node.LatencyBuckets), doubling from 50 µs to past 5 s.
var promotionBuckets = prometheus.ExponentialBuckets(50e-6, 2, 18)

// promotionStats are sibyl_promotions_total{server,reason} and sibyl_promotion_seconds, as
// counted by this controller: it counts the promotions whose completion it committed as
// leader (the activate of the new main's config), so each promotion is counted once in the
// location, by the leader of the moment. The zero value is ready.
type promotionStats struct {
	mu    sync.Mutex
	count map[promotionKey]uint64
	hist  promotionHist
}

type promotionKey struct {
	server uint16
	reason string
}

type promotionHist struct {
	counts []uint64 // cumulative per bucket
	sum    float64
	n      uint64
}

// observe counts promotion r.
func (p *promotionStats) observe(r promotionRecord) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.count == nil {
		p.count = map[promotionKey]uint64{}
	}
	p.count[promotionKey{r.Server, r.Reason}]++
	s, ok := r.seconds()
	if !ok {
		return
	}
	if p.hist.counts == nil {
		p.hist.counts = make([]uint64, len(promotionBuckets))
	}
	for i, ub := range promotionBuckets {
		if s <= ub {
			p.hist.counts[i]++
		}
	}
	p.hist.sum += s
	p.hist.n++
}

// notePromotion counts the promotion the command at index completed, if it did, and logs it.
func (c *Controller) notePromotion(index uint64) {
	r, ok := c.fsm.promotionAt(index)
	if !ok {
		return
	}
	c.promoStats.observe(r)
	e := c.log.Info().Uint16("group", r.Server).Uint64("epoch", r.Epoch).Uint16("from", r.From).Uint16("main", r.To).
		Str("reason", r.Reason)
	if s, ok := r.seconds(); ok {
		e = e.Float64("seconds", s)
	}
	e.Msg("promotion complete: the new main's barrier committed")
}

// collect writes both families. Every group of groups gets a series per reason from the
// start (zero until it happens), so that rate() sees a promotion's first increase.
func (p *promotionStats) collect(ch chan<- prometheus.Metric, total, seconds *prometheus.Desc, groups []uint16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := map[promotionKey]uint64{}
	for _, g := range groups {
		for _, r := range command.PromotionReasons {
			keys[promotionKey{g, r}] = 0
		}
	}
	for k, v := range p.count {
		keys[k] = v
	}
	for k, v := range keys {
		ch <- prometheus.MustNewConstMetric(total, prometheus.CounterValue, float64(v), strconv.Itoa(int(k.server)), k.reason)
	}
	buckets := make(map[float64]uint64, len(promotionBuckets))
	for i, ub := range promotionBuckets {
		if p.hist.counts != nil {
			buckets[ub] = p.hist.counts[i]
		} else {
			buckets[ub] = 0
		}
	}
	ch <- prometheus.MustNewConstHistogram(seconds, p.hist.n, p.hist.sum, buckets)
}
