package main

import (
	"encoding/json"
	"fmt"
	"os"
)

// report is what --json writes: the machine, the settings, the table's rows and every
// raw result.
type report struct {
	Machine machineInfo     `json:"machine"`
	Config  reportConfig    `json:"config"`
	Table   []tableRow      `json:"table"`
	Systems []*systemResult `json:"systems"`
}

type reportConfig struct {
	Systems          []string `json:"systems"`
	Clients          []int    `json:"clients"`
	Duration         string   `json:"duration"`
	Warmup           string   `json:"warmup"`
	Size             int      `json:"size"`
	OpTimeout        string   `json:"opTimeout"`
	FailoverRuns     int      `json:"failoverRuns"`
	FailoverClients  int      `json:"failoverClients"`
	FailoverWait     string   `json:"failoverWait"`
	SkipFailover     bool     `json:"skipFailover"`
	BasePort         int      `json:"basePort"`
	SibylBin         string   `json:"sibylBin"`
	RedisDownAfterMs int      `json:"redisDownAfterMs"`
}

func newReport(m machineInfo, cfg config, sibylBin string, rows []tableRow, results map[string]*systemResult) report {
	r := report{Machine: m, Table: rows, Config: reportConfig{
		Systems: cfg.Systems, Clients: cfg.Clients, Duration: cfg.Duration.String(), Warmup: cfg.Warmup.String(),
		Size: cfg.Size, OpTimeout: cfg.OpTimeout.String(), FailoverRuns: cfg.FailoverRuns,
		FailoverClients: cfg.FailoverClients, FailoverWait: cfg.FailoverWait.String(), SkipFailover: cfg.SkipFailover,
		BasePort: cfg.BasePort, SibylBin: sibylBin, RedisDownAfterMs: redisDownAfter,
	}}
	for _, sys := range allSystems {
		if res, ok := results[sys]; ok {
			r.Systems = append(r.Systems, res)
		}
	}
	return r
}

func writeReport(path string, r report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("--json %s: %w", path, err)
	}
	return nil
}
