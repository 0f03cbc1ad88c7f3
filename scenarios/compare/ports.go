package main

import (
	"fmt"
	"net"
	"strconv"
)

// host is the only address anything listens on or connects to.
const host = "127.0.0.1"

// Port offsets from --base-port. The default base, 4000, keeps every port below the
// ranges the repository's own tests and `sibyl dev`'s defaults use (5000 and up), and
// below Linux's ephemeral range.
const (
	sibylPortOffset = 0   // sibyl dev --base-port: controllers +1..3, raft +51..53, nodes +101..104
	etcdPortOffset  = 300 // member i: client +i, peer +10+i
	redisPortOffset = 600 // server i: +i; sentinel i: +10+i
)

func hostPort(port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// namedPort is a port a process of the run will listen on.
type namedPort struct {
	Port int
	What string
}

// checkPortsFree fails, naming the first port and its use, when a port cannot be bound on
// 127.0.0.1 now.
func checkPortsFree(ports []namedPort) error {
	for _, p := range ports {
		l, err := net.Listen("tcp", hostPort(p.Port))
		if err != nil {
			return fmt.Errorf("port %d (%s) is not free: %w (choose other ports with --base-port)", p.Port, p.What, err)
		}
		l.Close()
	}
	return nil
}
