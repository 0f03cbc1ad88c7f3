package location

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Raft connections between controllers carry the cluster secret too. With a secret, the
// dialling side opens every connection with a preamble, raftMagic followed by a SHA-256
// digest of the secret, before raft's own bytes; the accepting side hands raft only
// connections whose preamble matches (compared in constant time) and closes the others.
// The digest, not the secret, goes on the wire, so a process that merely listens on a raft
// address learns nothing it could present to a node or controller's HTTP endpoints.

const raftMagic = "SIBYL-RAFT/1\n"

// raftHandshakeTimeout bounds how long an accepted connection may take to send its
// preamble; a slow or silent caller costs one goroutine for that long, never raft's accept.
const raftHandshakeTimeout = 5 * time.Second

// raftPreamble is what a controller with secret sends first on every raft connection.
func raftPreamble(secret string) []byte {
	d := sha256.Sum256([]byte("sibyl raft\x00" + secret))
	return append([]byte(raftMagic), d[:]...)
}

// writePreamble sends the preamble on a new outgoing connection.
func writePreamble(conn net.Conn, preamble []byte, timeout time.Duration) error {
	if timeout > 0 {
		_ = conn.SetWriteDeadline(time.Now().Add(timeout))
	}
	_, err := conn.Write(preamble)
	_ = conn.SetWriteDeadline(time.Time{})
	return err
}

// guardedListener passes on only the connections that pass its checks, each run on a
// goroutine of its own within raftHandshakeTimeout: a TLS handshake when it has TLS
// settings (raft_tls.go), then the secret's preamble when it has a secret.
type guardedListener struct {
	net.Listener
	tls      *tls.Config    // nil: no TLS
	preamble []byte         // nil: no secret
	log      zerolog.Logger // sampled: refusals are logged a few per period

	start   sync.Once
	results chan acceptResult
	closed  chan struct{}
	once    sync.Once
}

type acceptResult struct {
	conn net.Conn
	err  error
}

// newGuardedListener guards ln with serverTLS and secret; either may be empty.
func newGuardedListener(ln net.Listener, serverTLS *tls.Config, secret string, log zerolog.Logger) *guardedListener {
	l := &guardedListener{
		Listener: ln, tls: serverTLS,
		log:     log.Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second}),
		results: make(chan acceptResult), closed: make(chan struct{}),
	}
	if secret != "" {
		l.preamble = raftPreamble(secret)
	}
	return l
}

// Accept returns the next connection that passed the checks, or the listener's error.
func (l *guardedListener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.acceptLoop() })
	select {
	case r := <-l.results:
		return r.conn, r.err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// acceptLoop accepts connections and checks each one's preamble on a goroutine of its own.
// Accept errors go to Accept as they are (raft backs off on a temporary one); the loop ends
// when the listener is closed.
func (l *guardedListener) acceptLoop() {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			select {
			case l.results <- acceptResult{err: err}:
			case <-l.closed:
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		go l.handshake(conn)
	}
}

func (l *guardedListener) handshake(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(raftHandshakeTimeout))
	if l.tls != nil {
		tc, err := serverHandshake(conn, l.tls)
		if err != nil {
			l.log.Warn().Str("remote", conn.RemoteAddr().String()).Err(err).
				Msg("raft connection refused: TLS handshake failed")
			conn.Close()
			return
		}
		conn = tc
	}
	if l.preamble != nil {
		got := make([]byte, len(l.preamble))
		_, err := io.ReadFull(conn, got)
		if err != nil || subtle.ConstantTimeCompare(got, l.preamble) != 1 {
			l.log.Warn().Str("remote", conn.RemoteAddr().String()).AnErr("read", err).
				Msg("raft connection refused: no cluster secret or a wrong one")
			conn.Close()
			return
		}
	}
	_ = conn.SetDeadline(time.Time{})
	select {
	case l.results <- acceptResult{conn: conn}:
	case <-l.closed:
		conn.Close()
	}
}

// Close stops accepting; connections still in their handshake are closed as they finish.
func (l *guardedListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}
