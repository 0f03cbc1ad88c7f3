// Package location is Sibyl's location controller: three processes per location form a
// hashicorp/raft cluster whose replicated state, the directory, says which nodes exist,
// which node is main of each group, which nodes hold sibling copies and which voting
// config each group uses. Nodes join and heartbeat the leader over HTTP and follow the
// directory with a long poll; the leader adds siblings until every group has its target
// number, and turns caught-up learners into voters through committed config changes.
//
// # Driving it
//
// Create one Controller per process with New, serve Handler on Config.HTTPAddr, and Close
// it on shutdown:
//
//	c, err := location.New(location.Config{
//		ID: "c1", HTTPAddr: "127.0.0.1:7701", RaftAddr: "127.0.0.1:7751", DataDir: dir,
//		Peers: map[string]string{"c1": "127.0.0.1:7751", "c2": "127.0.0.1:7752", "c3": "127.0.0.1:7753"},
//	})
//	go http.Serve(httpListener, c.Handler())
//	defer c.Close()
//
// Config.Locations names the other locations' controllers (HTTP addresses), where the
// leader sends its ads. The data directory also holds the controller's incarnation counter,
// raised at every start.
//
// A data directory without raft state bootstraps the cluster from Peers (every controller
// of a new location is given the same Peers); one with state never bootstraps again, so a
// restarted controller rejoins with the membership it had. Config.RaftListener lets the
// caller bind the raft port itself (tests use ephemeral ports that way).
//
// # Layout
//
//   - directory.go, commands.go: the directory state and its commands (registerController,
//     joinNode, addLearner, proposeVoter, activate). Each command is a typed struct in a
//     JSON envelope {"kind","body"}; applying validates first and refuses (an error result,
//     the state untouched) rather than panicking.
//   - fsm.go: the raft FSM over that state; snapshots are the whole directory as JSON.
//   - raft.go: raft with raft-boltdb/v2 (raft.db) and a file snapshot store in DataDir, a TCP
//     transport, timeouts tuned for a LAN (500 ms heartbeat and election, 250 ms lease),
//     behind the narrow consensus interface so a deterministic stand-in can replace it.
//     raft_adapter_test.go holds raftNode to that interface over raft's in-memory
//     transport, inside testing/synctest bubbles (raft's timers on a virtual clock).
//     hclog.go routes raft's logs into zerolog (raft's info and below become debug).
//   - leader.go: the leader's memory, which is not replicated: node liveness and the latest
//     report per (node, group). A new leader starts every node as up at its election.
//   - reconcile.go: planRound, a pure function from the directory and reports to commands,
//     run by the leader every 100 ms and after each accepted heartbeat.
//   - ads.go: the ad book, a pure state machine of one controller's advertisements (which
//     ad is newer, what is accepted, dropped, passed on and to whom, expiry); gossip.go
//     drives it: the controller's own ad every Config.AdEvery, nodes' joins and heartbeats
//     as their ads, batches to other controllers, GET /v1/ads and GET /v1/locations
//     (docs/locations.md).
//   - http.go, status.go, metrics.go: the HTTP endpoints; the status page and its event
//     stream come from package api/statuspage. promotion_history.go and
//     promotion_metrics.go: the last promotions kept in the directory and their metrics;
//     operations.go: the admin calls running now, with their progress.
//   - drain_locations.go: drain and removeNode of a node that other locations hold copies
//     on: its own location has every other one act on its own groups first
//     (docs/locations.md "Drain and removeNode across locations").
//   - auth.go, raft_auth.go: the cluster secret and admin tokens (below), on HTTP and on
//     raft's connections; raft_tls.go: raft's connections over TLS (Config.ServerTLS and
//     ClientTLS; every HTTP call the controller makes is https with ClientTLS, and the
//     caller serves Handler on a TLS listener).
//   - auth_cmds.go, auth_admin.go: roles and token hashes in the directory, and the admin
//     ops that change them (createRole, deleteRole, listRoles, createToken, revokeToken).
//
// # Endpoints
//
// Authentication: with Config.ClusterSecret, every /v1/internal/ endpoint below refuses a
// call without the secret in command.SecretHeader (X-Sibyl-Secret) with 401 unauthorized,
// on followers too, before anything else; with Config.AdminTokens, /v1/internal/admin/{op}
// also needs an admin token as "Authorization: Bearer TOKEN" (nodes pass on their
// caller's): one of Config.AdminTokens or an unexpired admin token of the directory.
// The controller presents the secret on every call it makes (seals and hand-overs to
// nodes, registration and the status proxy to controllers) and opens every raft
// connection with a digest of it (raft_auth.go); a raft connection without it never
// reaches raft. GET /healthz and /metrics need neither; GET /v1/status and / need, with
// Config.AdminTokens, the secret or any valid token; GET /v1/ads and /v1/locations need
// the secret or an admin token when either is configured.
//
// Node protocol (leader only; a follower answers 421 with command.LeaderHint naming the
// leader's HTTP address, empty when unknown; a leader that has not yet applied its
// predecessors' entries answers 503 "unavailable", retryable). Before answering, the leader
// confirms its leadership with raft VerifyLeader, at most once per 100 ms.
//
//   - POST /v1/internal/join, command.JoinRequest -> command.Directory. Applies joinNode;
//     the first join of a node creates its group {main: node, epoch 1, active config
//     version 1 with no voters}. An empty location means the controller's. A node of
//     another location joins as a guest: it is recorded (groups homed here may keep copies
//     on it, docs/locations.md) but no group is created for it; a guest with the ID of a
//     group homed here, or a node ID already recorded in another location, is 400. The
//     answered directory names this location (Directory.Location, GroupInfo.Home). A
//     guest's heartbeats are not taken as its ads. A join from the recorded instance
//     changes nothing (a retry). A join
//     from another instance is a restart: a main's group moves to a new epoch. When its
//     incarnation is not above the recorded one, its data directory was wiped or replaced:
//     the directory records (and answers, in NodeInfo.Incarnation) the recorded
//     incarnation + 1, which the node adopts; a group it was main of that has voters loses
//     its main (Main 0, the node becomes a syncing learner) and is promoted among its
//     voters, as an empty copy must never act as main over siblings that hold the log. The
//     node counts as up from now.
//   - POST /v1/internal/heartbeat, command.Heartbeat -> command.Directory. 404 if the node
//     never joined, 409 if instance/incarnation differ from the directory's (join first).
//     A heartbeat with a lower generation than one already seen is not recorded but still
//     answered. It refreshes liveness and replaces the node's reports.
//   - GET /v1/internal/directory?after=N -> command.Directory, as soon as the directory's
//     index exceeds N, else after Config.LongPoll (5 s) with the current one.
//   - POST /v1/internal/controller, {id, httpAddr, raftAddr, location} -> {"ok":true}:
//     a controller registers its HTTP address; only raft members of this location at the
//     raft address they claim are accepted (403 otherwise). Every controller does this by
//     itself until the directory holds its current addresses.
//
// Ads between controllers (docs/locations.md):
//
//   - POST /v1/internal/ads, command.AdBatch -> {"ok":true,"accepted":n}. A batch from
//     another location is taken only by the leader (a follower answers 421 with the
//     LeaderHint, so the sender goes there); a batch from this location (a follower's own
//     ad, the leader's pushes to its followers) by any controller.
//   - GET /v1/ads -> []command.Ad: every ad held, this controller's own with an empty path.
//   - GET /v1/locations -> command.LocationsReply (a follower asks its leader). With a
//     cluster secret or admin tokens configured, these two need the secret or an admin
//     token.
//
// Errors are {"error": command.Error} with the codes of docs/protocol.md.
//
// In every Directory answered, Index is the index of the last applied directory command and
// NodeInfo.State/Generation are the leader's view: "up" when the node joined or
// heartbeated within DownAfter, "degraded" when its latest heartbeat reports a disk fault
// (command.Heartbeat.Degraded; /v1/status gives the reason, and a main degraded for
// DownAfter is replaced by a non-automatic promotion), else "down" ("spare" once drained). Liveness changes
// do not raise Index, so a long poll shows them at its next answer.
//
// Everyone: GET /v1/status (command.Status; a follower proxies to the leader and, without
// one, answers from its own directory with every node "down" since it cannot vouch for
// liveness; the other locations, their controllers and nodes come from the ads), GET /healthz (200 while raft knows a leader, else 503), GET /metrics
// (Prometheus, from the controller's own registry: raft state, term and indexes, directory
// index, nodes by state (leader only), groups, pending configs, siblings by state, commands
// applied by kind and outcome, Go and process metrics), GET / (the status page of package
// api/statuspage) and GET /v1/status/stream (the status as server-sent events).
//
// # Reconciliation rules
//
// Per group whose main is up: target siblings = min(3, up non-spare nodes - 1). With fewer
// siblings than that, one learner per round is added: the up node without a copy that holds
// the fewest copies (main or sibling) of any home's groups (its heartbeats report those of
// other homes), lowest ID on ties. A syncing learner that the main's
// current report (role main, the group's epoch) shows Recent and within 64 of its LastSeq is
// proposed as a voter when no config is pending (a pending config = active voters + it,
// version + 1). When the main reports Activated >= the pending version, the pending config
// becomes active and its new voters are "voting", with the copy IDs they reported. Siblings
// are never removed here.
//
// Demotions (stale.go, stale_cmds.go; docs/replication.md cases 5 D and 12) are config changes
// too, planned before proposeVoter when no config is pending:
//
//   - A voter whose node reports the group with another copy ID than the recorded one lost
//     its disk: demote{To: syncing} commits a pending config without it, whatever that does
//     to W. On activation it is a learner with no copy ID and votes again, with its new
//     copy ID, through the usual catch-up.
//   - A voter whose node's heartbeats have not reported the group for Config.CopyTimeout
//     (--copy-timeout, default 10 min; the clock is the leader's memory and starts at the
//     start of its term, so a new leader demotes nobody before watching for that long) is
//     demoted with demote{To: stale}, all such voters of a group at once, unless the voters
//     left up and reporting could not form W of the active config or of the config without
//     them (or the main is down): then they stay voting and /v1/status flags each with
//     "unreachable": true and a group warning. Until activation a demoted voter is still a
//     voter of the active config (joint quorum); Member.Demote records where it goes.
//   - On activation a stale member keeps its old copy ID as Member.StaleCopyID. The main
//     does not replicate to it; /v1/status shows it as "syncing" with "stale": true.
//   - A stale member whose node is up and reports the group with a copy ID other than
//     StaleCopyID (a resyncing report, when none was recorded), or heartbeats without the
//     group at all, is revived (reviveStale) as a syncing learner. registerSibling on a node
//     whose copy is stale does the same instead of answering conflict. A learner is never
//     proposed as a voter while its node reports StaleCopyID or Resyncing.
//
// A promotion's chosen main must commit its epoch barrier within DownAfter (docs/replication.md
// case 7): the barrier activates the promotion's pending config, so the leader watches for
// the main's report of that config (GroupReport.Activated >= the pending version). A main
// still waiting after DownAfter from when the leader first saw the choice is treated as
// down, and a fresh (non-auto) promotion may start, subject to the usual backoff.
package location
