package main

import (
	"crypto/tls"
	"flag"
	"net"

	"github.com/sibylhq/sibyl/tlsconf"
)

// tlsFlags are the TLS flags of the server commands (node, location): every listener of
// the process serves TLS with --tls-cert and --tls-key, and every call it makes to another
// process verifies that one's certificate with --tls-ca (docs/security.md "TLS").
type tlsFlags struct{ cert, key, ca *string }

func addTLSFlags(fs *flag.FlagSet) tlsFlags {
	return tlsFlags{
		cert: fs.String("tls-cert", "", "PEM certificate (chain) this process serves TLS with, on every listener (with --tls-key)"),
		key:  fs.String("tls-key", "", "PEM private key of --tls-cert"),
		ca:   fs.String("tls-ca", "", "PEM CA certificate(s) other processes' certificates are verified with (default: the system's roots)"),
	}
}

// load reads the files; a process serving TLS calls the others over TLS too.
func (f tlsFlags) load() (tlsconf.Settings, error) {
	return tlsconf.Load(tlsconf.Files{Cert: *f.cert, Key: *f.key, CA: *f.ca})
}

// listenerFor wraps ln to serve TLS with s, or returns it as is without TLS: a plaintext
// request on a TLS listener fails its handshake and is never served.
func listenerFor(ln net.Listener, s tlsconf.Settings) net.Listener {
	if !s.On() {
		return ln
	}
	return tls.NewListener(ln, s.Server)
}

// tlsCAUsage describes --tls-ca of the client commands.
const tlsCAUsage = "PEM CA certificate the nodes' certificates are verified with; connects over TLS (wss)"

// clientTLS loads a client command's --tls-ca: nil (plaintext, unless an address says
// wss:// or https://) without one.
func clientTLS(caPath string) (*tls.Config, error) {
	s, err := tlsconf.Load(tlsconf.Files{CA: caPath})
	return s.Client, err
}
