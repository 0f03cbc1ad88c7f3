// Package scenarios runs Sibyl end to end: real `sibyl` processes on 127.0.0.1, started by
// `sibyl dev`, faults injected with kill -9, SIGSTOP and SIGCONT on the pids that
// cluster.json names, and every run checked: the operation history with porcupine
// (History), and acknowledged writes counted against what the cluster holds afterwards.
//
// TestMain builds the binary once. Each test starts its own cluster on its own ports
// (chosen from a seeded sequence, printed with the seed) and data directory, and stops it
// when done.
package scenarios
