package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// handshake runs a TLS handshake between server settings and client settings over a
// loopback TCP connection (buffered, unlike net.Pipe, so a side that gives up mid-flight
// does not wait for the other) and returns the client's error, else the server's.
func handshake(t *testing.T, server, client *tls.Config, host string) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer conn.Close()
		s := tls.Server(conn, server)
		_ = s.SetDeadline(time.Now().Add(5 * time.Second))
		srvErr <- s.Handshake()
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := tls.Client(conn, ForHost(client, host+":1"))
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	err = c.Handshake()
	c.Close()
	if serr := <-srvErr; err == nil {
		err = serr
	}
	return err
}

func TestWriteDevCertificatesVerifyAgainstTheirCA(t *testing.T) {
	dir := t.TempDir()
	files, err := WriteDev(filepath.Join(dir, "tls"), []string{"c1", "n1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"c1", "n1"} {
		f := files[name]
		if f.CA != filepath.Join(dir, "tls", "ca.pem") {
			t.Errorf("%s: CA %s, want DIR/tls/ca.pem", name, f.CA)
		}
		st, err := os.Stat(f.Key)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: key file mode %v, want 0600", f.Key, st.Mode().Perm())
		}
		b, _ := os.ReadFile(f.Cert)
		block, _ := pem.Decode(b)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if cert.PublicKeyAlgorithm != x509.ECDSA || cert.Subject.CommonName != name {
			t.Errorf("%s: key %v, name %q; want ECDSA and %q", name, cert.PublicKeyAlgorithm, cert.Subject.CommonName, name)
		}
		if len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || len(cert.DNSNames) != 1 || cert.DNSNames[0] != "localhost" {
			t.Errorf("%s: SANs %v %v, want 127.0.0.1 and localhost", name, cert.IPAddresses, cert.DNSNames)
		}
		s, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		if !s.On() || s.Client == nil {
			t.Fatalf("%s: settings %+v, want server and client", name, s)
		}
		for _, host := range DevHosts {
			if err := handshake(t, s.Server, s.Client, host); err != nil {
				t.Errorf("%s reached as %s: %v", name, host, err)
			}
		}
		// A name the certificate does not hold fails verification.
		if err := handshake(t, s.Server, s.Client, "10.1.2.3"); err == nil {
			t.Errorf("%s reached as 10.1.2.3: handshake succeeded, want a name mismatch", name)
		}
	}
}

func TestAnotherCAIsRefused(t *testing.T) {
	dir := t.TempDir()
	ours, err := WriteDev(filepath.Join(dir, "a"), []string{"n1"})
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := WriteDev(filepath.Join(dir, "b"), []string{"n1"})
	if err != nil {
		t.Fatal(err)
	}
	server, err := Load(ours["n1"])
	if err != nil {
		t.Fatal(err)
	}
	client, err := Load(Files{CA: theirs["n1"].CA})
	if err != nil {
		t.Fatal(err)
	}
	if client.On() || client.Client == nil {
		t.Fatalf("a CA alone: %+v, want client settings only", client)
	}
	err = handshake(t, server.Server, client.Client, "127.0.0.1")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("handshake with a certificate of another CA: %v, want an unknown authority", err)
	}
}

func TestLoadRefusesIncompleteOrWrongFiles(t *testing.T) {
	dir := t.TempDir()
	files, err := WriteDev(dir, []string{"n1"})
	if err != nil {
		t.Fatal(err)
	}
	f := files["n1"]
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files Files
		want  string
	}{
		{"cert without key", Files{Cert: f.Cert}, "give both"},
		{"key without cert", Files{Key: f.Key}, "give both"},
		{"missing CA", Files{CA: filepath.Join(dir, "none.pem")}, "--tls-ca"},
		{"CA that is no certificate", Files{CA: garbage}, "no PEM certificate"},
		{"a key as CA", Files{CA: f.Key}, "want CERTIFICATE"},
		{"key of another certificate", Files{Cert: f.Cert, Key: garbage}, "--tls-key"},
	} {
		s, err := Load(tc.files)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
		if s.Server != nil || s.Client != nil {
			t.Errorf("%s: settings %+v returned with an error", tc.name, s)
		}
	}
	none, err := Load(Files{})
	if err != nil || none.Server != nil || none.Client != nil {
		t.Errorf("no files: %+v %v, want plaintext", none, err)
	}
}

func TestSchemeAndForHost(t *testing.T) {
	c := &tls.Config{}
	if Scheme(nil, "ws") != "ws" || Scheme(c, "ws") != "wss" || Scheme(c, "http") != "https" {
		t.Fatal("Scheme")
	}
	if got := ForHost(c, "127.0.0.1:7801"); got.ServerName != "127.0.0.1" || c.ServerName != "" {
		t.Fatalf("ForHost: %q (original %q)", got.ServerName, c.ServerName)
	}
	if ForHost(nil, "a:1") != nil {
		t.Fatal("ForHost(nil)")
	}
}

// FuzzCAPool: whatever a --tls-ca file holds, CAPool answers a pool or an error, never
// both, never neither, and never panics.
func FuzzCAPool(f *testing.F) {
	ca, err := NewCA("fuzz", time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ca.CertPEM())
	f.Add(append(append([]byte{}, ca.CertPEM()...), ca.CertPEM()...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		pool, err := CAPool(b)
		if (pool == nil) == (err == nil) {
			t.Fatalf("CAPool(%q) = %v, %v", b, pool, err)
		}
	})
}
