// Command sibyl is the one binary of Sibyl (docs/protocol.md §5): the node and location
// controller processes, a local development cluster (dev), a command-line client
// (create, get, update, patch, delete, list, watch, admin, status) and the benchmark
// driver (bench). It owns flags, configuration and wiring; the behaviour lives in node/,
// location/ and api/.
//
// Decisions recorded here:
//
//   - sibyl node and sibyl location take --config FILE, a TOML file of settings named like
//     their flags (config.go); a flag or SIBYL_ variable overrides it.
//   - Every flag can be set from SIBYL_<FLAG>. The environment is applied after the command
//     line is parsed and only to flags the command line did not set, so the command line
//     wins, and a repeatable flag given on the command line replaces the environment's list
//     instead of adding to it. List values in the environment are comma-separated.
//   - Flags may follow positionals (sibyl get RID --consistency sibling); "--" ends flags.
//   - Exit codes: 0 success, 1 the command failed (client errors print "code: message"),
//     2 a usage error.
//   - A node serves one listener: /v1/internal/ goes to the node, /metrics writes the API's
//     metrics followed by the node's Prometheus registry, everything else is the API.
//   - dev runs its children in its own process group (a terminal's Ctrl-C reaches them) with
//     Pdeathsig SIGKILL on Linux (they never outlive dev, even a SIGKILLed dev); on SIGINT or
//     SIGTERM it sends SIGTERM, then SIGKILL after 5 s, and reaps every child before it
//     exits. It never restarts a child: a kill is a simulated crash. cluster.json is written
//     by rename, only once the cluster serves, and a stale one is removed at start.
//   - dev --locations N starts N locations loc1..locN, each with --controllers controllers
//     on raft (numbered on across locations: c1..c3 in loc1, c4..c6 in loc2, ...) and its
//     share of the nodes (node i in loc((i-1) mod N + 1), given its location's controllers).
//     Every controller is given the others' addresses (--locations NAME=HOST:PORT,...; its
//     own location's are its raft peers). With N > 1 dev also waits, before cluster.json,
//     until every location's /v1/locations reaches every other one with a known leader.
//     --wan-delay is not implemented yet.
//   - node and location serve their listener (and the controller its raft port) over TLS
//     with --tls-cert/--tls-key and verify the processes they call with --tls-ca
//     (tlsflags.go, package tlsconf). dev --tls makes a CA and a certificate per child under
//     DIR/tls/, generates a cluster secret when none is given, and names the CA in
//     cluster.json; the client commands, watch and bench take --tls-ca (bench by default
//     from --cluster's cluster.json).
//   - watch subscribes through api/client, so it resumes by itself (from the last event's
//     token, on the next --addr node) after a disconnect or a lagged; it prints every
//     frame (events and resync) as received, one compact JSON object per line.
//   - bench records latencies in a fixed-size log-linear histogram (< 0.8 % error), so a
//     long run needs no more memory than a short one; mixed alternates writes and reads
//     deterministically. Its clients route (api/client): a worker's requests go straight
//     to the main of its resource's group, also after a failover; --no-routing sends them
//     through the node the worker connects to, which forwards them. With --cluster it
//     also reports the window's cost per op (benchcost.go): the node processes' CPU and
//     storage writes from /proc/<pid>, its own CPU, and the machine's idle share.
package main
