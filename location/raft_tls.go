package location

import (
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/sibylhq/sibyl/tlsconf"
)

// Raft's TCP transport over TLS (docs/security.md "TLS"). The stream layer (raft.go) dials
// every connection as a TLS client that verifies the peer controller's certificate for the
// host of its raft address, and completes the handshake before raft writes anything; its
// guardedListener (raft_auth.go) completes the server's handshake on a goroutine of its
// own, within raftHandshakeTimeout, before the connection reaches raft. A connection that
// does not speak TLS, or presents a certificate the CA did not sign, never reaches raft.
// With a cluster secret, the secret's preamble follows the handshake, inside the
// encrypted connection.

// clientHandshake turns conn, dialled to addr, into a TLS client connection whose
// handshake is done, within timeout; it closes conn when the handshake fails.
func clientHandshake(conn net.Conn, conf *tls.Config, addr string, timeout time.Duration) (net.Conn, error) {
	tc := tls.Client(conn, tlsconf.ForHost(conf, addr))
	if timeout > 0 {
		_ = tc.SetDeadline(time.Now().Add(timeout))
	}
	if err := tc.Handshake(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS handshake with raft peer %s: %w", addr, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

// serverHandshake turns an accepted conn into a TLS server connection whose handshake is
// done, within the deadline the caller set on conn.
func serverHandshake(conn net.Conn, conf *tls.Config) (net.Conn, error) {
	tc := tls.Server(conn, conf)
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	return tc, nil
}
