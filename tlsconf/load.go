package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
)

// MinVersion is the oldest TLS version Sibyl speaks or accepts.
const MinVersion = tls.VersionTLS12

// Files names the PEM files of one process; an empty name is not given.
type Files struct {
	Cert string // the process's certificate chain (--tls-cert)
	Key  string // its private key (--tls-key)
	CA   string // the certificates peers' certificates are verified against (--tls-ca)
}

// Settings are a process's TLS configurations; a nil one means plaintext.
type Settings struct {
	// Server serves the process's listeners: set when a certificate and key were given.
	Server *tls.Config
	// Client verifies the processes this one calls: set when a certificate or a CA was
	// given, with the CA as its only root (the system's roots without one).
	Client *tls.Config
}

// On reports whether the process serves TLS.
func (s Settings) On() bool { return s.Server != nil }

// Load reads f. A certificate needs its key and the other way round; a CA alone makes
// client settings only (what a client command needs).
func Load(f Files) (Settings, error) {
	var s Settings
	if (f.Cert == "") != (f.Key == "") {
		return s, fmt.Errorf("--tls-cert %q and --tls-key %q: give both or neither", f.Cert, f.Key)
	}
	var roots *x509.CertPool
	if f.CA != "" {
		b, err := os.ReadFile(f.CA)
		if err != nil {
			return s, fmt.Errorf("--tls-ca: %w", err)
		}
		if roots, err = CAPool(b); err != nil {
			return s, fmt.Errorf("--tls-ca %s: %w", f.CA, err)
		}
	}
	if f.Cert != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return s, fmt.Errorf("--tls-cert %s with --tls-key %s: %w", f.Cert, f.Key, err)
		}
		s.Server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: MinVersion}
	}
	if f.Cert != "" || f.CA != "" {
		s.Client = &tls.Config{RootCAs: roots, MinVersion: MinVersion}
	}
	return s, nil
}

// CAPool parses PEM-encoded CA certificates. Every block must be a certificate that
// parses, and there must be at least one: a file that holds something else (a key, a
// truncated copy) is refused instead of leaving every peer unverifiable.
func CAPool(pemBytes []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := pemBytes; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is a %q, want CERTIFICATE", n+1, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate in it")
	}
	return pool, nil
}

// ForHost returns c set to verify a server reached at addr (host:port): a copy naming the
// host when c names none, as a raw tls.Client needs (HTTP and WebSocket clients do this
// themselves). It returns nil for a nil c.
func ForHost(c *tls.Config, addr string) *tls.Config {
	if c == nil || c.ServerName != "" {
		return c
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	out := c.Clone()
	out.ServerName = host
	return out
}

// Scheme is plain ("http" or "ws") for a nil c and its TLS form ("https", "wss") for a
// set one: the scheme of a call made with client settings c.
func Scheme(c *tls.Config, plain string) string {
	if c == nil {
		return plain
	}
	return plain + "s"
}
