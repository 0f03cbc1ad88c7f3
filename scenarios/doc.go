// Package scenarios runs Sibyl end to end: real `sibyl` processes on 127.0.0.1, started by
// `sibyl dev`, faults injected with kill -9, SIGSTOP and SIGCONT on the pids that
// cluster.json names, and every run checked: the operation history with porcupine
// (History), and acknowledged writes counted against what the cluster holds afterwards.
//
// The same code also runs in one process (inproc_*_test.go): controllers and nodes on
// memnet, an in-memory network, inside a testing/synctest bubble, so seeded fault
// schedules of many seconds run in about a second each on virtual time, checked the same
// way. Seeds 1..N run every time (-inproc.runs or SIBYL_INPROC_RUNS sets N, default 20),
// then a few fresh seeds drawn from the clock (-inproc.fresh or SIBYL_INPROC_FRESH, default
// 2), printed before they run; -inproc.seed=N replays one.
//
// The writers (workload.go) run every op of the protocol with idempotency keys: create,
// update and merge patch (some conditional on ifVersion), delete, conditional patches of
// another writer's resource, and tickets with fenced writes; readers read linearizably.
// History checks every resource's operations against a model of one resource (existence,
// data, version, ticket), so a lost, doubled or misplaced effect of any op fails it.
//
// The kill -9 failover, the planned promote, the sibling registration and the drain run in
// every clusterMode: on an open cluster; "secured", with a cluster secret and an admin token
// on every process and clients holding a role's token, where checkGuarded first has
// intruders refused on every controller and node port; and "tls", that with TLS on every
// listener besides (dev --tls). Groups spanning three locations, and a location losing all its
// controllers, run open and in the tls mode; a drain across locations in the tls mode. TestEndpointsRefuseIntruders calls every endpoint the routers register
// (routerPatterns) in plaintext on a TLS cluster and, for internal ones, without the
// secret, and checks that nothing is served or changed; TestRolesAndTokens calls every
// endpoint without the credentials it needs; the status page is driven in chromium with and
// without tokens.
//
// TestMain builds the binary once. Each test starts its own cluster on its own ports
// (chosen from a seeded sequence, printed with the seed) and data directory, and stops it
// when done.
package scenarios
