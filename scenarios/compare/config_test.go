package main

import (
	"io"
	"slices"
	"testing"
)

func TestParseClients(t *testing.T) {
	got, err := parseClients(" 1,16, 64,16 ")
	if err != nil || !slices.Equal(got, []int{1, 16, 64}) {
		t.Fatalf("parseClients = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "x", "1,-2", "5000"} {
		if _, err := parseClients(bad); err == nil {
			t.Errorf("parseClients(%q) accepted", bad)
		}
	}
}

func TestParseSystems(t *testing.T) {
	got, err := parseSystems("redis, Sibyl,redis")
	if err != nil || !slices.Equal(got, []string{sysSibyl, sysRedis}) {
		t.Fatalf("parseSystems = %v, %v", got, err)
	}
	for _, bad := range []string{"", "mysql", "etcd,zk"} {
		if _, err := parseSystems(bad); err == nil {
			t.Errorf("parseSystems(%q) accepted", bad)
		}
	}
}

func TestParseFlagsRejects(t *testing.T) {
	for _, args := range [][]string{
		{"--duration", "0s"},
		{"--failover-runs", "0"},
		{"--base-port", "80"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	if _, err := parseFlags([]string{"--failover-runs", "0", "--skip-failover"}, io.Discard); err != nil {
		t.Errorf("--failover-runs 0 with --skip-failover: %v", err)
	}
}

func TestParseBenchJSON(t *testing.T) {
	out := "bench: 16 clients\n  1s ops 10\nresult: ...\n{\"clients\":16,\"opsPerSec\":2500.5,\"p50Ms\":5.1,\"p99Ms\":20.2,\"ops\":25005,\"errors\":{}}\n"
	r, err := parseBenchJSON(out)
	if err != nil || r.Clients != 16 || r.OpsPerSec != 2500.5 || r.P50Ms != 5.1 || r.P99Ms != 20.2 || r.Ops != 25005 {
		t.Fatalf("parseBenchJSON = %+v, %v", r, err)
	}
	if _, err := parseBenchJSON("no result\n"); err == nil {
		t.Error("output without a JSON line accepted")
	}
}

func TestCPUModel(t *testing.T) {
	in := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nprocessor\t: 1\nmodel name\t: other\n"
	if got := cpuModel(in); got != "Intel(R) Xeon(R) CPU @ 2.20GHz" {
		t.Errorf("cpuModel = %q", got)
	}
}
