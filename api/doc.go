// Package api is the edge of a Sibyl node: the WebSocket command API, its REST mirror and
// the HTTP endpoints of docs/protocol.md (§2–§4). It owns framing, authentication, limits,
// reply shaping and error encoding; a Backend (the node) owns routing and execution.
//
// Driving it:
//
//	srv := api.NewServer(backend, api.Options{ClientTokens: ..., AdminTokens: ..., Tokens: node})
//	httpServer := &http.Server{Addr: addr, Handler: srv.Handler()}
//	go httpServer.ListenAndServe()
//	...
//	srv.Close() // closes WebSocket connections with 1001; then shut the http.Server down
//
// Endpoints: GET /v1/ws, POST /v1/resources, GET /v1/resources (list, extra: ?type=,
// ?server=, ?after=, ?limit=), GET/PUT/PATCH/DELETE /v1/resources/{rid}, POST
// /v1/admin/{op}, GET /v1/status, GET /v1/status/stream (server-sent events), GET /healthz,
// GET /metrics, GET / (the status page of package statuspage).
//
// One WebSocket connection is one Session. The read loop decodes each frame and calls
// Session.Start in arrival order (Start fixes the order of writes); a goroutine per request
// waits for its outcome, and one writer goroutine sends replies as they complete, so
// replies may come out of order. A REST call is a Session of its own.
//
// Decisions where the protocol leaves room:
//   - A frame that is not valid JSON (or too deep) still has its top-level "id" echoed
//     when it can be read as a string; "id": null otherwise, and always for a binary or
//     oversized frame and for invalid UTF-8 (answered with bad_request, not close 1007).
//   - MaxDepth counts the frame's own object as level 1, checked by a byte scanner before
//     decoding so that deep nesting costs no allocation.
//   - Oversized frames are read to their end and dropped, never with gorilla's read limit,
//     which would close the connection.
//   - /healthz and /metrics need no token. With tokens configured, GET /v1/status, the
//     status page and its stream (/v1/status/stream) need any valid token, as a bearer
//     token or as ?token= (a browser opening the page cannot send a header, and neither
//     can its EventSource: the page passes its ?token= on to the stream); every WebSocket
//     op but hello (the status op too) and every REST call needs one. Roles limit a token
//     to some op kinds on some types (auth.go).
//   - A directory token that stops working (revoked, expired, its role deleted) closes its
//     WebSocket connections with 1008 as soon as the node has the directory that says so,
//     and the next frame on such a connection is unauthorized.
//   - Any Origin may open a WebSocket: auth is by bearer token, never by cookies.
//   - "retryable" on the wire always follows the code; a backend error without a protocol
//     code is sent as internal.
//   - Metrics are sibyl_requests_total{op,code}, sibyl_request_seconds{op},
//     sibyl_connections and sibyl_event_frames_total, with op "invalid" for
//     frames without a valid op.
//
// Events: the backend keeps each subscription's bounded buffer and decides when a slow one
// is lagged; the connection pulls. Backend.NewSession gets the connection as an Outbox,
// whose Wake (never blocking) tells the writer that Session.Events has frames; the writer
// takes them in batches of 64 between replies, at the pace the client reads, so no
// goroutine runs per subscription. The server sets a subscribe request's Sub to its id
// (the "sub" of its events) and calls Session.Subscribed once that reply is written, so
// no event precedes the reply that names its subscription. unsubscribe's reply carries
// the backend's token (an extra field) when it has one.
package api
