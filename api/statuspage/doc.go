// Package statuspage is Sibyl's live status page, one for nodes and controllers alike
// (docs/protocol.md §8): GET / serves a single self-contained HTML document (inline CSS,
// script and SVG; no external assets, so it works on an isolated network), and GET
// /v1/status/stream pushes the process's /v1/status object to it as server-sent events.
//
// A Stream polls its Source (the node's or controller's status) while anyone listens, once
// per Poll and at once after Poke, and sends a frame whenever the status changed and at
// least once per Every, so the page both updates within a poll of a change and can tell a
// process that went quiet. One poller serves every open page. Each client holds only the
// newest frame not yet written: a slow browser skips frames, it never queues them.
//
// The page renders locations and controllers, nodes, groups (with their siblings, the
// main's commits per second and p99 over the last minute as small charts), running
// registrations and drains as progress bars, and the last promotions. It shows
// "reconnecting" when the stream breaks or stays silent past three seconds, and starts a
// new one until the process answers again.
package statuspage
