package location

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/rs/zerolog"

	"github.com/sibylhq/sibyl/command"
	"github.com/sibylhq/sibyl/tlsconf"
)

// devTLS makes a CA and one certificate under a temporary directory and loads them.
func devTLS(t *testing.T, name string) tlsconf.Settings {
	t.Helper()
	files, err := tlsconf.WriteDev(filepath.Join(t.TempDir(), "tls"), []string{name})
	if err != nil {
		t.Fatal(err)
	}
	s, err := tlsconf.Load(files[name])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The raft stream layer over TLS: a connection reaches raft only after a TLS handshake
// whose certificate the CA signed and, with a secret, the secret's preamble inside it.
// Plaintext, another CA's certificate or a wrong secret never reach raft.
func TestRaftStreamLayerOverTLS(t *testing.T) {
	ours, theirs := devTLS(t, "c1"), devTLS(t, "c1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := newGuardedListener(ln, ours.Server, testSecret, zerolog.Nop())
	defer gl.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := gl.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	addr := raft.ServerAddress(ln.Addr().String())
	layer := func(s tlsconf.Settings, secret string) *streamLayer {
		l := &streamLayer{Listener: ln, tls: s.Client}
		if secret != "" {
			l.preamble = raftPreamble(secret)
		}
		return l
	}
	refusedAfterDial := func(name string, c net.Conn) {
		t.Helper()
		_, _ = c.Write(append([]byte{0}, make([]byte, 64)...)) // what raft would send
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("%s: the listener kept the connection (read %d bytes)", name, n)
		}
		c.Close()
	}
	// Plaintext, with or without the secret's preamble: the handshake fails on the server.
	for _, secret := range []string{"", testSecret} {
		c, err := layer(tlsconf.Settings{}, secret).Dial(addr, time.Second)
		if err != nil {
			t.Fatalf("plaintext dial: %v", err)
		}
		refusedAfterDial("plaintext with secret "+secret, c)
	}
	// A certificate of another CA: the client refuses it (and the server sees no preamble).
	if c, err := layer(theirs, testSecret).Dial(addr, time.Second); err == nil {
		c.Close()
		t.Error("dial verifying with another CA succeeded")
	} else if !errors.As(err, new(x509.UnknownAuthorityError)) {
		t.Errorf("dial verifying with another CA: %v, want an unknown authority", err)
	}
	// TLS without the secret or with a wrong one.
	for _, secret := range []string{"", "other"} {
		c, err := layer(ours, secret).Dial(addr, time.Second)
		if err != nil {
			t.Fatalf("TLS dial with secret %q: %v", secret, err)
		}
		refusedAfterDial("TLS with secret "+secret, c)
	}
	select {
	case c := <-accepted:
		t.Fatalf("a refused connection reached raft: %v", c.RemoteAddr())
	default:
	}
	// TLS and the secret: accepted, and raft's bytes cross both ways encrypted.
	c, err := layer(ours, testSecret).Dial(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("raft")); err != nil {
		t.Fatal(err)
	}
	select {
	case sc := <-accepted:
		defer sc.Close()
		buf := make([]byte, 4)
		_ = sc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "raft" {
			t.Fatalf("server read %q %v, want raft", buf, err)
		}
		if _, err := sc.Write([]byte("ok")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf[:2]); err != nil || string(buf[:2]) != "ok" {
			t.Fatalf("client read %q %v, want ok", buf[:2], err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a TLS connection with the secret was not accepted")
	}
}

// A silent caller on a TLS raft port costs one goroutine for raftHandshakeTimeout at
// most, never raft's accept: a good connection behind it is accepted meanwhile.
func TestRaftTLSSilentCallerDoesNotBlockAccept(t *testing.T) {
	s := devTLS(t, "c1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := newGuardedListener(ln, s.Server, "", zerolog.Nop())
	defer gl.Close()
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	done := make(chan error, 1)
	go func() {
		c, err := (&streamLayer{Listener: ln, tls: s.Client}).Dial(raft.ServerAddress(ln.Addr().String()), 2*time.Second)
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	acc := make(chan error, 1)
	go func() {
		c, err := gl.Accept()
		if err == nil {
			c.Close()
		}
		acc <- err
	}()
	select {
	case err := <-acc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(raftHandshakeTimeout / 2):
		t.Fatal("a silent connection held up the accept of a TLS one")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A location whose controllers serve HTTP and raft over TLS only: a leader is elected over
// TLS raft, the followers register with it over https, a follower's status proxies to it,
// and a node joins over https; a plaintext call to any of its ports is not served.
func TestLocationOverTLS(t *testing.T) {
	s := devTLS(t, "controller")
	tc := newTestCluster(t, 3, func(c *Config) {
		c.ServerTLS, c.ClientTLS, c.ClusterSecret = s.Server, s.Client, testSecret
	})
	leader := tc.leader(20 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: httpTransport(nil, s.Client)}
	var follower *testCtl
	for _, x := range tc.running() {
		if x != leader {
			follower = x
		}
	}
	eventuallyOK(t, 20*time.Second, "every controller registered, seen through a follower", func() error {
		var st command.Status
		resp, err := hc.Get("https://" + follower.httpAddr + pathStatus)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return err
		}
		registered := 0
		for _, c := range st.Controllers {
			if c.Addr != "" {
				registered++
			}
		}
		if registered != 3 {
			return errors.New("not every controller registered yet")
		}
		return nil
	})
	join := command.JoinRequest{ID: 7, Addr: "127.0.0.1:1", Instance: "n7", Incarnation: 1}
	eventuallyOK(t, 10*time.Second, "a join over https", func() error {
		b, _ := json.Marshal(join)
		req, _ := http.NewRequest(http.MethodPost, "https://"+leader.httpAddr+pathJoin, bytes.NewReader(b))
		req.Header.Set(command.SecretHeader, testSecret)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	for _, x := range tc.running() {
		for _, addr := range []string{x.httpAddr, x.raftAddr} {
			code, _, err := call(http.MethodGet, addr, pathStatus, nil, nil)
			if err == nil && code != http.StatusBadRequest {
				t.Errorf("plaintext GET %s at %s: HTTP %d, want a refusal", pathStatus, addr, code)
			}
		}
	}
}
