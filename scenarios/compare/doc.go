// Command compare measures Sibyl, etcd and Redis on this machine in one run and prints
// one table of the three side by side.
//
// Each system runs as a replicated cluster of real processes on 127.0.0.1, one system at
// a time:
//
//   - Sibyl: `sibyl dev` (3 location controllers, 4 nodes), loaded with `sibyl bench`.
//   - etcd: 3 members of /usr/bin/etcd with default settings, loaded with the official Go
//     client (go.etcd.io/etcd/client/v3): one client and one key per writer, Put of the
//     value.
//   - Redis: one master and two replicas of redis-server (appendonly yes, appendfsync
//     always) watched by three sentinels, loaded with go-redis's FailoverClient: SET of
//     the value then WAIT 1, pipelined on one connection; a write counts once a replica
//     acknowledged it.
//
// Every writer runs a closed loop (one write at a time). For each client count it
// reports writes per second and the p50 and p99 latency of the measured window, after a
// warmup. The failover gap is measured with 16 writers on a fresh cluster: the leader
// (etcd), the master (Redis) or the main of the written group (Sibyl) is killed with
// SIGKILL, and the gap is the longest time without any acknowledged write from the kill
// until writes have run again for two seconds; the table shows the median over the runs.
//
// Every process it starts gets its own process group and SIGKILL as its parent-death
// signal; all are killed when the program ends, on error and on Ctrl-C too. It runs on
// Linux only.
package main
