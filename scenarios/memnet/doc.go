// Package memnet is an in-memory network for tests that run whole Sibyl clusters in one
// process: listeners and buffered, full-duplex stream connections between hosts, with a
// delivery latency, one-way or two-way partitions, and crashes.
//
// A connection behaves like TCP as its endpoints see it: bytes arrive in order, exactly
// once, after the link's latency; a partition holds them back (a connection across it
// stalls, a dial across it hangs until its context ends); healing delivers what was held;
// a crashed host's connections end, and its peers read EOF once the partition between them,
// if any, heals. Every wait is on a channel or a timer, so a cluster on memnet runs inside
// a testing/synctest bubble on the bubble's virtual clock.
//
// Drive it with New, Listen an address per server ("10.0.0.1:80"; the part before the
// colon is the host), give each process Dialer(host) as its dial function, and call Cut,
// Heal, Isolate and Crash from the test.
package memnet
