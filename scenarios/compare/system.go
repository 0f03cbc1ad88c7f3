package main

import (
	"context"
	"io"
)

// env is what every system's code shares in a run.
type env struct {
	cfg      config
	bins     binaries
	procs    *procSet
	progress io.Writer
}

// system is one of the compared systems; start brings a fresh cluster of it up in dir.
type system interface {
	name() string
	start(ctx context.Context, dir string) (cluster, error)
}

// cluster is a running cluster of a system, ready for writes.
type cluster interface {
	// load runs clients writers for the configured warmup and duration.
	load(ctx context.Context, clients int) (loadResult, error)
	// failover runs the failover writers, kills the process that orders the writes, and
	// measures the gap. The cluster is left with that process dead.
	failover(ctx context.Context) (failoverResult, error)
	// stop ends every process of the cluster.
	stop()
}

func newSystem(e *env, sys string) system {
	switch sys {
	case sysSibyl:
		return &sibylSystem{env: e}
	case sysEtcd:
		return &etcdSystem{env: e}
	default:
		return &redisSystem{env: e}
	}
}

// payload is a value of n bytes.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}
