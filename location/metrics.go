package location

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sibylhq/sibyl/command"
)

// Metrics live in a registry of the controller's own (several controllers share a process
// in tests, and the global registry belongs to nobody). Everything is read from the FSM,
// raft and the leader's memory at scrape time by one collector, so a scrape is a
// consistent picture and nothing has to be kept up to date on the hot paths.

func (c *Controller) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newControllerCollector(c),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

type controllerCollector struct {
	c *Controller

	info, raftState, leader, term, lastIndex, commitIndex, appliedIndex *prometheus.Desc
	dirIndex, polls, nodesTotal, nodes, groups, pending, siblings       *prometheus.Desc
	commands                                                            *prometheus.Desc
	promotions, promotionSeconds                                        *prometheus.Desc
	adsReceived, adsForwarded, adsDropped, adsHeld, locReachable        *prometheus.Desc
}

func newControllerCollector(c *Controller) *controllerCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("sibyl_controller_"+name, help, labels, nil)
	}
	return &controllerCollector{
		c:            c,
		info:         d("info", "Constant 1, labelled with the controller's ID and location.", "id", "location"),
		raftState:    d("raft_state", "1 for the raft state this controller is in, 0 for the others.", "state"),
		leader:       d("leader", "1 while this controller leads and serves the node protocol."),
		term:         d("raft_term", "Current raft term."),
		lastIndex:    d("raft_last_index", "Index of the last raft log entry."),
		commitIndex:  d("raft_commit_index", "Raft commit index."),
		appliedIndex: d("raft_applied_index", "Raft applied index."),
		dirIndex:     d("directory_index", "Index of the last command applied to the directory."),
		polls:        d("directory_polls", "Directory long polls currently waiting."),
		nodesTotal:   d("nodes_total", "Nodes in the directory."),
		nodes:        d("nodes", "Nodes by state as the leader sees them (exported by the leader only).", "state"),
		groups:       d("groups", "Groups in the directory."),
		pending:      d("groups_pending_config", "Groups with a pending membership change."),
		siblings:     d("siblings", "Sibling copies by state.", "state"),
		commands: d("commands_applied_total",
			"Directory commands applied by this controller's FSM since it started, by kind and outcome.", "kind", "outcome"),
		adsReceived:  d("ads_received_total", "Ads this controller was handed: by other controllers, and nodes' joins and heartbeats taken as their ads."),
		adsForwarded: d("ads_forwarded_total", "Ads this controller passed on (one per ad and target)."),
		adsDropped: d("ads_dropped_total",
			"Ads not taken or not delivered, by reason: own, loop, duplicate, older, expired, invalid, unsent.", "reason"),
		adsHeld: d("ads_held", "Ads this controller holds, its own included."),
		promotions: prometheus.NewDesc("sibyl_promotions_total",
			"Promotions this controller completed as leader (the new main's barrier committed), by group and reason.",
			[]string{"server", "reason"}, nil),
		promotionSeconds: prometheus.NewDesc("sibyl_promotion_seconds",
			"Promotions this controller completed as leader: time from the first suspicion (a planned promotion: the admin call) to the new main's barrier committed.",
			nil, nil),
		locReachable: d("location_reachable", "1 while another location is reachable, 0 when it is not.", "location"),
	}
}

func (cc *controllerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cc.info, cc.raftState, cc.leader, cc.term, cc.lastIndex, cc.commitIndex,
		cc.appliedIndex, cc.dirIndex, cc.polls, cc.nodesTotal, cc.nodes, cc.groups, cc.pending, cc.siblings, cc.commands,
		cc.adsReceived, cc.adsForwarded, cc.adsDropped, cc.adsHeld, cc.locReachable, cc.promotions, cc.promotionSeconds} {
		ch <- d
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (cc *controllerCollector) Collect(ch chan<- prometheus.Metric) {
	c := cc.c
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	rs := c.cons.stats()
	st, _ := c.fsm.view()

	gauge(cc.info, 1, c.cfg.ID, c.cfg.Location)
	for _, s := range []string{"Follower", "Candidate", "Leader", "Shutdown"} {
		gauge(cc.raftState, boolValue(rs.State == s), strings.ToLower(s))
	}
	gauge(cc.leader, boolValue(c.IsLeader()))
	gauge(cc.term, float64(rs.Term))
	gauge(cc.lastIndex, float64(rs.LastIndex))
	gauge(cc.commitIndex, float64(rs.CommitIndex))
	gauge(cc.appliedIndex, float64(rs.Applied))
	gauge(cc.dirIndex, float64(st.Index))
	gauge(cc.polls, float64(c.polls.Load()))
	gauge(cc.nodesTotal, float64(len(st.Nodes)))
	if t := c.term.Load(); t != nil && t.isReady() {
		counts := map[string]int{}
		now := c.now()
		for _, n := range st.Nodes {
			s, _ := t.nodeState(n, now, c.cfg.DownAfter)
			counts[s]++
		}
		for _, s := range []string{command.NodeUp, command.NodeDown, command.NodeSpare, command.NodeDegraded} {
			gauge(cc.nodes, float64(counts[s]), s)
		}
	}

	pending, siblings := 0, map[string]int{}
	for _, g := range st.Groups {
		if g.Pending != nil {
			pending++
		}
		for _, s := range g.Siblings {
			siblings[s.State]++
		}
	}
	gauge(cc.groups, float64(len(st.Groups)))
	gauge(cc.pending, float64(pending))
	for _, s := range []string{command.SiblingSyncing, command.SiblingVoting, command.SiblingStale} {
		gauge(cc.siblings, float64(siblings[s]), s)
	}
	stats, held := c.adCounters()
	ch <- prometheus.MustNewConstMetric(cc.adsReceived, prometheus.CounterValue, float64(stats.Received))
	ch <- prometheus.MustNewConstMetric(cc.adsForwarded, prometheus.CounterValue, float64(stats.Forwarded))
	for _, r := range []string{dropOwn, dropLoop, dropDuplicate, dropOlder, dropExpired, dropInvalid, dropUnsent} {
		ch <- prometheus.MustNewConstMetric(cc.adsDropped, prometheus.CounterValue, float64(stats.Dropped[r]), r)
	}
	gauge(cc.adsHeld, float64(held))
	for _, v := range c.remoteLocations(c.now()) {
		gauge(cc.locReachable, boolValue(v.Reachable), v.Name)
	}
	groups := make([]uint16, 0, len(st.Groups))
	for id := range st.Groups {
		groups = append(groups, id)
	}
	c.promoStats.collect(ch, cc.promotions, cc.promotionSeconds, groups)
	for k, v := range c.fsm.commandCounts() {
		ch <- prometheus.MustNewConstMetric(cc.commands, prometheus.CounterValue, float64(v), k[0], k[1])
	}
}
